"""Notebooks run top to bottom against a real (tiny) corpus."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "notebooks")


def test_corpus_tour_notebook_executes(tiny_data_dir, monkeypatch):
    monkeypatch.setenv("FASTVGS_DATA_DIR", tiny_data_dir)
    monkeypatch.setenv("FASTVGS_PRESET", "tiny")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = os.path.join(NOTEBOOKS, "corpus_tour.ipynb")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    )
    client.execute()
    outputs = "".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )
    assert "content hash" in outputs
    assert "items;" in outputs
