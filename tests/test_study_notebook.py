"""The study notebook runs top to bottom against a tiny finished study."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "notebooks")


def _texts(output) -> str:
    data = output.get("data", {})
    return output.get("text", "") + data.get("text/plain", "") + data.get("text/markdown", "")


def test_study_notebook_executes(tiny_study, monkeypatch):
    tiny_study_dir = tiny_study[0].out
    monkeypatch.setenv("FASTVGS_STUDY_DIR", tiny_study_dir)  # absolute: used as is
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = os.path.join(NOTEBOOKS, "study.ipynb")
    notebook = nbformat.read(path, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells), "commit it cleared"
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [out for cell in notebook.cells for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    text = "".join(_texts(out) for out in outputs)
    for expected in ("(W2V2, VGS)", "| VGS |", "S→I R@10", "chance R@10", "random init", "MFCC"):
        assert expected in text, expected
    assert "skipped" not in text  # the per-layer figure and both history plots are there
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 3  # abx_per_layer + history of w2v2_vgs and vgs, seed 0
