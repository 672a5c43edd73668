"""`python -m fastvgs_jax.study --report`: docs/results.md and the README's results table are
written from a finished study's own files, and a folder that is not one is a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastvgs_jax import study_report as results_doc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme(tmp_path) -> str:
    path = tmp_path / "README.md"
    path.write_text(
        f"# project\n\n{results_doc.README_BEGIN}\nold table\n{results_doc.README_END}\n\nrest\n"
    )
    return str(path)


def test_report_carries_the_runs_numbers(tiny_study, tmp_path):
    settings, results = tiny_study
    doc = str(tmp_path / "docs" / "results.md")
    os.makedirs(os.path.dirname(doc))
    readme = _readme(tmp_path)
    written = results_doc.write_report(settings.out, doc, readme=readme)

    text = Path(doc).read_text()
    with open(os.path.join(settings.out, "runs", "w2v2_vgs", "seed0", "evaluation.json")) as f:
        evaluation = json.load(f)
    r10 = evaluation["retrieval"]["speech_to_image"]["r10"]
    within = min(v["within"] for v in evaluation["abx"]["trained"].values())
    row = next(line for line in text.splitlines() if line.startswith("| (W2V2, VGS) |"))
    assert f"| {r10:.1f} |" in row and f"| {within:.2f} |" in row
    assert "74.9 / 84.8" in row  # the paper's column beside it
    assert "ABX within speaker:" in text and "random-init encoder" in text
    assert "## Full tables" in text and "### Cross-modal retrieval" in text
    assert os.path.exists(tmp_path / "docs" / "images" / "results_abx_per_layer.png")

    new_readme = Path(readme).read_text()
    assert "old table" not in new_readme and new_readme.endswith("\n\nrest\n")
    assert row.split("| paper")[0] in new_readme or row in new_readme
    assert readme in written and doc in written


def test_report_of_an_unfinished_study_names_the_missing_file(tmp_path):
    with pytest.raises(results_doc.ReportError, match="results.json"):
        results_doc.write_report(str(tmp_path), str(tmp_path / "results.md"))
    done = subprocess.run(
        [sys.executable, "-m", "fastvgs_jax.study_report", "--report", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=120,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "results.json" in last
    assert "Traceback" not in done.stderr
    assert not os.path.exists(tmp_path / "docs")  # nothing half-written
