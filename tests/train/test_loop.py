"""The training loop on the tiny corpus: phases in order with their objectives, what a user
sees (metrics, TensorBoard, manifest), exact resume, corrupt snapshots, non-finite steps,
and starting from another run's snapshot."""

from __future__ import annotations

import json
import logging
import os

import jax
import numpy as np
import pytest

from fastvgs_jax.train import loop, snapshots
from fastvgs_jax.train.step import state_digest
from tests.train.conftest import tiny_run_config


def _snapshot_steps(workdir) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "snapshots").iterdir() if p.name.isdigit())


def test_phases_run_in_order_with_their_objectives(uninterrupted):
    workdir, state, _ = uninterrupted
    assert int(state.step) == 7
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [x["phase"] for x in lines] == ["w2v2"] * 2 + ["vgs"] * 5
    assert "contrastive" in lines[0] and "coarse" not in lines[0]
    assert "coarse" in lines[-1] and "contrastive" not in lines[-1]
    assert [x["alpha"] for x in lines] == [0.0] * 2 + [1.0] * 5
    assert all(np.isfinite(x["loss"]) for x in lines)
    # One trace per phase step (SSL-only, then VGS-only), reused at every step.
    assert sorted(loop.TRACES.values())[-2:] == [1, 1], loop.TRACES
    # Phase ends are kept beside the rolling snapshots.
    assert {2, 7} <= set(_snapshot_steps(workdir))


def test_metric_lines_carry_every_term_and_the_schedules(uninterrupted):
    workdir, _, _ = uninterrupted
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    ssl, vgs = lines[0], lines[-1]
    for key in ("contrastive", "diversity", "feature_penalty", "codebook_perplexity"):
        assert np.isfinite(ssl[key]), key
    for line in (ssl, vgs):
        for key in ("loss", "lr", "alpha", "grad_norm", "gumbel_temperature"):
            assert np.isfinite(line[key]), key
        assert line["steps_per_second"] > 0 and line["audio_seconds_per_second"] > 0
    # The optimiser resets at the switch: the lr warms up from 0 again (the lr of each step).
    lr = [x["lr"] for x in lines]
    assert lr[0] == 0.0 and lr[1] > 0 and lr[2] == 0.0 and lr[3] == pytest.approx(1e-4)


def test_tensorboard_events_and_manifest_are_written(uninterrupted):
    from tensorboard.backend.event_processing import event_accumulator

    workdir, _, _ = uninterrupted
    events = event_accumulator.EventAccumulator(str(workdir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 8))
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["seed"] == 0
    assert manifest["config"]["phases"][1]["name"] == "vgs"
    assert manifest["packages"]["jax"] == jax.__version__
    assert manifest["devices"]["count"] == jax.device_count()
    assert manifest["devices"]["host_cpu"]  # the rounding of a CPU run depends on it
    assert manifest["mesh"] == {"data": jax.device_count(), "fsdp": 1, "model": 1}


def test_every_step_logs_model_flops_and_mfu_checked_against_xla(uninterrupted):
    from tensorboard.backend.event_processing import event_accumulator

    workdir, _, _ = uninterrupted
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    performance = json.loads((workdir / "manifest.json").read_text())["performance"]
    steps = performance["steps"]
    assert set(steps) == {"w2v2/audio_image", "vgs/audio_image"}
    for line in lines:
        key = f"{line['phase']}/audio_image"
        assert line["model_flops_per_step"] == steps[key]["analytic_flops_per_step"] > 0
        assert line["model_flops_per_second"] > 0 and 0 < line["mfu"] < 1
        assert line["mfu"] == pytest.approx(
            line["model_flops_per_second"] / performance["peak_flops"]
        )
    for step in steps.values():  # the tiny model: elementwise work XLA counts is ~20 %
        assert 0.7 < step["ratio"] < 1.1 and step["xla_flops_per_step"] > 0
    assert performance["peak_source"].startswith("measured CPU matmul")
    counts = performance["parameters"]
    assert counts["total"] == counts["encoder"] + counts["vgs_branch"] + counts["image"]
    events = event_accumulator.EventAccumulator(str(workdir / "tensorboard"))
    events.Reload()
    assert len(events.Scalars("train/mfu")) == 7
    # Running totals: audio, frames and FLOPs seen, training seconds (and in the manifest).
    frames = [line["frames_seen"] for line in lines]
    assert frames == sorted(frames) and frames[0] > 0
    assert lines[-1]["model_flops_seen"] == pytest.approx(
        sum(line["model_flops_per_step"] for line in lines)
    )
    seen = json.loads((workdir / "manifest.json").read_text())["seen"]
    assert seen["frames"] == frames[-1] and seen["audio_seconds"] / 3600 == pytest.approx(
        lines[-1]["audio_hours_seen"]
    )


def test_eval_hook_runs_at_the_start_and_phase_ends(uninterrupted):
    _, _, calls = uninterrupted
    assert calls == [(0, "w2v2"), (2, "w2v2"), (7, "vgs")]  # eval_every=100: no intervals


def test_resumed_run_is_bitwise_identical(uninterrupted, tiny_data_dir, tmp_path):
    _, reference, _ = uninterrupted
    first = loop.train(tiny_run_config(tiny_data_dir), str(tmp_path), stop_after=4)
    assert int(first.step) == 4  # mid-phase: the snapshot at 3 is the latest
    resumed = loop.train(tiny_run_config(tiny_data_dir), str(tmp_path))
    assert int(resumed.step) == 7
    assert state_digest(resumed) == state_digest(reference)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [r["step"] for r in manifest["restarts"]] == [3]
    # What the run saw continues from the snapshot's totals: as if never interrupted.
    reference_seen = json.loads((uninterrupted[0] / "manifest.json").read_text())["seen"]
    for key in ("audio_seconds", "frames", "model_flops"):
        assert manifest["seen"][key] == pytest.approx(reference_seen[key]), key


# Orbax's abandoned read coroutines of the corrupt snapshot report their errors at exit.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_latest_snapshot_falls_back_to_the_previous(
    uninterrupted, tiny_data_dir, tmp_path, caplog
):
    _, reference, _ = uninterrupted
    loop.train(tiny_run_config(tiny_data_dir), str(tmp_path), stop_after=4)
    assert _snapshot_steps(tmp_path)[-1] == 3
    # Truncate every array file of snapshot 3: what a crashed disk or copy leaves.
    for root, _, files in os.walk(tmp_path / "snapshots" / "3" / "state"):
        for name in files:
            if "ocdbt" in root and "/d" in root:
                path = os.path.join(root, name)
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
    with caplog.at_level(logging.WARNING):
        resumed = loop.train(tiny_run_config(tiny_data_dir), str(tmp_path))
    assert "snapshot 3" in caplog.text and "unreadable" in caplog.text
    assert int(resumed.step) == 7
    assert state_digest(resumed) == state_digest(reference)  # redone from snapshot 2


def test_non_finite_update_stops_naming_the_step_and_term(tiny_data_dir, tmp_path):
    config = tiny_run_config(tiny_data_dir)
    config.optimizer.learning_rate = float("inf")
    with pytest.raises(loop.NonFiniteError, match=r"step 0 \(w2v2\): non-finite update_norm"):
        loop.train(config, str(tmp_path))
    assert not [p for p in (tmp_path / "snapshots").iterdir() if p.name.isdigit()]


def test_non_finite_steps_can_be_skipped_and_counted(tiny_data_dir, tmp_path):
    config = tiny_run_config(tiny_data_dir, "w2v2", 3)
    config.optimizer.learning_rate = float("inf")
    config.nonfinite = "skip"
    state = loop.train(config, str(tmp_path))
    assert int(state.step) == 3 and int(state.skipped) == 3
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["skipped"] == 3


def test_init_from_restores_matching_parameters_and_reports_the_rest(
    uninterrupted, tiny_data_dir, tmp_path
):
    source, reference, _ = uninterrupted
    config = tiny_run_config(tiny_data_dir, "vgs", 3)
    config.model.coarse.loss = "clip"  # adds a learned log_scale the source does not have
    state = loop.train(config, str(tmp_path), init_from=str(source), stop_after=0)
    np.testing.assert_array_equal(
        np.asarray(state.params["speech_encoder"]["cls"]),
        np.asarray(reference.params["speech_encoder"]["cls"]),
    )
    assert int(state.step) == 0  # the model, not the optimiser or the step
    _, report = snapshots.init_from(str(source), state)
    assert report.kept_initial == ["params/log_scale"]
    assert "params/speech_encoder/cls" in report.restored


def test_init_from_with_another_shape_names_the_parameter(uninterrupted, tiny_data_dir, tmp_path):
    source, _, _ = uninterrupted
    config = tiny_run_config(tiny_data_dir, "vgs", 3)
    config.model.mlp_dim = config.model.mlp_dim * 2
    with pytest.raises(snapshots.SnapshotError, match=r"params/speech_encoder/.*has shape"):
        loop.train(config, str(tmp_path), init_from=str(source), stop_after=0)


def test_bad_config_fails_before_anything_is_written(tiny_data_dir, tmp_path):
    config = tiny_run_config(tiny_data_dir)
    config.phases[1].steps = 0
    with pytest.raises(ValueError, match="steps must be positive"):
        loop.train(config, str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


def test_a_model_without_batch_norm_trains_resumes_and_evaluates(tiny_data_dir, tmp_path):
    """The demo's mean pooler + conv image tower leave no batch_stats: snapshots still work."""
    from fastvgs_jax.eval import evaluate

    config = tiny_run_config(tiny_data_dir, objectives="vgs", steps=4)
    config.model.audio_pool.kind = "mean"
    config.model.image.kind = "cnn"
    config.model.image.cnn_widths = (8, 16)
    config.model.coarse.loss = "clip"
    config.snapshot_every = 2
    workdir = tmp_path / "run"
    first = loop.train(config, str(workdir))
    assert first.batch_stats == {}
    again = loop.train(config, str(workdir))  # finished: restores the last snapshot
    assert state_digest(again) == state_digest(first)
    results = evaluate.evaluate_run(str(workdir), tasks=("retrieval",), progress=False)
    assert results["retrieval"]["num_images"] == 4


def test_a_zero_vgs_branch_lr_freezes_exactly_the_vgs_branch(tiny_data_dir, tmp_path):
    """α can't slow the branch (Adam is scale-free), its lr share can: at 0 nothing moves."""
    from fastvgs_jax.models import fastvgs

    config = tiny_run_config(tiny_data_dir, objectives="vgs", steps=3)
    config.phases[0].vgs_branch_lr_scale = 0.0
    config.snapshot_every = 100
    start = loop.train(config, str(tmp_path / "start"), stop_after=0)
    start_params = jax.device_get(start.params)
    end = jax.device_get(loop.train(config, str(tmp_path / "run")).params)
    for name in end:
        same = jax.tree.leaves(jax.tree.map(np.array_equal, end[name], start_params[name]))
        assert all(same) == (name in fastvgs.VGS_BRANCH), name
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["branch_lr"] for x in lines] == [0.0] * 3 and lines[1]["lr"] > 0


def test_a_zero_frontend_grad_scale_freezes_exactly_the_frontend(tiny_data_dir, tmp_path):
    """The gradient stops there, and weight decay must not shrink it either."""
    from fastvgs_jax.models.fastvgs import FRONTEND_PATH

    config = tiny_run_config(tiny_data_dir, objectives="w2v2", steps=3)
    config.model.frontend_grad_scale = 0.0
    config.snapshot_every = 100
    assert config.optimizer.weight_decay > 0
    start = jax.device_get(loop.train(config, str(tmp_path / "start"), stop_after=0).params)
    end = jax.device_get(loop.train(config, str(tmp_path / "run")).params)
    outer, inner = FRONTEND_PATH
    for name in end[outer]:
        same = jax.tree.leaves(jax.tree.map(np.array_equal, end[outer][name], start[outer][name]))
        assert all(same) == (name == inner), name
