"""The small CPU demo: (W2V2, VGS) with the log-mel `small` model on the `small` corpus.

    python launch/train.py --config=configs/demo.py --workdir=runs/demo

Batches of 16 × 4 s keep a step under a few seconds on 2 CPU cores.
"""

import ml_collections

from fastvgs_jax.train.config import study_model_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = study_model_config("w2v2_vgs", arg or "small,small,2000")
    for stream in ("audio_image", "audio_only"):
        config.data[stream].batch_size = 16
        config.data[stream].crop_seconds = 4.0
    config.data.audio_only.min_seconds = 1.0
    config.log_every = 20
    config.snapshot_every = 200
    config.eval_every = 200
    return config
