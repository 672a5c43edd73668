"""The study end to end on the tiny corpus: a two-phase model trained through the shared
first phase equals the same model trained from scratch; the report is written, a rerun
trains nothing and writes identical results, and a rerun with another config refuses."""

from __future__ import annotations

import copy
import json
import os
import pathlib

import jax
import numpy as np
import pytest

import configs.study
from fastvgs_jax import study
from fastvgs_jax.study import run as study_run
from fastvgs_jax.train import loop, snapshots
from fastvgs_jax.train import phases as phases_lib


def test_shared_first_phase_gives_the_from_scratch_model(tiny_study, uninterrupted):
    settings, _ = tiny_study
    _, reference, _ = uninterrupted
    variables, step, _ = snapshots.load_variables(study.run_dir(settings.out, "w2v2_vgs", 0))
    assert step == 7
    for path, leaf in jax.tree_util.tree_flatten_with_path(reference.params)[0]:
        node = variables["params"]
        for key in path:
            node = node[key.key]
        np.testing.assert_array_equal(node, np.asarray(leaf), err_msg=str(path))


def test_tiny_study_tests_share_one_xdist_group(tiny_study, request):
    """Under pytest-xdist every user of the tiny study runs on one worker (conftest's
    xdist_group mark), which builds the study once; a broken grouping doubles its cost."""
    if not hasattr(request.config, "workerinput"):
        pytest.skip("not running under pytest-xdist")
    assert request.node.nodeid.endswith("@tiny_study"), request.node.nodeid


def test_report_has_both_tables_plots_and_baselines(tiny_study):
    settings, results = tiny_study
    table = (pathlib.Path(settings.out) / "table.md").read_text()
    for text in ("(W2V2, VGS)", "| VGS |", "S→I R@10", "random init", "MFCC"):
        assert text in table, text
    assert set(results["models"]) == {"w2v2_vgs", "vgs"}
    assert results["reference"]["mfcc"]["within"]["mean"] is not None
    plots = os.listdir(os.path.join(settings.out, "plots"))
    assert "abx_per_layer.png" in plots and "history_w2v2_vgs_seed0.png" in plots
    history = study_run.evaluate.read_history(study.run_dir(settings.out, "w2v2_vgs", 0))
    # The first phase's points (from its random-init start) come first; the second phase
    # resumes from a snapshot, so it adds no start point of its own.
    assert [h["step"] for h in history] == [0, 2, 3, 6, 7]


def test_rerun_trains_nothing_and_writes_identical_results(tiny_study):
    settings, _ = tiny_study
    path = pathlib.Path(settings.out) / "results.json"
    before = path.read_text()
    metrics = pathlib.Path(study.run_dir(settings.out, "vgs", 0)) / "metrics.jsonl"
    lines = len(metrics.read_text().splitlines())
    timing_path = pathlib.Path(settings.out) / "timing.json"
    timing = json.loads(timing_path.read_text())
    study.run_study(settings)
    assert path.read_text() == before
    assert len(metrics.read_text().splitlines()) == lines
    assert json.loads(before)["steps"] == 7
    # The rerun keeps the times of the work the first run did (a reused model took ~0 s).
    rerun = json.loads(timing_path.read_text())
    for part in ("VGS seed 0", "(W2V2, VGS) seed 0", "baselines seed 0", "corpus"):
        assert rerun[part] == timing[part], part
    assert rerun["this run"] < rerun["total"]


def test_rerun_with_a_changed_config_names_the_stale_run_and_trains_nothing(tiny_study):
    settings, _ = tiny_study
    path = pathlib.Path(settings.out) / "results.json"
    before = path.read_text()
    changed = copy.deepcopy(settings)
    changed.learning_rates.vgs = 0.5
    with pytest.raises(ValueError, match=r"w2v2_vgs/seed0 was trained with another config"):
        study.run_study(changed)
    assert path.read_text() == before


@pytest.mark.parametrize("preset", ["demo", "quick"])
def test_study_presets_give_valid_runs_for_every_model(preset, tmp_path):
    settings = configs.study.get_config(preset)
    settings.out = str(tmp_path)
    tower = pathlib.Path(study.image_tower_path(settings.out))
    tower.parent.mkdir()
    tower.touch()  # prepare checks that the run's tower exists, not what it holds
    study.check_settings(settings)
    for model in study.study_models(settings):
        plan = loop.prepare(study.model_config(settings, model, 0))
        assert sum(p.steps for p in plan) == settings.steps
        assert settings.run.model.frontend == "logmel"


def test_every_study_model_reads_the_one_pretrained_tower_frozen():
    settings = configs.study.get_config("quick")
    configs_ = [
        study.model_config(settings, m, seed) for m in ("vgs", "w2v2_vgs") for seed in (0, 1)
    ]
    assert {c.image_tower_init for c in configs_} == {study.image_tower_path(settings.out)}
    assert all(c.model.image.cnn_frozen for c in configs_)
    settings.image_tower.enabled = False  # from scratch: nothing loaded, the convs train
    config = study.model_config(settings, "vgs", 0)
    assert config.image_tower_init == "" and not config.model.image.cnn_frozen


def test_study_tower_is_pretrained_once_and_named_in_the_table(tmp_path, monkeypatch):
    from fastvgs_jax.train import image_tower

    settings = configs.study.get_config("quick")
    settings.out = str(tmp_path)
    settings.image_tower.steps, settings.image_tower.num_scenes = 3, 16
    first = study.ensure_image_tower(settings)
    assert os.path.exists(study.image_tower_path(settings.out))
    monkeypatch.setattr(image_tower, "pretrain", lambda _: pytest.fail("retrained"))
    assert json.dumps(study.ensure_image_tower(settings)) == json.dumps(first)
    table = study.tables_markdown(
        {**_empty_results(), "image_tower": {"attribute_f1": 97.4, "scene_exact_match": 80.3}}
    )
    assert "read frozen by every model (held-out attribute F1 97.4 %" in table


def _empty_results() -> dict:
    missing = {"mean": None, "std": None, "n": 0, "layers": [None]}
    return {
        "study": "t",
        "seeds": [0],
        "steps": 1,
        "model": {"size": "tiny", "frontend": "logmel", "num_layers": 1, "hidden_dim": 1},
        "data": {"preset": "tiny", "split": "test"},
        "models": {},
        "reference": {n: {"within": missing, "across": missing} for n in ("mfcc", "random_init")},
    }


def test_unknown_study_models_are_named():
    settings = configs.study.get_config("quick")
    settings.models = "w2v2,vgs_ssl"
    with pytest.raises(ValueError, match="vgs_ssl"):
        study.check_settings(settings)


@pytest.mark.parametrize("steps", [70, 800])
def test_gumbel_temperature_reaches_its_floor_at_the_anneal_share_of_the_budget(steps):
    from fastvgs_jax.train.objectives import gumbel_temperature

    settings = configs.study.get_config("quick")
    settings.steps, settings.temperature_anneal_share = steps, 0.5
    model = study.model_config(settings, "w2v2_vgs", 0).model
    q = model.quantizer
    assert float(gumbel_temperature(model, steps // 4)) > q.temperature_end + 0.1
    assert float(gumbel_temperature(model, steps // 2)) == pytest.approx(q.temperature_end)


def test_min_warmup_share_gives_short_phases_the_one_phase_models_warmup():
    from fastvgs_jax.train.optimizer import warmup_steps

    settings = configs.study.get_config("demo")
    settings.steps, settings.min_warmup_share = 700, 0.1
    config = study.model_config(settings, "w2v2_vgs", 0)
    o = config.optimizer
    first, second = (p.steps for p in config.phases)
    assert (first, second) == (200, 500)
    assert warmup_steps(first, o.warmup_fraction, o.min_warmup_steps) == 70
    assert warmup_steps(second, o.warmup_fraction, o.min_warmup_steps) == 70
    settings.min_warmup_share = None
    o = study.model_config(settings, "w2v2_vgs", 0).optimizer
    assert warmup_steps(first, o.warmup_fraction, o.min_warmup_steps) == 20


@pytest.mark.parametrize("steps, every", [(700, 50), (1400, 100)])
def test_history_points_spread_over_the_step_budget(steps, every):
    settings = configs.study.get_config("demo")
    settings.steps = steps
    assert study.model_config(settings, "w2v2_vgs", 0).eval_every == every


def test_study_learning_rates_are_set_per_objective_phase():
    settings = configs.study.get_config("quick")
    settings.learning_rates.w2v2, settings.learning_rates.vgs = 1e-3, 2e-4
    phases = study.model_config(settings, "w2v2_vgs", 0).phases
    assert [(p.name, p.learning_rate) for p in phases] == [("w2v2", 1e-3), ("vgs", 2e-4)]


def test_study_vgs_branch_lr_scales_are_set_per_objective_phase():
    settings = configs.study.get_config("quick")
    settings.vgs_branch_lr_scales.vgsplus = 0.3
    phases = study.model_config(settings, "vgsplus_vgs", 0).phases
    assert [(p.name, p.vgs_branch_lr_scale) for p in phases] == [("vgsplus", 0.3), ("vgs", 1.0)]


def test_audio_only_shares_mix_pool_sentences_into_the_ssl_phases_only():
    settings = configs.study.get_config("quick")
    settings.audio_only_shares.w2v2, settings.audio_only_shares.vgsplus = 0.5, 0.25
    phases = study.model_config(settings, "w2v2_vgsplus", 0).phases
    assert [dict(p.mix) for p in phases] == [
        {"audio_image": 0.5, "audio_only": 0.5},
        {"audio_image": 0.75, "audio_only": 0.25},
    ]
    (vgs,) = study.model_config(settings, "vgs", 0).phases
    assert dict(vgs.mix) == {"audio_image": 1.0}
    settings.audio_only_shares.vgs = 0.5  # a VGS phase has no loss on audio-only batches
    with pytest.raises(ValueError, match="audio_only_shares.vgs"):
        study.model_config(settings, "vgs", 0)
    settings.audio_only_shares.vgs, settings.audio_only_shares.w2v2 = None, 1.0
    with pytest.raises(ValueError, match="audio_only_shares.w2v2"):
        study.model_config(settings, "w2v2", 0)


def test_vgsplus_alpha_sets_only_the_joint_phases_coarse_weight():
    settings = configs.study.get_config("quick")
    settings.vgsplus_alpha = 0.25
    phases = study.model_config(settings, "vgsplus_vgs", 0).phases
    assert [(p.alpha.start, p.alpha.end) for p in phases] == [(0.25, 0.25), (1.0, 1.0)]
    settings.vgsplus_alpha = 1.0  # would silently turn VGS+ into VGS
    with pytest.raises(ValueError, match="vgsplus_alpha"):
        study.model_config(settings, "vgsplus", 0)


def test_vgsplus_alpha_delay_trains_ssl_alone_before_the_joint_loss():
    settings = configs.study.get_config("quick")  # 70 steps: first phases of 20
    settings.vgsplus_alpha, settings.vgsplus_alpha_delay_share = 0.25, 0.1
    config = study.model_config(settings, "vgsplus_vgs", 0)
    joint, vgs = phases_lib.phases_from_config(config)
    assert [joint.alpha(k) for k in (0, 6, 7, 19)] == [0.0, 0.0, 0.25, 0.25]
    assert joint.needs("audio_image") == (True, True)  # the VGS branch is built all along
    assert [vgs.alpha(k) for k in (0, 49)] == [1.0, 1.0]  # VGS phases keep α = 1
    settings.vgsplus_alpha_delay_share = 1.0
    with pytest.raises(ValueError, match="vgsplus_alpha_delay_share"):
        study.model_config(settings, "vgsplus", 0)


def test_remaining_steps_count_each_shared_first_phase_once(tmp_path):
    settings = configs.study.get_config("quick")
    settings.out, settings.steps = str(tmp_path), 100
    models = ["w2v2", "w2v2_vgs", "w2v2_vgsplus", "vgs_w2v2"]
    cost = study.remaining_steps(settings, models, 0)
    # (W2V2, ·) share their 29-step first phase; the first model needing it pays for it.
    assert cost == {"w2v2": 100, "w2v2_vgs": 100, "w2v2_vgsplus": 71, "vgs_w2v2": 100}
    finished = pathlib.Path(study.run_dir(settings.out, "w2v2", 0))
    finished.mkdir(parents=True)
    (finished / study.EVALUATION_FILE).write_text("{}")
    assert study.remaining_steps(settings, models, 0)["w2v2"] == 0


def test_cached_evaluation_of_another_retrieval_split_is_redone(tmp_path, monkeypatch):
    settings = configs.study.get_config("quick")
    (tmp_path / study.EVALUATION_FILE).write_text(json.dumps({"retrieval": {"split": "test"}}))
    calls = []

    def evaluate_run(workdir, *, split, **_):
        calls.append(split)
        return {"retrieval": {"split": split}}

    monkeypatch.setattr(study_run.evaluate, "evaluate_run", evaluate_run)
    assert study.evaluate_model(settings, str(tmp_path))["retrieval"]["split"] == "test"
    assert calls == []  # same split: the cache answers
    settings.test_split = "validation"
    assert study.evaluate_model(settings, str(tmp_path))["retrieval"]["split"] == "validation"
    assert calls == ["validation"]
    cached = json.loads((tmp_path / study.EVALUATION_FILE).read_text())
    assert cached["retrieval"]["split"] == "validation"


def test_study_clock_keeps_reused_times_and_writes_after_each_part(tmp_path):
    path = tmp_path / "timing.json"
    path.write_text(json.dumps({"VGS seed 0": 300.0, "W2V2 seed 0": "?", "total": 400.0}))
    clock = study.StudyClock(total_steps=10, path=str(path))
    clock.finished("VGS seed 0", steps=0, seconds=0.1, reused=True)
    assert json.loads(path.read_text()) == {"VGS seed 0": 300.0}  # no stale totals, no "?"
    clock.finished("W2V2 seed 0", steps=10, seconds=5.04, reused=False)
    clock.write_totals()
    timing = json.loads(path.read_text())
    assert timing["W2V2 seed 0"] == 5.0
    assert timing["total"] >= 299.9 > timing["this run"]
