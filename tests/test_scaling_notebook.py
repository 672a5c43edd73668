"""The scaling notebook runs top to bottom against a tiny synthetic sweep."""

from __future__ import annotations

import json
import os

import nbformat
from nbclient import NotebookClient

from fastvgs_jax.sweep import results
from tests.test_scaling_laws import write_tiny_sweep

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "notebooks")


def _texts(output) -> str:
    data = output.get("data", {})
    return output.get("text", "") + data.get("text/plain", "") + data.get("text/markdown", "")


def test_scaling_notebook_executes(tmp_path, monkeypatch):
    sweep = write_tiny_sweep(tmp_path / "sweep")  # 2 schedules × 3 sizes × 2 budgets
    monkeypatch.setenv("FASTVGS_SWEEP_DIR", sweep)  # absolute: used as is
    monkeypatch.setenv("FASTVGS_LAWS_BOOTSTRAP", "50")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = os.path.join(NOTEBOOKS, "scaling.ipynb")
    notebook = nbformat.read(path, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells), "commit it cleared"
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [out for cell in notebook.cells for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    text = "".join(_texts(out) for out in outputs)
    for expected in (
        "sweep 'sweep': 12 runs, schedules ['vgsplus', 'w2v2_vgs']",
        "ABX across %",  # the runs table
        "50 bootstrap resamples",
        "b [95 %]",  # the fits with intervals
        "no fit: y does not fall with x",  # hours seen, at iso-compute budgets
        "compute-optimal size: s at",  # the frontier
    ):
        assert expected in text, expected
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    report = json.loads((tmp_path / "sweep" / "laws.json").read_text())
    assert (
        len(images) == len(report["plots"]) == len(results.TARGETS) * (len(results.PREDICTORS) + 1)
    )
    assert report["bootstrap"] == 50
    assert (tmp_path / "sweep" / "laws.md").exists()
