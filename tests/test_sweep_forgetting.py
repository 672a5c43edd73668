"""The forgetting sweep: its axes (α, the second phase's length) and stable names, shared
first phases trained and evaluated once (training and evaluation stubbed), the retention
arithmetic and the layers' parameter distance by hand, the report on handmade rows, and one
real two-run sweep on the tiny corpus with its report and docs section."""

from __future__ import annotations

import copy
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import configs.sweep
from fastvgs_jax import workdir as workdir_lib
from fastvgs_jax.study import plan as study_plan
from fastvgs_jax.study import run as study_run
from fastvgs_jax.sweep import forgetting, forgetting_rows, plan
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
    assert plan.steps_to_train(specs) == 6 * 10 + 6 * (5 + 10)
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
    assert len(specs) == 3 * (5 + 1) * 3
    # The demo study's (VGS+, W2V2) at α = 0.3 and seed 1, its out the sweep's folder.
    demo = configs.study.get_config("demo")
    demo.out, demo.vgsplus_alpha = settings.out, 0.3
    study = study_plan.model_config(demo, "vgsplus_w2v2", 1)
    assert [p.steps for p in study.phases] == [200, 500]
    for budget in (0, 100, 150):
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
    assert len(curves) == 6 and all(n.startswith("template-frac1-p200+150-") for n in curves)
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


def test_the_forgetting_preset_prints_its_plan():
    done = subprocess.run(
        [sys.executable, "launch/sweep.py", "--config=configs/sweep.py:forgetting", "--dry_run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "54 runs sharing 18 first phases of 200 steps" in done.stdout
    assert "template-frac1-p200+150-vgsplus_w2v2-a0.9-seed2" in done.stdout
    total = done.stdout.strip().splitlines()[-1]
    minutes = float(total.rsplit("; ", 1)[1].split()[0])
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


# --- Arithmetic ----------------------------------------------------------------------------


def test_retention_arithmetic_by_hand():
    assert forgetting_rows.chance_recall(100) == 10.0
    assert forgetting_rows.chance_recall(4) == 100.0  # 10 of 4 images: every ranking hits
    assert forgetting_rows.chance_recall(5000) == pytest.approx(0.2)  # the paper's test split
    assert forgetting_rows.retention(30.0, 50.0) == pytest.approx(0.6)
    assert forgetting_rows.retention(30.0, 0.0) is None
    assert forgetting_rows.retention(None, 50.0) is None
    assert forgetting_rows.retention_over_chance(30.0, 50.0, 10.0) == pytest.approx(0.5)
    assert forgetting_rows.retention_over_chance(10.0, 50.0, 10.0) == 0.0  # back at chance
    assert forgetting_rows.retention_over_chance(5.0, 50.0, 10.0) == pytest.approx(-0.125)
    assert forgetting_rows.retention_over_chance(60.0, 50.0, 10.0) == pytest.approx(1.25)
    assert forgetting_rows.retention_over_chance(12.0, 10.0, 10.0) is None  # nothing to keep
    assert forgetting_rows.retention_over_chance(12.0, 8.0, 10.0) is None


def test_layer_distance_on_handmade_parameter_trees():
    before = {
        "speech_encoder": {
            "frontend": {"conv_0": {"kernel": np.array([3.0, 4.0])}},
            "feature_projection": {"kernel": np.array([1.0, 0.0])},
            "positional_conv": {"bias": np.zeros(2)},
            "transformer": {
                "layer_0": {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])},
                "layer_1": {"a": np.zeros(2)},
            },
        },
        "audio_pooler": {"w": np.array([2.0])},
        "log_scale": np.array(1.0),
        "quantizer": {"codebook": np.ones(4)},
        "image_encoder": {"cnn": {"w": np.ones(1)}},
    }
    after = copy.deepcopy(before)
    after["speech_encoder"] = {
        "frontend": {"conv_0": {"kernel": np.array([3.0, 4.0])}},  # unchanged
        "feature_projection": {"kernel": np.array([1.0, 1.0])},  # |Δ| 1 of |θ| 1
        "positional_conv": {"bias": np.zeros(2)},
        "transformer": {
            # Δ = (0, 1, 1, 0): √2 of |θ| √2 → 1.
            "layer_0": {"a": np.array([1.0, 1.0]), "b": np.array([1.0, 1.0])},
            "layer_1": {"a": np.array([0.5, 0.0])},  # moved from all zeros: no ratio
        },
    }
    after["audio_pooler"] = {"w": np.array([3.0])}  # the branch with the CLIP scale:
    after["log_scale"] = np.array(1.0)  # |Δ| 1 of |θ| √5
    distance = forgetting_rows.layer_distance(before, after)
    assert list(distance) == [
        "frontend",
        "input",
        "layer_1",
        "layer_2",
        "vgs_branch",
        "ssl_head",
        "image",
    ]
    assert distance["frontend"] == 0.0 and distance["input"] == pytest.approx(1.0)
    assert distance["layer_1"] == pytest.approx(1.0) and distance["layer_2"] is None
    assert distance["vgs_branch"] == pytest.approx(1 / math.sqrt(5))
    assert distance["ssl_head"] == 0.0 and distance["image"] == 0.0
    after["quantizer"] = {"codebook": np.ones(3)}
    with pytest.raises(ValueError, match="quantizer/codebook differs"):
        forgetting_rows.layer_distance(before, after)


# --- The report on handmade rows -----------------------------------------------------------


def _row(schedule, alpha, seed, budget, switch, end, coarse=2.5, moved=0.1):
    start = schedule.split("_")[0]
    chance = 10.0
    return {
        "run": f"s-p200+{budget}-{schedule}-a{alpha}-seed{seed}",
        "schedule": schedule,
        "seed": seed,
        "forgetting": {
            "switch": {"s2i_r10": switch, "i2s_r10": switch, "abx_within": 3.0, "abx_across": 4.0},
            "end": {"s2i_r10": end, "i2s_r10": end, "abx_within": 2.5, "abx_across": 3.5},
            "retention": {"s2i": end / switch, "i2s": end / switch},
            "retention_over_chance": {
                d: forgetting_rows.retention_over_chance(end, switch, chance)
                for d in ("s2i", "i2s")
            },
            "chance_r10": chance,
            "num_images": 100,
            "first_phase": {
                "objective": start,
                "alpha": alpha,
                "steps": 200,
                "coarse_loss_end": coarse,
                "ssl_loss_end": None if start == "vgs" else 4.0,
                "coarse_loss_chance": math.log(16),
            },
            "second_phase": {"objective": "w2v2" if budget else None, "steps": budget},
            "layer_distance": {
                "layer_1": moved * (budget > 0),
                "layer_2": 2 * moved * (budget > 0),
                "vgs_branch": 0.0,
            },
            "vgs_layer": 1,
            "history": None,
        },
    }


def _rows(joint_end):
    """VGS starts at 35 % that fall to 15–17 % (over chance ≈ 0.2); VGS+ α=0.1 starts at
    20 % that end at ``joint_end`` (per seed); α=0.5 at chance at the switch."""
    rows = []
    for seed in (0, 1, 2):
        for budget in (0, 100):
            rows.append(
                _row("vgs_w2v2", 1.0, seed, budget, 35.0, 35.0 if not budget else 15 + seed)
            )
            end = 20.0 if not budget else joint_end[seed]
            rows.append(_row("vgsplus_w2v2", 0.1, seed, budget, 20.0, end, coarse=2.6, moved=0.2))
            rows.append(_row("vgsplus_w2v2", 0.5, seed, budget, 10.0, 10.0, coarse=2.77))
    return rows


def test_findings_are_computed_from_the_numbers():
    # α=0.1 keeps (18 − 10) / (20 − 10) = 0.8 and more of its above-chance recall at every
    # seed, the VGS start (15..17 − 10) / 25 ≤ 0.28: above beyond the seed spread.
    summary = forgetting_rows.summarise(_rows([18.0, 19.0, 20.0]), sweep="hand")
    text = "\n".join(summary["findings"])
    assert 3 <= len(summary["findings"]) <= 5
    assert "After 100 SSL steps (VGS, W2V2) keeps 24 ± 3 % of its above-chance" in text
    assert "more, beyond the seed spread (every seed above every VGS seed), at α = 0.1 (90" in text
    assert "no retention to measure at α = 0.5" in text
    assert "At every budget, α = 0.1 keeps more retrieval than the VGS start" in text
    assert "52.0 vs 0.2 %" in text and "the best VGS+ start (α=0.1) ends at 19.0 ± 0.8 %" in text
    assert "coarse loss ends at 2.60 at α=0.1, 2.77 at α=0.5 against the VGS phase's 2.50" in text
    assert "move by a relative L2 distance of 0.100–0.200 from VGS+ starts and 0.100" in text
    group = next(g for g in summary["groups"] if g["label"] == "VGS+ α=0.1" and g["budget"])
    assert group["s2i_retention_over_chance"]["values"] == pytest.approx([0.8, 0.9, 1.0])
    # Overlapping seeds: more by the mean only, and no α keeps more at every budget.
    overlap = forgetting_rows.summarise(_rows([12.0, 13.0, 18.0]), sweep="hand")
    text = "\n".join(overlap["findings"])
    assert "more by the mean only (the seed ranges overlap) at α = 0.1" in text
    assert "No α keeps more retrieval than the VGS start beyond the seed spread" in text


def test_report_writes_tables_plots_and_replaces_its_docs_section(tmp_path):
    folder = tmp_path / "hand"
    folder.mkdir()
    rows = _rows([18.0, 19.0, 20.0])
    (folder / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    page.write_text(f"# Results\n\nkept\n\n{forgetting.BEGIN}\nSTALE\n{forgetting.END}\n\ntail\n")
    assert forgetting.main([f"--sweep={folder}", f"--docs={page}"]) == 0
    table = (folder / "forgetting.md").read_text()
    assert "| (VGS+, W2V2) | VGS+ α=0.1 | 100 | 3 | 20.0 ± 0.0 | 19.0 ± 0.8 |" in table
    assert "| VGS | 3 | 2.500 ± 0.000 | – |" in table
    assert "## How far each part moves in 100 SSL steps" in table
    for plot in ("retention", "layer_distance"):
        assert (folder / "plots" / f"{plot}.png").stat().st_size > 0
        assert (page.parent / "images" / f"hand_{plot}.png").exists()
    text = page.read_text()
    assert text.startswith("# Results\n\nkept\n\n") and text.endswith("\n\ntail\n")
    assert "STALE" not in text and text.count(forgetting.BEGIN) == 1
    assert "![retention](images/hand_retention.png)" in text
    summary = json.loads((folder / "forgetting.json").read_text())
    assert summary["findings"][0] in text
    # Written again, identically; on a page without the markers, appended.
    forgetting.main([f"--sweep={folder}", f"--docs={page}"])
    assert page.read_text() == text
    bare = tmp_path / "docs" / "bare.md"
    bare.write_text("# Bare\n")
    forgetting.write_docs(str(folder), summary, str(bare))
    assert bare.read_text().startswith(f"# Bare\n\n{forgetting.BEGIN}\n")


def test_report_without_a_forgetting_block_says_so(tmp_path, capsys):
    (tmp_path / "sweep.jsonl").write_text(json.dumps({"run": "a", "schedule": "vgs"}) + "\n")
    assert forgetting.main([f"--sweep={tmp_path}"]) == 2
    assert "no runs with a forgetting block" in capsys.readouterr().err


# --- A real two-run sweep ------------------------------------------------------------------


def test_two_run_forgetting_sweep_trains_evaluates_and_reports(tiny_data_dir, tmp_path):
    settings = _settings(
        tmp_path,
        schedules="vgsplus_w2v2",
        alphas="0.3",
        second_phase_steps="0,2",
        steps="7",
        first_phase_steps=2,
        evaluation_layers="1",
    )
    settings.curves.seeds = "0"
    study = settings.study
    study.run.data.data_dir = tiny_data_dir
    study.image_tower.enabled = False  # the convs train from scratch: no tower to pretrain
    study.run.model.image.cnn_widths = (8, 16)  # less to compile
    study.progress = study.run.progress = False
    study.run.log_every, study.run.eval_every = 1, 2
    study.history.points = None  # the curves' resolution: run.eval_every, as the preset
    study.history.num_images, study.history.num_abx_utterances = 4, 8
    study.history.layers = "1"
    rows = sweep_run.run_sweep(settings)
    assert list(rows) == [
        "xxs-frac1-p2+0-vgsplus_w2v2-a0.3-seed0",
        "xxs-frac1-p2+2-vgsplus_w2v2-a0.3-seed0",
    ]
    switch, end = rows.values()
    assert set(end["forgetting"]) == BLOCK_KEYS
    f = end["forgetting"]
    assert f["switch"] == switch["forgetting"]["switch"] == switch["forgetting"]["end"]
    assert f["first_phase"]["alpha"] == 0.3 and f["first_phase"]["coarse_loss_end"] > 0
    assert f["chance_r10"] == 100.0  # 4 test images: R@10 is always 100
    assert f["retention"]["s2i"] == pytest.approx(f["end"]["s2i_r10"] / f["switch"]["s2i_r10"])
    assert set(f["layer_distance"]) >= {"frontend", "input", "layer_1", "layer_2", "vgs_branch"}
    assert f["end"]["abx_within_layer"] == "layer_1"  # the evaluation's one layer
    assert (
        f["layer_distance"]["layer_1"] > 0
        and switch["forgetting"]["layer_distance"]["layer_1"] == 0.0
    )
    # The curve: the switch (step 2), then every eval_every (2) steps of the second phase.
    history = pathlib.Path(settings.out, f["history"])
    steps = [json.loads(x)["step"] for x in history.read_text().splitlines()]
    assert steps == [2, 4]
    metrics = pathlib.Path(plan.run_dir(settings.out, end["run"]), "metrics.jsonl")
    before = metrics.read_text()
    assert sweep_run.run_sweep(settings) == rows and metrics.read_text() == before
    # The report and a docs section in a copy of the results page.
    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    shutil.copyfile(os.path.join(ROOT, "docs", "results.md"), page)
    assert forgetting.main([f"--sweep={settings.out}", f"--docs={page}"]) == 0
    for plot in forgetting.PLOTS:
        assert pathlib.Path(settings.out, "plots", f"{plot}.png").exists()
    assert (
        "| (VGS+, W2V2) | VGS+ α=0.3 | 2 | 1 |"
        in pathlib.Path(settings.out, "forgetting.md").read_text()
    )
    text = page.read_text()
    assert text.startswith("# Results: the demo study") and forgetting.END in text
    assert "![forgetting_curves](images/sweep_forgetting_curves.png)" in text
