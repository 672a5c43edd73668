"""What the step benchmarks share: a synthetic batch, the trainer's jitted step, a timing loop.

Imported by train_throughput.py and study_step_time.py (run as scripts, so this directory is
on ``sys.path``); the step is jitted exactly as ``train.loop`` jits it.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from fastvgs_jax.models import fastvgs, speech
from fastvgs_jax.train import loop
from fastvgs_jax.train import optimizer as optimizer_lib
from fastvgs_jax.train.step import init_state


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
            state, metrics = step(state, batch, 0.5, 0.5, 1e-4, 1e-4)
            jax.block_until_ready((state, metrics))
            times.append(time.perf_counter() - start)
    return times, state, metrics
