"""Evaluating a tiny trained run: the report (retrieval both ways, per-layer ABX with the
MFCC and random-init rows), the training hook's history and plot, and the command line."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest
from absl import flags
from absl.testing import flagsaver

from fastvgs_jax import study
from fastvgs_jax.eval import evaluate
from fastvgs_jax.eval.history import HISTORY_FILE, HISTORY_PLOT, phase_boundaries, plot_history
from fastvgs_jax.eval.report import write_report
from fastvgs_jax.eval.snapshot import EvaluationError, run_config
from fastvgs_jax.train import loop
from fastvgs_jax.workdir import SnapshotError


def _read(path) -> str:
    with open(path) as f:
        return f.read()


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def run(tiny_study):
    """The tiny study's (W2V2, VGS) run: 2 SSL steps, then 5 VGS steps; its history hook
    (frontend, layer 2 and 3) ran every 3 steps and at the phase ends (2, 3, 6, 7)."""
    settings, _ = tiny_study
    workdir = study.run_dir(settings.out, "w2v2_vgs", 0)
    return workdir, settings


@pytest.fixture(scope="module")
def report(run, tmp_path_factory):
    workdir, _ = run
    results = evaluate.evaluate_run(workdir, layers="frontend,2", progress=False)
    out = str(tmp_path_factory.mktemp("report"))
    return results, write_report(results, out)


def _is_percent(value) -> bool:
    return value is not None and 0.0 <= value <= 100.0


def test_manifest_config_round_trips(run):
    workdir, settings = run
    config = study.model_config(settings, "w2v2_vgs", 0)
    loop.prepare(config)  # what the trainer recorded: frame geometry aligned with the model
    loaded = run_config(workdir)
    assert loaded.model.to_json() == config.model.to_json()
    assert tuple(loaded.data.frame_strides) == tuple(config.data.frame_strides)
    assert [p["steps"] for p in loaded.phases] == [2, 5]


def test_evaluate_run_writes_both_retrieval_directions_and_abx_rows(report):
    results, (json_path, md_path) = report
    saved = json.loads(_read(json_path))  # strict JSON: NaN would have become null
    assert saved["snapshot"] == {"requested": "latest", "step": 7, "phase": "vgs"}
    r = saved["retrieval"]
    assert (r["split"], r["num_images"], r["num_captions"]) == ("test", 4, 20)
    for direction in ("speech_to_image", "image_to_speech"):
        assert all(_is_percent(r[direction][k]) for k in ("r1", "r5", "r10", "r100"))
    assert r["mean_r1"] == pytest.approx(
        (r["speech_to_image"]["r1"] + r["image_to_speech"]["r1"]) / 2
    )
    a = saved["abx"]
    assert a["num_items"] > 100 and a["utterances"] == 20
    for rows in (a["trained"], a["random_init"]):
        assert sorted(rows) == ["frontend", "layer_2"]
        assert all(_is_percent(row[m]) for row in rows.values() for m in ("within", "across"))
    assert _is_percent(a["mfcc"]["within"]) and _is_percent(a["mfcc"]["across"])
    assert set(a["best_layer"].values()) <= {"frontend", "layer_2"}

    markdown = _read(md_path)
    for text in ("speech → image", "image → speech", "| trained | layer 2 |", "random init"):
        assert text in markdown
    assert "MFCC" in markdown and markdown.count("(best)") == 2


def test_hook_writes_history_lines_and_a_plot(run):
    workdir, _ = run
    history = _read(os.path.join(workdir, HISTORY_FILE))
    lines = [json.loads(x) for x in history.splitlines()]
    assert [(x["step"], x["phase"]) for x in lines] == [
        (0, "w2v2"),  # the starting encoder
        (2, "w2v2"),
        (3, "vgs"),
        (6, "vgs"),
        (7, "vgs"),
    ]
    for line in lines:
        metrics = line["metrics"]
        for name in ("speech_to_image_r1", "image_to_speech_r10", "mean_r1"):
            assert _is_percent(metrics[name])
        assert set(n for n in metrics if n.startswith("abx")) == {
            f"abx_{mode}/{layer}"
            for mode in ("within", "across")
            for layer in ("frontend", "layer_2", "layer_3")
        }
    assert phase_boundaries(workdir) == [(2, "vgs")]
    png = os.path.join(workdir, HISTORY_PLOT)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert plot_history(workdir) == png


def test_bad_requests_fail_before_any_work(run):
    workdir, _ = run
    with pytest.raises(EvaluationError, match="tasks"):
        evaluate.evaluate_run(workdir, tasks=["speed"])
    with pytest.raises(ValueError, match="outside 0..3"):
        evaluate.evaluate_run(workdir, layers="7")
    with pytest.raises(EvaluationError, match="no manifest.json"):
        evaluate.evaluate_run(os.path.dirname(workdir))


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location(
        "launch_evaluate", os.path.join(ROOT, "launch", "evaluate.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_cli(cli, *args: str) -> None:
    with flagsaver.flagsaver():
        flags.FLAGS(["evaluate.py", *args])
        cli.main([])


def test_cli_writes_a_report_for_a_phase_snapshot(run, cli, tmp_path, capsys):
    workdir, _ = run
    _run_cli(
        cli, f"--workdir={workdir}", "--snapshot=w2v2", "--tasks=retrieval", f"--out={tmp_path}"
    )
    saved = json.loads(_read(tmp_path / "evaluation.json"))
    assert saved["snapshot"]["step"] == 2 and "abx" not in saved
    assert math.isfinite(saved["retrieval"]["mean_r1"])
    assert "speech → image" in capsys.readouterr().out


def test_cli_names_a_missing_snapshot(run, cli):
    """main raises it; fastvgs_jax.cli.run turns it into one error line (test_cli_errors)."""
    workdir, _ = run
    with pytest.raises(SnapshotError) as error:
        _run_cli(cli, f"--workdir={workdir}", "--snapshot=nope")
    message = str(error.value)
    assert "no snapshot 'nope'" in message and "2 (w2v2)" in message and "7 (vgs)" in message
