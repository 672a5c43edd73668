"""Shared by the trainer tests: the tiny run config and one uninterrupted reference run."""

from __future__ import annotations

import pytest

from fastvgs_jax.train import config as run_config
from fastvgs_jax.train import loop


def tiny_run_config(data_dir, objectives: str = "w2v2_vgs", steps: int = 7):
    c = run_config.base_config("tiny", "tiny")
    c.data.data_dir = data_dir
    for kind in ("audio_image", "audio_only"):
        c.data[kind].batch_size = 8
        c.data[kind].crop_seconds = 1.0
        c.data[kind].min_seconds = 0.0
    c.data.read_threads = 1
    c.phases = run_config.study_phases(objectives, steps)  # w2v2_vgs, 7: 2 SSL, then 5 VGS
    c.log_every = 1
    c.snapshot_every = 3
    c.eval_every = 100
    c.progress = False
    return c


@pytest.fixture(scope="session")
def uninterrupted(tiny_data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    calls = []
    state = loop.train(
        tiny_run_config(tiny_data_dir),
        str(workdir),
        eval_hook=lambda state, step, phase: calls.append((step, phase)),
    )
    return workdir, state, calls
