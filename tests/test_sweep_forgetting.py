"""The forgetting sweep: its axes (α, the second phase's length) and stable names, shared
first phases trained and evaluated once (training and evaluation stubbed), the retention
arithmetic and the layers' parameter distance by hand, the report on handmade rows, and one
real two-run sweep on the tiny corpus with its report and docs section."""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import configs.sweep
from fastvgs_jax import workdir as workdir_lib
from fastvgs_jax.study import plan as study_plan
from fastvgs_jax.study import run as study_run
from fastvgs_jax.sweep import cost as sweep_cost
from fastvgs_jax.sweep import plan
from fastvgs_jax.sweep import run as sweep_run
from fastvgs_jax.sweep import table as sweep_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK_KEYS = {
    "switch",
    "end",
    "retention",
    "retention_over_chance",
    "chance_r10",
    "num_images",
    "first_phase",
    "second_phase",
    "layer_distance",
    "vgs_layer",
    "history",
}


def _settings(tmp_path, **fields):
    """The tiny preset with the forgetting axes: first phase 10 steps (20/70 of 35)."""
    settings = configs.sweep.get_config("tiny")
    settings.out = str(tmp_path / "sweep")
    settings.sizes = "xxs"
    settings.steps = "35"
    settings.schedules = "vgsplus_w2v2,vgs_w2v2"
    settings.alphas = "0.1,0.5"
    settings.second_phase_steps = "0,5,10"
    for key, value in fields.items():
        settings[key] = value
    return settings


# --- Axes, names, configs ------------------------------------------------------------------


def test_alpha_and_second_phase_axes_expand_with_stable_names(tmp_path):
    settings = _settings(tmp_path, seeds="0,1")
    specs = plan.expand(settings)
    names = [s.name for s in specs]
    assert len(names) == len(set(names)) == 3 * (2 + 1) * 2  # budgets × (α + VGS) × seeds
    assert names[:6] == [
        "xxs-frac1-p10+0-vgsplus_w2v2-a0.1-seed0",
        "xxs-frac1-p10+0-vgsplus_w2v2-a0.1-seed1",
        "xxs-frac1-p10+0-vgsplus_w2v2-a0.5-seed0",
        "xxs-frac1-p10+0-vgsplus_w2v2-a0.5-seed1",
        "xxs-frac1-p10+0-vgs_w2v2-seed0",
        "xxs-frac1-p10+0-vgs_w2v2-seed1",
    ]
    assert names[-1] == "xxs-frac1-p10+10-vgs_w2v2-seed1"
    spec = specs[names.index("xxs-frac1-p10+5-vgsplus_w2v2-a0.5-seed1")]
    assert (spec.steps, spec.first_steps, spec.second_steps, spec.alpha) == (15, 10, 5, 0.5)
    # One first phase per (first objective, its α, seed), whatever the budget.
    firsts = {s.first_phase for s in specs}
    assert firsts == {
        f"xxs-frac1-p10-{start}-seed{seed}"
        for start in ("vgsplus-a0.1", "vgsplus-a0.5", "vgs")
        for seed in (0, 1)
    }
    assert sweep_cost.steps_to_train(specs) == 6 * 10 + 6 * (5 + 10)
    # A larger grid keeps the names; the sweep without the new axes keeps its old ones.
    settings.second_phase_steps, settings.alphas = "0,5,10,20", "0.1,0.3,0.5"
    assert set(names) < {s.name for s in plan.expand(settings)}
    plain = configs.sweep.get_config("tiny")
    assert plan.expand(plain)[0].name == "xxs-frac1-steps30-w2v2_vgs-seed0"
    plain.alphas = "0.2"
    plain.schedules = "vgsplus,w2v2_vgs"
    assert [s.name for s in plan.expand(plain)][:2] == [
        "xxs-frac1-steps30-vgsplus-a0.2-seed0",
        "xxs-frac1-steps30-w2v2_vgs-seed0",
    ]


def test_run_configs_cut_the_studys_phases_and_share_the_first_one(tmp_path):
    settings = _settings(tmp_path)
    specs = {s.name: s for s in plan.expand(settings)}
    long = plan.run_config_of(settings, specs["xxs-frac1-p10+10-vgsplus_w2v2-a0.5-seed0"])
    short = plan.run_config_of(settings, specs["xxs-frac1-p10+5-vgsplus_w2v2-a0.5-seed0"])
    switch = plan.run_config_of(settings, specs["xxs-frac1-p10+0-vgsplus_w2v2-a0.5-seed0"])
    assert [(p.name, p.steps) for p in long.phases] == [("vgsplus", 10), ("w2v2", 10)]
    assert [(p.name, p.steps) for p in short.phases] == [("vgsplus", 10), ("w2v2", 5)]
    assert [(p.name, p.steps) for p in switch.phases] == [("vgsplus", 10)]
    assert long.phases[0].alpha.start == long.phases[0].alpha.end == 0.5
    assert long.phases[1].reset_optimizer  # the study's optimiser reset at the switch
    # Everything else as the study's budget (35) gives it, whatever the second phase's length.
    study = plan.study_settings(settings)
    study.steps, study.vgsplus_alpha = 35, 0.5
    study.run.model = plan.model_config(settings, "xxs")
    reference = study_plan.model_config(study, "vgsplus_w2v2", 0)
    assert reference.phases[0].steps == 10
    for config in (long, short, switch):
        assert config.optimizer.to_json() == reference.optimizer.to_json()
        assert config.model.to_json() == reference.model.to_json()
    first = {
        plan.first_phase_config_of(settings, specs[n]).to_json()
        for n in specs
        if specs[n].first_phase == "xxs-frac1-p10-vgsplus-a0.5-seed0"
    }
    assert len(first) == 1 and first == {switch.to_json()}
    # A first phase's α is in its name; the VGS start's is not.
    vgs = specs["xxs-frac1-p10+5-vgs_w2v2-seed0"]
    assert plan.run_config_of(settings, vgs).phases[0].alpha.start == 1.0
    assert plan.first_phase_dir(settings.out, vgs).endswith("runs/_first/xxs-frac1-p10-vgs-seed0")
    assert plan.trained_dir(settings.out, specs["xxs-frac1-p10+0-vgs_w2v2-seed0"]) == (
        plan.first_phase_dir(settings.out, vgs)
    )


def test_the_forgetting_preset_runs_the_demo_studys_models_cut_to_its_budgets(tmp_path):
    import configs.study

    settings = configs.sweep.get_config("forgetting")
    settings.out = str(tmp_path / "sweep")
    specs = {s.name: s for s in plan.expand(settings)}
    assert len(specs) == 4 * (5 + 1) * 3
    # The demo study's (VGS+, W2V2) at α = 0.3 and seed 1, its out the sweep's folder.
    demo = configs.study.get_config("demo")
    demo.out, demo.vgsplus_alpha = settings.out, 0.3
    study = study_plan.model_config(demo, "vgsplus_w2v2", 1)
    assert [p.steps for p in study.phases] == [200, 500]
    for budget in (0, 100, 150, 250):
        config = plan.run_config_of(
            settings, specs[f"template-frac1-p200+{budget}-vgsplus_w2v2-a0.3-seed1"]
        )
        assert [p.steps for p in config.phases] == [200, budget][: 1 + bool(budget)]
        assert config.phases[0].to_json() == study.phases[0].to_json()
        if budget:
            second, reference = config.phases[1].to_dict(), study.phases[1].to_dict()
            assert {**second, "steps": 500} == reference
        eval_every = study.eval_every  # the curves' resolution, not the study's history
        config.phases, study_copy = study.phases, study.copy_and_resolve_references()
        config.eval_every = eval_every
        assert config.to_json() == study_copy.to_json()
    # The curves: seed 0 at the largest budget, one run per start.
    curves = plan.curve_runs(settings, plan.expand(settings))
    assert len(curves) == 6 and all(n.startswith("template-frac1-p200+250-") for n in curves)
    assert all(n.endswith("-seed0") for n in curves)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"steps": "35,70"}, "with second_phase_steps, steps is one budget"),
        ({"schedules": "vgsplus"}, "needs two-phase schedules"),
        ({"alphas": "0.1,1.0"}, "VGS\\+ needs 0 < α < 1"),
        ({"second_phase_steps": "0,-5"}, "the second at least 0"),
        ({"runs": "schedule=vgs_w2v2,alpha=0.3"}, "α given, but vgs_w2v2 has no VGS\\+ phase"),
    ],
)
def test_invalid_forgetting_settings_are_named_before_anything_runs(tmp_path, fields, message):
    settings = _settings(tmp_path, **fields)
    with pytest.raises(ValueError, match=message):
        plan.check_settings(settings, plan.expand(settings))


def test_a_list_of_runs_takes_alpha_and_second(tmp_path):
    settings = _settings(
        tmp_path, runs="schedule=vgsplus_w2v2,alpha=0.3,second=7; schedule=vgs_w2v2,seed=2"
    )
    assert [s.name for s in plan.expand(settings)] == [
        "xxs-frac1-p10+7-vgsplus_w2v2-a0.3-seed0",
        "xxs-frac1-p10+0-vgs_w2v2-seed2",
    ]


def test_dry_run_lists_each_first_phase_once(tmp_path):
    settings = _settings(tmp_path)
    settings.curves.seeds = "0"
    text = sweep_table.plan_text(settings)
    assert "9 runs sharing 3 first phases of 10 steps" in text
    firsts = [ln for ln in text.splitlines() if ln.startswith("| _first/")]
    assert len(firsts) == 3 and "| _first/xxs-frac1-p10-vgs-seed0 |" in text
    assert "3 curve runs" in text
    assert not os.path.exists(settings.out)


def test_the_forgetting_preset_prints_its_plan(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "launch/sweep.py",
            "--config=configs/sweep.py:forgetting",
            f"--config.out={tmp_path / 'sweep'}",  # not a checkout's finished sweep
            "--dry_run",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "72 runs sharing 18 first phases of 200 steps" in done.stdout
    assert "template-frac1-p200+250-vgsplus_w2v2-a0.9-seed2" in done.stdout
    total = done.stdout.strip().splitlines()[-1]
    value, unit = re.search(r"estimated ([\d.]+) (min|h)\b", total).groups()
    minutes = float(value) * (60 if unit == "h" else 1)
    assert minutes <= 120, total  # the preset fits 2 hours by its own estimate


# --- Running, stubbed ----------------------------------------------------------------------


def _params(scale: float) -> dict:
    return {
        "speech_encoder": {
            "frontend": {"conv_0": {"kernel": np.ones((2, 3))}},
            "transformer": {"layer_0": {"w": np.full(4, scale)}},
        },
        "audio_pooler": {"w": np.ones(2)},
    }


def _fake_train(calls):
    def train(study, config, workdir, history=None):
        calls.append((os.path.basename(workdir), bool(history)))
        step = (
            0
            if not workdir_lib.snapshot_steps(workdir)
            else max(workdir_lib.snapshot_steps(workdir))
        )
        total = sum(p.steps for p in config.phases)
        os.makedirs(os.path.join(workdir, "snapshots", str(total)), exist_ok=True)
        bounds, start = [], 0
        for phase in config.phases:
            bounds.append((start, start + phase.steps, phase.name))
            start += phase.steps
        with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
            for first, last, name in bounds:
                for s in range(max(first, step) + 1, last + 1):
                    line = {"step": s, "phase": name, "ssl": 5.0, "steps_per_second": 2.0}
                    line.update(audio_seconds_per_second=16.0)
                    if name != "w2v2":
                        line["coarse"] = 2.0
                    f.write(json.dumps(line) + "\n")

    return train


def _fake_evaluation(workdir, *, split, layers, **_):
    at_switch = f"{os.sep}_first{os.sep}" in workdir
    s2i, i2s = (50.0, 40.0) if at_switch else (30.0, 25.0)
    return {
        "retrieval": {
            "split": split,
            "num_images": 100,
            "speech_to_image": {"r1": 1.0, "r10": s2i},
            "image_to_speech": {"r1": 1.0, "r10": i2s},
        },
        "abx": {
            "trained": {"layer_1": {"within": 5.0, "across": 7.0 if at_switch else 9.0}},
            "best_layer": {"within": "layer_1", "across": "layer_1"},
            "layers": layers,
        },
    }


def _fake_variables(workdir, name=None):
    at_switch = f"{os.sep}_first{os.sep}" in workdir or name is not None
    return {"params": _params(1.0 if at_switch else 1.5), "batch_stats": {}}, 0, {}


@pytest.fixture
def stubbed(monkeypatch):
    calls: list = []
    evaluated: list = []

    def evaluate(workdir, **kwargs):
        evaluated.append(os.path.basename(workdir))
        return _fake_evaluation(workdir, **kwargs)

    monkeypatch.setattr(sweep_run, "_train", _fake_train(calls))
    monkeypatch.setattr(sweep_run, "prepare", lambda settings: None)
    monkeypatch.setattr(study_run, "ensure_corpora", lambda data: True)
    monkeypatch.setattr(sweep_run.evaluate, "evaluate_run", evaluate)
    monkeypatch.setattr(workdir_lib, "load_variables", _fake_variables)
    return calls, evaluated


def test_first_phases_train_and_evaluate_once_for_every_budget(tmp_path, stubbed):
    calls, evaluated = stubbed
    settings = _settings(tmp_path, evaluation_layers="1")
    settings.curves.seeds = "0"
    rows = sweep_run.run_sweep(settings)
    firsts = [c for c in calls if c[0].startswith("xxs-frac1-p10-")]
    assert sorted(firsts) == [
        ("xxs-frac1-p10-vgs-seed0", False),
        ("xxs-frac1-p10-vgsplus-a0.1-seed0", False),
        ("xxs-frac1-p10-vgsplus-a0.5-seed0", False),
    ]
    seconds = [c for c in calls if c not in firsts]
    assert len(seconds) == 6  # budgets 5 and 10 of the three starts; budget 0 trains nothing
    assert {n for n, history in seconds if history} == {
        "xxs-frac1-p10+10-vgsplus_w2v2-a0.1-seed0",
        "xxs-frac1-p10+10-vgsplus_w2v2-a0.5-seed0",
        "xxs-frac1-p10+10-vgs_w2v2-seed0",
    }
    assert sorted(evaluated) == sorted({n for n, _ in firsts} | {n for n, _ in seconds})
    # Each run resumed from a copy of its first phase's closing snapshot and metrics.
    run = plan.run_dir(settings.out, "xxs-frac1-p10+5-vgs_w2v2-seed0")
    assert workdir_lib.snapshot_steps(run) == [10, 15]
    lines = pathlib.Path(run, "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 16))
    assert len(rows) == 9
    table = pathlib.Path(settings.out, plan.TABLE_JSONL).read_text().splitlines()
    for line in table:
        assert set(json.loads(line)["forgetting"]) == BLOCK_KEYS
    # A rerun keeps everything; a larger budget list trains only the new second phases.
    sweep_run.run_sweep(settings)
    assert len(calls) == 9
    settings.second_phase_steps = "0,5,10,20"
    sweep_run.run_sweep(settings)
    assert len(calls) == 12 and all("p10+20" in n for n, _ in calls[9:])


def test_rows_carry_the_forgetting_block(tmp_path, stubbed):
    settings = _settings(tmp_path, alphas="0.5", schedules="vgsplus_w2v2", evaluation_layers="1")
    rows = sweep_run.run_sweep(settings)
    switch = rows["xxs-frac1-p10+0-vgsplus_w2v2-a0.5-seed0"]
    row = rows["xxs-frac1-p10+10-vgsplus_w2v2-a0.5-seed0"]
    assert switch["steps"] == 10 and row["steps"] == 20
    assert switch["retrieval"]["s2i_r10"] == 50.0 and row["retrieval"]["s2i_r10"] == 30.0
    f = row["forgetting"]
    assert f["switch"] == {
        "s2i_r10": 50.0,
        "i2s_r10": 40.0,
        "abx_within": 5.0,
        "abx_across": 7.0,
        "abx_within_layer": "layer_1",
        "abx_across_layer": "layer_1",
    }
    assert (f["end"]["s2i_r10"], f["end"]["abx_across"]) == (30.0, 9.0)
    assert f["retention"] == {"s2i": pytest.approx(0.6), "i2s": pytest.approx(0.625)}
    # chance R@10 = 10 / 100 images: (30 − 10) / (50 − 10) and (25 − 10) / (40 − 10).
    assert f["chance_r10"] == 10.0 and f["num_images"] == 100
    assert f["retention_over_chance"] == {"s2i": pytest.approx(0.5), "i2s": pytest.approx(0.5)}
    assert f["first_phase"] == {
        "objective": "vgsplus",
        "alpha": 0.5,
        "steps": 10,
        "coarse_loss_end": 2.0,
        "ssl_loss_end": 5.0,
        "coarse_loss_chance": pytest.approx(math.log(8)),
    }
    assert f["second_phase"] == {"objective": "w2v2", "steps": 10}
    assert f["layer_distance"] == {
        "frontend": 0.0,
        "layer_1": pytest.approx(0.5),
        "vgs_branch": 0.0,
    }
    assert f["vgs_layer"] == 1 and f["history"] is None
    s = switch["forgetting"]
    assert s["end"] == s["switch"] and s["retention"] == {"s2i": 1.0, "i2s": 1.0}
    assert s["second_phase"] == {"objective": None, "steps": 0}


def test_collect_leaves_second_phases_pending_but_reports_the_switch(tmp_path, stubbed):
    calls, _ = stubbed
    settings = _settings(tmp_path, alphas="0.5", schedules="vgsplus_w2v2", evaluation_layers="1")
    sweep_run.run_sweep(settings, only=["xxs-frac1-p10+0-vgsplus_w2v2-a0.5-seed0"])
    assert [c[0] for c in calls] == ["xxs-frac1-p10-vgsplus-a0.5-seed0"]
    rows = sweep_run.run_sweep(settings, stage="collect")
    assert list(rows) == ["xxs-frac1-p10+0-vgsplus_w2v2-a0.5-seed0"] and len(calls) == 1
    assert "Not finished (2)" in pathlib.Path(settings.out, plan.TABLE_MD).read_text()
