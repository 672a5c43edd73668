"""Phases as data (α schedules, validation, schedule segments) and the reference optimiser."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fastvgs_jax.study import MODELS
from fastvgs_jax.train import config as run_config
from fastvgs_jax.train import optimizer, phases


def _phases(*plan):
    c = run_config.base_config("tiny", "tiny")
    c.phases = list(plan)
    return phases.phases_from_config(c)


def test_two_phase_study_model_splits_20_to_50_and_resets():
    plan = run_config.study_phases("w2v2_vgs", 700)
    (first, second) = _phases(*plan)
    assert (first.steps, second.steps) == (200, 500)
    assert first.loss_weights(0, "audio_image") == (0.0, 1.0)
    assert second.loss_weights(499, "audio_image") == (1.0, 0.0)
    assert second.reset_optimizer
    assert first.needs("audio_image") == (True, False)  # SSL only: no VGS branch compiled
    assert second.needs("audio_image") == (False, True)


def test_alpha_schedules():
    p = run_config.phase("ramp", 11, 0.0)
    p.alpha.kind, p.alpha.end = "linear", 1.0
    (ramp,) = _phases(p)
    assert [ramp.alpha(i) for i in (0, 5, 10)] == pytest.approx([0.0, 0.5, 1.0])
    p.alpha.kind = "cosine"
    (cos,) = _phases(p)
    assert [cos.alpha(i) for i in (0, 5, 10)] == pytest.approx([0.0, 0.5, 1.0])
    p.alpha.kind, p.alpha.boundaries, p.alpha.values = "steps", (3, 8), (0.25, 0.75)
    (steps,) = _phases(p)
    assert [steps.alpha(i) for i in (0, 3, 7, 8)] == [0.0, 0.25, 0.25, 0.75]


def _vgs_only(p, mix):
    p.alpha.start, p.mix = 1.0, mix


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: setattr(p, "steps", 0), "steps must be positive"),
        (lambda p: setattr(p.alpha, "kind", "sine"), "alpha.kind"),
        (lambda p: setattr(p.alpha, "start", 1.5), r"\[0, 1\]"),
        (lambda p: setattr(p, "weights", (0.0, 0.0, 0.0)), "all loss weights are zero"),
        (lambda p: setattr(p, "mix", {"audio_only": 1.0}), "needs audio-image data"),
        (lambda p: setattr(p, "mix", {"captions": 1.0}), "unknown mix streams"),
        (lambda p: _vgs_only(p, mix={"audio_image": 0.5, "audio_only": 0.5}), "carry no loss"),
        (lambda p: setattr(p, "learning_rate", 0.0), "learning_rate must be positive"),
        (lambda p: setattr(p, "vgs_branch_lr_scale", -0.5), "vgs_branch_lr_scale"),
    ],
)
def test_bad_phases_are_clear_errors(edit, message):
    p = run_config.phase("bad", 10, 0.5)
    edit(p)
    with pytest.raises(ValueError, match=message):
        _phases(p)


def test_a_phase_learning_rate_replaces_the_peak_lr_of_its_schedule():
    from fastvgs_jax.train.loop import _phase_optimizer

    config = run_config.base_config("tiny", "tiny")
    a, b = run_config.phase("a", 10, 0.0), run_config.phase("b", 10, 1.0)
    b.learning_rate = 3e-5
    plan = _phases(a, b)
    assert [p.learning_rate for p in plan] == [None, 3e-5]
    rates = []
    for p in plan:
        _, schedule = optimizer.make_optimizer(_phase_optimizer(config.optimizer, p), 10)
        rates.append(max(float(schedule(i)) for i in range(10)))
    assert rates == pytest.approx([config.optimizer.learning_rate, 3e-5])
    assert config.optimizer.learning_rate != 3e-5  # the run's section is left as it was


def test_vgs_branch_updates_take_the_branch_lr_and_the_rest_the_phase_lr():
    import jax.numpy as jnp

    from fastvgs_jax.train.step import scale_updates

    direction = {
        "speech_encoder": {"w": jnp.array([1.0, -2.0])},
        "audio_pooler": {"w": jnp.array([4.0])},
        "image_encoder": {"conv": {"w": jnp.array([-1.0])}},
        "log_scale": jnp.array(2.0),
        "quantizer": {"w": jnp.array([3.0])},
    }
    out = scale_updates(direction, 0.5, 0.1)
    assert out["speech_encoder"]["w"].tolist() == [-0.5, 1.0]
    assert out["quantizer"]["w"].tolist() == [-1.5]
    assert out["audio_pooler"]["w"].tolist() == pytest.approx([-0.4])
    assert out["image_encoder"]["conv"]["w"].tolist() == pytest.approx([0.1])
    assert float(out["log_scale"]) == pytest.approx(-0.2)


def test_a_kept_optimizer_shares_one_schedule_across_phases():
    a = run_config.phase("a", 10, 0.0)
    b = run_config.phase("b", 30, 0.0, reset_optimizer=False)
    c = run_config.phase("c", 5, 1.0)
    plan = _phases(a, b, c)
    assert phases.schedule_lengths(plan) == [40, 40, 5]
    assert phases.locate(plan, 0) == (0, 0)
    assert phases.locate(plan, 12) == (1, 2)
    assert phases.locate(plan, 44) == (2, 4)
    assert phases.locate(plan, 45) == (3, 0)


def test_warmup_then_linear_decay():
    schedule = optimizer.warmup_linear_decay(1e-4, 100, 0.1)
    assert float(schedule(0)) == 0.0
    assert float(schedule(10)) == pytest.approx(1e-4)
    assert float(schedule(55)) == pytest.approx(0.5e-4)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-12)


def test_min_warmup_steps_floors_a_short_schedules_warmup():
    assert optimizer.warmup_steps(200, 0.1) == 20
    assert optimizer.warmup_steps(200, 0.1, min_warmup_steps=70) == 70
    assert optimizer.warmup_steps(1000, 0.1, min_warmup_steps=70) == 100  # the share is longer
    assert optimizer.warmup_steps(50, 0.1, min_warmup_steps=70) == 49  # one step left to decay
    schedule = optimizer.warmup_linear_decay(1e-3, 200, 0.1, min_warmup_steps=70)
    assert float(schedule(35)) == pytest.approx(0.5e-3)
    assert float(schedule(70)) == pytest.approx(1e-3)
    assert float(schedule(135)) == pytest.approx(0.5e-3)
    with pytest.raises(ValueError, match="min_warmup_steps"):
        optimizer.warmup_steps(200, 0.1, min_warmup_steps=-1)


def test_adam_without_bias_correction_first_step_by_hand():
    c = run_config.base_config("tiny", "tiny").optimizer
    c.clip_norm = 0.0
    c.weight_decay = 0.0
    tx, schedule = optimizer.make_optimizer(c, total_steps=10)  # warm-up 1 step: lr(1)=1e-4
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, -0.1])}
    state = tx.init(params)
    _, state = tx.update(grads, state, params)  # step 0 (lr 0)
    direction, _ = tx.update(grads, state, params)
    updates = jax.tree.map(lambda d: -schedule(1) * d, direction)  # what the train step does
    # m = 0.1·g·(1 + 0.9), v = 0.001·g²·(1 + 0.999); no 1/(1 − βᵗ) correction.
    g = np.array([0.5, -0.1])
    m = 0.1 * g * 1.9
    v = 0.001 * g**2 * 1.999
    expected = -1e-4 * m / (np.sqrt(v) + 1e-6)
    np.testing.assert_allclose(np.asarray(updates["w"]), expected, rtol=1e-5)
    # Bias-corrected Adam would move lr = 1e-4 per coordinate; early steps without the
    # correction move (1 − β1)(1 + β1) / √((1 − β2)(1 + β2)) ≈ 4.25 times that.
    assert float(updates["w"][0]) == pytest.approx(-4.25e-4, rel=1e-3)


def test_decoupled_weight_decay_and_clipping():
    c = run_config.base_config("tiny", "tiny").optimizer
    tx, _ = optimizer.make_optimizer(c, total_steps=10)
    params = {"w": jnp.array([3.0, 4.0])}
    state = tx.init(params)
    huge = {"w": jnp.array([300.0, 400.0])}
    clipped = optax.clip_by_global_norm(1.0).update(huge, optax.EmptyState())[0]
    np.testing.assert_allclose(np.asarray(clipped["w"]), [0.6, 0.8], rtol=1e-6)
    _, state = tx.update(huge, state, params)
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, state, params)
    # With zero gradient the update is m/(√v+ε) from the clipped history plus 0.01·w.
    assert np.all(np.isfinite(np.asarray(updates["w"])))


STUDY_CONFIGS = (*MODELS, "fastvgs_plus", "demo")  # one config file per study model


@pytest.mark.parametrize("name", STUDY_CONFIGS)
def test_every_study_config_loads_and_validates(name):
    import importlib

    from fastvgs_jax.models import fastvgs

    module = importlib.import_module(f"configs.{name}")
    config = module.get_config("tiny,tiny,70") if name != "demo" else module.get_config()
    plan = phases.phases_from_config(config)
    fastvgs.check_model_config(config.model)
    assert sum(p.steps for p in plan) == (70 if name != "demo" else 2000)
    if "_" in name and name != "fastvgs_plus":
        assert [p.steps for p in plan] == ([20, 50] if name != "demo" else [571, 1429])
        assert plan[1].reset_optimizer


def test_a_phase_in_epochs_takes_its_length_from_the_built_split(tiny_data_dir):
    from fastvgs_jax.data import pipelines, sources
    from fastvgs_jax.train import loop

    c = run_config.base_config("tiny", "tiny")
    c.data.data_dir = tiny_data_dir
    c.data.audio_image.batch_size = 8
    c.phases = [run_config.phase("ssl", 1, 0.0, mix={"audio_only": 1.0})]
    c.phases[0].epochs = 2.0
    c.phases.append(run_config.phase("vgs", 1, 1.0))
    c.phases[1].epochs = 1.0
    ssl, vgs = loop.prepare(c, resolve_epochs=True)
    train_size = len(sources.open_split(tiny_data_dir, "tiny", "train"))
    audio_only = len(
        pipelines.long_enough_indices(
            sources.open_split(tiny_data_dir, "tiny", "audio_only"),
            pipelines.stream_spec(c.data, "audio_only"),
        )
    )
    assert vgs.steps == -(-train_size // 8)
    assert ssl.steps == -(-2 * audio_only // c.data.audio_only.batch_size)
    c.phases[1].epochs = 0.0
    with pytest.raises(ValueError, match="epochs must be positive"):
        loop.prepare(c)
