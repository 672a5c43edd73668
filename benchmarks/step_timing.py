"""What the step benchmarks share: a synthetic batch, the trainer's jitted step, a timing loop,
the step's FLOPs (analytic and XLA's) and the device's peak memory.

Imported by train_throughput.py, flops_check.py and study_step_time.py (run as scripts, so this
directory is on ``sys.path``); the step is jitted exactly as ``train.loop`` jits it.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from fastvgs_jax.models import fastvgs, speech
from fastvgs_jax.train import flops, loop
from fastvgs_jax.train import optimizer as optimizer_lib
from fastvgs_jax.train.step import init_state

# The step's traced scalars: coarse (VGS) weight α, SSL weight 1 − α, learning rate, branch lr.
STEP_ARGS = (0.5, 0.5, 1e-4, 1e-4)


def synthetic_batch(config, rng: np.random.Generator) -> dict:
    """Host batch of the audio-image stream's shape: noise audio, every frame valid."""
    stream = config.data.audio_image
    samples = round(stream.crop_seconds * config.data.sample_rate)
    batch = stream.batch_size
    frames = speech.frame_geometry(config.model).num_frames(samples)
    return {
        "audio": rng.normal(size=(batch, samples)).astype(np.float32),
        "frame_mask": np.ones((batch, frames), bool),
        "image": rng.normal(size=(batch, 64, 64, 3)).astype(np.float32),
        "image_id": np.arange(batch) // 5,
    }


def trainer_step(config, mesh, ssl: bool, vgs: bool):
    """(fresh train state, the trainer's jitted step for these heads) for a prepared config."""
    model = fastvgs.FaSTVGSPlus(config.model)
    tx, _ = optimizer_lib.make_optimizer(config.optimizer, 1000)
    state = init_state(model, tx, jax.random.key(0, impl=config.prng_impl), mesh)
    step = loop._jitted_step(
        config.model.to_json(),
        config.precision,
        optimizer_lib.direction_key(config.optimizer),
        ssl,
        vgs,
        False,
        mesh,
        config.prng_impl,
    )
    return state, step


def time_steps(step, state, batch, mesh, steps: int):
    """Wall seconds of ``steps + 1`` calls (the first compiles); returns (times, state, metrics)."""
    times = []
    with jax.set_mesh(mesh):
        for _ in range(steps + 1):
            start = time.perf_counter()
            state, metrics = step(state, batch, *STEP_ARGS)
            jax.block_until_ready((state, metrics))
            times.append(time.perf_counter() - start)
    return times, state, metrics


def stepper(step, state, batch, mesh):
    """A callable ``run(i)`` that runs one step on ``batch`` and waits for it, carrying the
    (donated) state from call to call; for alternating with another implementation."""
    held = [state]

    def run(i: int) -> None:
        del i  # the step draws its randomness from state.key and state.step
        with jax.set_mesh(mesh):
            held[0], metrics = step(held[0], batch, *STEP_ARGS)
            jax.block_until_ready((held[0], metrics))

    return run


def step_cost(config, step, state, host_batch: dict, mesh, *, ssl: bool, vgs: bool) -> dict:
    """Model FLOPs of one step on ``host_batch``'s global shape: the analytic count
    (``train.flops.step_flops``: model FLOPs, remat recomputation apart) and XLA's cost analysis
    of the jitted ``step`` lowered for these arguments (the jit's own trace: nothing compiles)."""
    image = host_batch.get("image", host_batch.get("regions"))
    analytic = flops.step_flops(
        config.model,
        *host_batch["audio"].shape,
        ssl=ssl,
        vgs=vgs,
        image_batch_shape=None if (image is None or not vgs) else tuple(image.shape),
        sample_rate=int(config.data.sample_rate),
    )
    batch = loop._device_batch(host_batch if vgs else audio_only(host_batch), mesh)
    with jax.set_mesh(mesh):
        xla = flops.xla_step_flops(step.lower(state, batch, *STEP_ARGS))
    return {
        "analytic": float(analytic["total"]),
        "recompute": float(analytic["recompute"]),
        "xla": xla,
        "analytic_over_xla": None if not xla else (analytic["total"] + analytic["recompute"]) / xla,
    }


def audio_only(host_batch: dict) -> dict:
    """The SSL-only step's batch: the audio and its frame mask (what an audio-only batch holds)."""
    return {k: host_batch[k] for k in ("audio", "frame_mask")}


def default_base_shape(platform: str) -> tuple[int, float]:
    """(utterances, seconds) of a base step by default: the paper's 64 × 8 s on an accelerator,
    4 × 4 s on CPU (a step of a few seconds on a few cores)."""
    return (4, 4.0) if platform == "cpu" else (64, 8.0)


def peak_device_bytes(device=None) -> int | None:
    """Peak bytes the device's allocator has held in this process (``memory_stats()``'s
    ``peak_bytes_in_use``), or None where the backend keeps no statistics (XLA:CPU)."""
    device = jax.devices()[0] if device is None else device
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without statistics raise various errors
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return int(stats["peak_bytes_in_use"])
