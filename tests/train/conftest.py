"""The tiny run config of the trainer, evaluation and study tests (fixtures built from it
live in tests/conftest.py, shared by the whole session)."""

from __future__ import annotations

from fastvgs_jax.train import config as run_config


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
