"""FaST-VGS+ (Peng & Harwath): mixed audio-image and audio-only batches, separate weights.

    python launch/train.py --config=configs/fastvgs_plus.py --workdir=runs/fastvgs_plus

0.1·coarse on audio-image batches + 1·SSL on their captions + 1·SSL on audio-only batches.
The argument scales it: MODEL_SIZE,DATA_PRESET,STEPS.
"""

import ml_collections

from fastvgs_jax.train.config import fastvgs_plus_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return fastvgs_plus_config(arg)
