"""The reference optimiser: Adam without bias correction, decoupled weight decay, warm-up
then linear decay, global gradient-norm clipping (BERT's ``BertAdam``, as FaST-VGS uses).

AdamW (optax, bias-corrected) is the alternative ``optimizer.name="adamw"``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax


class NoBiasAdamState(NamedTuple):
    mu: optax.Updates
    nu: optax.Updates


def scale_by_adam_without_bias_correction(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6
) -> optax.GradientTransformation:
    """m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; update = m / (√v + ε) — no 1/(1−βᵗ)."""

    def init(params):
        zeros = jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params)
        return NoBiasAdamState(zeros, jax.tree.map(jnp.copy, zeros))

    def update(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, updates)
        out = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
        return out, NoBiasAdamState(mu, nu)

    return optax.GradientTransformation(init, update)


def warmup_steps(total_steps: int, warmup_fraction: float, min_warmup_steps: int = 0) -> int:
    """The warm-up length: ``warmup_fraction`` of the schedule, at least ``min_warmup_steps``.

    The floor is for short phases: a 200-step SSL phase with a 10 % (20-step) warm-up sent
    the layers' phone information into a dip it had not left by the phase end, where a
    70-step warm-up kept them near their start (docs/demo_design.md). One step is always
    left to the decay, so a floor longer than the schedule cannot make it all warm-up.
    """
    if total_steps <= 0:
        raise ValueError(f"a learning-rate schedule needs a positive length, got {total_steps}")
    if min_warmup_steps < 0:
        raise ValueError(f"optimizer.min_warmup_steps={min_warmup_steps}: expected ≥ 0")
    warmup = max(1, int(round(warmup_fraction * total_steps)), int(min_warmup_steps))
    return min(warmup, max(1, total_steps - 1))


def warmup_linear_decay(
    peak: float, total_steps: int, warmup_fraction: float, min_warmup_steps: int = 0
) -> optax.Schedule:
    """0 → ``peak`` linearly over the warm-up (``warmup_steps``), then linearly to 0."""
    warmup = warmup_steps(total_steps, warmup_fraction, min_warmup_steps)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, peak, warmup),
            optax.linear_schedule(peak, 0.0, max(1, total_steps - warmup)),
        ],
        [warmup],
    )


def make_optimizer(
    config: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The configured optimiser direction and its lr schedule over ``total_steps`` updates.

    The transformation stops short of the learning rate: the train step multiplies its
    output by ``-schedule(step)``, passed in as a traced scalar, so one compiled step serves
    every schedule length (phases of 20 and 50 parts, resumed runs, other budgets).

    config: the run config's ``optimizer`` section (name, learning_rate, b1, b2, eps,
    weight_decay, warmup_fraction, min_warmup_steps, clip_norm).
    """
    schedule = warmup_linear_decay(
        config.learning_rate,
        total_steps,
        config.warmup_fraction,
        config.min_warmup_steps,
    )
    return optimizer_direction(config), schedule


def optimizer_direction(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Clip → Adam (with or without bias correction) → decoupled weight decay; no lr."""
    if config.name == "bert_adam":
        adam = scale_by_adam_without_bias_correction(config.b1, config.b2, config.eps)
    elif config.name == "adamw":
        adam = optax.scale_by_adam(config.b1, config.b2, config.eps)
    else:
        raise ValueError(f"optimizer.name={config.name!r}; expected 'bert_adam' or 'adamw'")
    clip = [optax.clip_by_global_norm(config.clip_norm)] if config.clip_norm > 0 else []
    return optax.chain(*clip, adam, optax.add_decayed_weights(config.weight_decay))


def direction_key(config: ml_collections.ConfigDict) -> tuple:
    """What the compiled step depends on (not the learning rate or its schedule)."""
    names = ("name", "b1", "b2", "eps", "weight_decay", "clip_norm")
    return tuple((n, config[n]) for n in names)
