"""Scaling-law sweeps: the plan (runs, stable names, configs, cost), the emitted cluster
commands for a two-host example, resumable runs and the table (training and evaluation
stubbed), and one real micro-sweep on the tiny corpus."""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import configs.resolved
import configs.sweep
from fastvgs_jax.study import plan as study_plan
from fastvgs_jax.study import run as study_run
from fastvgs_jax.sweep import cost as sweep_cost
from fastvgs_jax.sweep import measure as sweep_measure
from fastvgs_jax.sweep import plan
from fastvgs_jax.sweep import run as sweep_run
from fastvgs_jax.sweep import table as sweep_table
from fastvgs_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW_KEYS = {
    "run",
    "size",
    "schedule",
    "seed",
    "data_fraction",
    "steps",
    "parameters",
    "flops_per_step",
    "compute",
    "audio_hours_seen",
    "frames_seen",
    "wall_seconds",
    "mfu",
    "final",
    "retrieval",
    "abx",
}


def _settings(tmp_path, **fields):
    settings = configs.sweep.get_config("tiny")
    settings.out = str(tmp_path / "sweep")
    for key, value in fields.items():
        settings[key] = value
    return settings


# --- The plan ------------------------------------------------------------------------------


def test_grid_expands_sizes_outermost_with_stable_names(tmp_path):
    settings = _settings(
        tmp_path, sizes="xs,s", data_fractions="0.5,1", steps="100,300", seeds="0,1"
    )
    names = [s.name for s in plan.expand(settings)]
    assert len(names) == len(set(names)) == 2 * 2 * 2 * 1 * 2
    assert names[:3] == [
        "xs-frac0.5-steps100-w2v2_vgs-seed0",
        "xs-frac0.5-steps100-w2v2_vgs-seed1",
        "xs-frac0.5-steps300-w2v2_vgs-seed0",
    ]
    assert names[-1] == "s-frac1-steps300-w2v2_vgs-seed1"
    # A larger grid keeps the names of the runs it shares with a smaller one.
    settings.sizes = "xxs,xs,s"
    assert set(names) < {s.name for s in plan.expand(settings)}


def test_a_list_of_runs_replaces_the_grid_and_defaults_to_its_first_values(tmp_path):
    settings = _settings(
        tmp_path, runs="size=s,steps=300; size=xs,fraction=0.5,steps=40,schedule=vgs,seed=2"
    )
    assert [s.name for s in plan.expand(settings)] == [
        "s-frac1-steps300-w2v2_vgs-seed0",
        "xs-frac0.5-steps40-vgs-seed2",
    ]
    settings.runs = "size=s,budget=3"
    with pytest.raises(ValueError, match="runs entry 'size=s,budget=3'"):
        plan.expand(settings)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("sizes", "xs,huge", "size 'huge' is not in the sweep's family"),
        ("schedules", "w2v2_ssl", "schedule 'w2v2_ssl'"),
        ("steps", "1", "needs at least 2 steps"),
        ("data_fractions", "0", r"data fraction 0.0 not in \(0, 1\]"),
        ("seeds", "0,0", "listed twice"),
    ],
)
def test_invalid_runs_are_named_before_anything_runs(tmp_path, field, value, message):
    settings = _settings(tmp_path, **{field: value})
    with pytest.raises(ValueError, match=message):
        plan.check_settings(settings, plan.expand(settings))


def test_run_config_is_the_studys_with_the_familys_model_and_the_budget(tmp_path):
    settings = _settings(tmp_path)
    settings.family.xs.width = 64  # a size's knob, overridden
    spec = plan.RunSpec("xs", 1.0, 40, "w2v2_vgs", 3)
    config = plan.run_config_of(settings, spec)
    study = plan.study_settings(settings)
    study.steps, study.run.model = 40, plan.model_config(settings, "xs")
    assert config.to_json() == study_plan.model_config(study, "w2v2_vgs", 3).to_json()
    assert (config.model.size, config.model.hidden_dim, config.model.num_layers) == ("xs", 64, 3)
    assert [p.steps for p in config.phases] == [11, 29] and config.seed == 3
    assert config.image_tower_init == study_plan.image_tower_path(settings.out)
    tower = pathlib.Path(config.image_tower_init)
    tower.parent.mkdir(parents=True)
    tower.touch()
    assert sum(p.steps for p in loop.prepare(config)) == 40


def test_data_fraction_sets_both_training_streams_and_selects_a_nested_subset(tmp_path):
    from fastvgs_jax.data import pipelines

    settings = _settings(tmp_path, data_fractions="0.25")
    spec = plan.expand(settings)[0]
    config = plan.run_config_of(settings, spec)
    assert config.data.audio_image.fraction == config.data.audio_only.fraction == 0.25
    indices = np.arange(100, 160)
    quarter, half = (pipelines.fraction_subset(indices, f) for f in (0.25, 0.5))
    assert (len(quarter), len(half)) == (15, 30) and set(quarter) <= set(half)
    assert list(quarter) == sorted(quarter) and set(half) <= set(indices)


def test_cost_counts_each_phase_and_batch_kind(tmp_path):
    settings = _settings(tmp_path)

    def cost(schedule, steps):
        return sweep_cost.cost(
            plan.run_config_of(settings, plan.RunSpec("xs", 1.0, steps, schedule, 0))
        )

    both, w2v2, vgs = cost("w2v2_vgs", 30), cost("w2v2", 9), cost("vgs", 21)  # 9 + 21 steps
    assert both["compute"] == pytest.approx(w2v2["compute"] + vgs["compute"])
    assert both["compute"] == pytest.approx(both["flops_per_step"] * 30)
    assert cost("w2v2_vgs", 60)["compute"] > 1.9 * both["compute"]
    assert both["audio_hours"] == pytest.approx(30 * 8 * 1.0 / 3600)  # batch 8, 1 s crops
    parameters = both["parameters"]
    assert parameters["total"] == sum(parameters[k] for k in ("encoder", "vgs_branch", "image"))


def test_dry_run_lists_every_run_with_its_flops_data_and_time(tmp_path):
    settings = _settings(tmp_path)
    text = sweep_table.plan_text(settings)
    for spec in plan.expand(settings):
        assert spec.name in text
    assert "FLOPs/step" in text and "est. time" in text
    assert "sweep tiny: 4 runs, 180 steps" in text
    assert text.splitlines()[-1].startswith("total: ")
    assert not os.path.exists(settings.out)  # a dry run writes nothing


# --- Running, stubbed ----------------------------------------------------------------------


def _fake_train(calls):
    """Trains nothing: writes the metrics a run logs every step (2 steps/s, 8 audio-s per
    step) and its closing snapshot's folder."""

    def train(study, config, workdir):
        calls.append(os.path.basename(workdir))
        os.makedirs(os.path.join(workdir, "snapshots", str(study.steps)), exist_ok=True)
        step = 0
        with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
            for phase in config.phases:
                for _ in range(phase.steps):
                    step += 1
                    line = {"step": step, "phase": phase.name, "loss": 1.0}
                    line["ssl" if phase.name == "w2v2" else "coarse"] = 100.0 / step
                    line.update(steps_per_second=2.0, audio_seconds_per_second=16.0)
                    f.write(json.dumps(line) + "\n")

    return train


def _fake_evaluation(workdir, *, split, **_):
    return {
        "retrieval": {
            "split": split,
            "speech_to_image": {"r1": 12.5, "r5": 30.0, "r10": 50.0},
            "image_to_speech": {"r1": 25.0, "r5": 40.0, "r10": 75.0},
        },
        "abx": {
            "trained": {
                "frontend": {"within": 20.0, "across": 30.0},
                "layer_1": {"within": 10.0, "across": 35.0},
            },
            "best_layer": {"within": "layer_1", "across": "frontend"},
        },
    }


@pytest.fixture
def stubbed(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(sweep_run, "_train", _fake_train(calls))
    monkeypatch.setattr(sweep_run, "prepare", lambda settings: None)
    monkeypatch.setattr(study_run, "ensure_corpora", lambda data: True)
    monkeypatch.setattr(study_run.evaluate, "evaluate_run", _fake_evaluation)
    return calls


def test_a_rerun_keeps_finished_runs_and_trains_the_rest(tmp_path, stubbed):
    settings = _settings(tmp_path, sizes="xs", steps="30")
    rows = sweep_run.run_sweep(settings)
    assert stubbed == ["xs-frac1-steps30-w2v2_vgs-seed0"]
    table = pathlib.Path(settings.out, plan.TABLE_JSONL).read_text()
    settings.steps = "30,60"  # a larger sweep: the finished run is kept
    rows = sweep_run.run_sweep(settings)
    assert stubbed == ["xs-frac1-steps30-w2v2_vgs-seed0", "xs-frac1-steps60-w2v2_vgs-seed0"]
    assert pathlib.Path(settings.out, plan.TABLE_JSONL).read_text().startswith(table)
    sweep_run.run_sweep(settings)
    assert len(stubbed) == 2 and len(rows) == 2


def test_rows_hold_the_schema_from_metrics_and_evaluation(tmp_path, stubbed):
    settings = _settings(tmp_path, sizes="xs", steps="30")
    sweep_run.run_sweep(settings)
    (line,) = pathlib.Path(settings.out, plan.TABLE_JSONL).read_text().splitlines()
    row = json.loads(line)
    assert set(row) == ROW_KEYS
    config = plan.run_config_of(settings, plan.expand(settings)[0])
    cost = sweep_cost.cost(config)
    assert row["parameters"] == cost["parameters"]
    assert set(row["parameters"]) == {"encoder", "vgs_branch", "image", "total"}
    assert row["compute"] == pytest.approx(30 * row["flops_per_step"])
    assert row["audio_hours_seen"] == pytest.approx(30 * 8 / 3600)
    assert row["frames_seen"] == 30 * 8 * 50  # 20 ms frames
    assert row["wall_seconds"] == pytest.approx(15.0) and row["mfu"] is None
    # Each loss closing the last phase training it, the mean over its last 10 % of steps:
    # SSL over step 9 of the w2v2 phase (steps 1..9), coarse over 28..30 (vgs, steps 10..30).
    assert row["final"] == {
        "ssl_loss": pytest.approx(100 / 9),
        "coarse_loss": pytest.approx((100 / 28 + 100 / 29 + 100 / 30) / 3),
    }
    assert row["retrieval"] == {"s2i_r1": 12.5, "s2i_r10": 50.0, "i2s_r1": 25.0, "i2s_r10": 75.0}
    assert row["abx"] == {
        "within": 10.0,
        "across": 30.0,
        "within_layer": "layer_1",
        "across_layer": "frontend",
    }
    table = pathlib.Path(settings.out, plan.TABLE_MD).read_text()
    assert "# Sweep tiny: 1 of 1 runs finished" in table
    assert "| xs-frac1-steps30-w2v2_vgs-seed0 |" in table
    assert "| 12.5 | 50.0 | 25.0 | 75.0 | 10.00 (layer 1) | 30.00 (frontend) |" in table


def test_collect_trains_nothing_and_lists_unfinished_runs(tmp_path, stubbed):
    settings = _settings(tmp_path, sizes="xs", steps="30,60")
    sweep_run.run_sweep(settings, only=["xs-frac1-steps30-w2v2_vgs-seed0"])
    rows = sweep_run.run_sweep(settings, stage="collect")
    assert stubbed == ["xs-frac1-steps30-w2v2_vgs-seed0"] and len(rows) == 1
    table = pathlib.Path(settings.out, plan.TABLE_MD).read_text()
    assert "1 of 2 runs finished" in table
    assert "Not finished (1): xs-frac1-steps60-w2v2_vgs-seed0." in table


def test_final_losses_fall_back_to_the_last_logged_value(tmp_path):
    settings = _settings(tmp_path)
    config = plan.run_config_of(settings, plan.RunSpec("xs", 1.0, 30, "w2v2", 0))
    workdir = tmp_path / "run"
    workdir.mkdir()
    lines = [
        {"step": 10, "ssl": 3.0, "steps_per_second": 1.0, "audio_seconds_per_second": 4.0},
        {"step": 20, "ssl": 2.0, "steps_per_second": 2.0, "audio_seconds_per_second": 4.0},
        {"step": 20, "ssl": 1.5, "steps_per_second": 2.0, "audio_seconds_per_second": 4.0},
        {"step": 26, "ssl": float("nan"), "steps_per_second": 2.0, "audio_seconds_per_second": 4.0},
    ]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    seen = sweep_measure.measured(str(workdir), config)
    assert seen["final"] == {"ssl_loss": 1.5, "coarse_loss": None}  # step 20 logged again
    assert seen["wall_seconds"] == pytest.approx(10 / 1 + 10 / 2 + 6 / 2)
    assert seen["audio_seconds"] == pytest.approx(4 * 10 + 2 * 10 + 2 * 6)
    assert math.isfinite(seen["wall_seconds"])
    # MFU over the run: its FLOPs over the training time and the devices' recorded peak.
    assert sweep_measure._mfu(2e12, 10.0, {"performance": {"peak_flops": 1e12}}) == 0.2
    assert sweep_measure._mfu(2e12, 10.0, {"performance": {}}) is None


# --- A real micro-sweep --------------------------------------------------------------------


def test_micro_sweep_trains_evaluates_and_keeps_its_run(tiny_data_dir, tmp_path):
    settings = _settings(tmp_path, sizes="xxs", steps="3", schedules="vgs")
    study = settings.study
    study.run.data.data_dir = tiny_data_dir
    study.image_tower.enabled = False  # the convs train from scratch: no tower to pretrain
    study.run.model.image.cnn_widths = (8, 16)  # less to compile
    study.progress = study.run.progress = False
    study.run.log_every = 1
    rows = sweep_run.run_sweep(settings)
    (row,) = rows.values()
    assert row["run"] == "xxs-frac1-steps3-vgs-seed0" and row["final"]["ssl_loss"] is None
    assert row["final"]["coarse_loss"] > 0 and row["wall_seconds"] > 0
    assert 0 <= row["retrieval"]["s2i_r10"] <= 100 and row["abx"]["within_layer"] is not None
    assert row["audio_hours_seen"] > 0 and row["frames_seen"] > 0 and 0 < row["mfu"] < 1
    metrics = pathlib.Path(plan.run_dir(settings.out, row["run"]), "metrics.jsonl")
    before = metrics.read_text()
    assert sweep_run.run_sweep(settings) == rows and metrics.read_text() == before
    settings.study.learning_rates.vgs = 0.5  # the kept run no longer is the run asked for
    with pytest.raises(ValueError, match="xxs-frac1-steps3-vgs-seed0 was trained with another"):
        sweep_run.run_sweep(settings)


def test_launcher_names_a_mistake_in_one_line():
    done = subprocess.run(
        [
            sys.executable,
            "launch/sweep.py",
            "--config=configs/sweep.py:tiny",
            "--config.sizes=xs,huge",
            "--dry_run",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: run huge-frac1-steps30-w2v2_vgs-seed0: size 'huge' is not in the sweep's family"
        )
    )
