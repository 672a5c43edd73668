"""A sweep run's analytic cost before running (parameters, FLOPs, audio, frames), its
estimated wall time, the plan's step counts, and numbers for humans."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import ml_collections

from fastvgs_jax.models import family, speech
from fastvgs_jax.train import flops as flops_lib
from fastvgs_jax.train import phases as phases_lib

if TYPE_CHECKING:
    from fastvgs_jax.sweep.plan import RunSpec

# --- Cost before running -------------------------------------------------------------------


def _stream_shape(config: ml_collections.ConfigDict, stream: str) -> tuple[int, int]:
    data = config.data[stream]
    return int(data.batch_size), int(round(float(data.crop_seconds) * int(config.data.sample_rate)))


def cost(config: ml_collections.ConfigDict) -> dict:
    """A run's analytic cost: parameters by part, FLOPs per step (the mean over its phases and
    batch kinds, weighted by steps and mix shares: ``train/flops.py``'s count), total
    training FLOPs (``compute``), and the audio and frames of the crops it reads (padding
    included: the estimate; the run's table reports what it read)."""
    model = config.model
    parameters = family.estimate_parameters(model)  # = parameter_counts (tested), untraced
    geometry = speech.frame_geometry(model)
    frame_rate = int(config.data.sample_rate) / geometry.stride
    total_flops = audio_seconds = frames = 0.0
    steps = 0
    for phase in phases_lib.phases_from_config(config):
        shares = {k: v for k, v in phase.mix if v > 0}
        norm = sum(shares.values())
        for kind, share in shares.items():
            ssl, vgs = phase.needs(kind)
            if not (ssl or vgs):
                continue
            batch, samples = _stream_shape(config, kind)
            step = flops_lib.step_flops(
                model, batch, samples, ssl=ssl, vgs=vgs, sample_rate=int(config.data.sample_rate)
            )
            weight = phase.steps * share / norm
            total_flops += weight * step["total"]
            audio_seconds += weight * batch * samples / int(config.data.sample_rate)
            frames += weight * batch * geometry.num_frames(samples)
        steps += phase.steps
    return {
        "parameters": {k: int(parameters[k]) for k in ("encoder", "vgs_branch", "image", "total")},
        "steps": steps,
        "flops_per_step": total_flops / max(steps, 1),
        "compute": total_flops,
        "audio_hours": audio_seconds / 3600.0,
        "frames": frames,
        "frame_rate": frame_rate,
    }


def estimated_seconds(cost_: Mapping, estimate: ml_collections.ConfigDict) -> float:
    """Wall time of a run from its cost: per run (compile, evaluation), per step (host,
    input pipeline), per FLOP (``estimate.flops_per_second``: the rate the device sustains)."""
    rate = float(estimate.flops_per_second)
    per_step = float(estimate.seconds_per_step) + cost_["flops_per_step"] / rate
    return float(estimate.seconds_per_run) + cost_["steps"] * per_step


def total_steps(specs: Sequence[RunSpec]) -> int:
    return sum(s.steps for s in specs)


def steps_to_train(specs: Sequence[RunSpec]) -> int:
    """Optimiser steps the runs train, each shared first phase counted once."""
    firsts = {s.first_phase: s.first_steps for s in specs if s.first_phase is not None}
    own = sum(s.steps if s.first_phase is None else s.second_steps for s in specs)
    return own + sum(firsts.values())


def human(value: float | None, unit: str = "") -> str:
    """3.2e12 → "3.2 T" (k, M, G, T, P, E); None → "–"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    for scale, prefix in (
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
    ):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}".rstrip()
    return f"{value:.3g} {unit}".rstrip()
