"""FaST-VGS+ (Peng & Harwath): mixed audio-image and audio-only batches, separate weights.

    python launch/train.py --config=configs/fastvgs_plus.py --workdir=runs/fastvgs_plus
    python launch/train.py --config=configs/fastvgs_plus.py:spokencoco --workdir=runs/peng \
        --config.data.corpora.spokencoco.root=/data/SpokenCOCO \
        --config.data.corpora.spokencoco.image_root=/data/mscoco \
        --config.data.corpora.librispeech.root=/data/LibriSpeech \
        --config.data.abx.item_file=/data/ABX/dev-clean.item \
        --config.data.image.regions=/data/mscoco_imgfeat/features.h5

0.1·coarse on audio-image batches + 1·SSL on their captions + 1·SSL on audio-only batches.
The argument scales it: MODEL_SIZE,DATA_PRESET,STEPS; or ``spokencoco``: the base model on
SpokenCOCO + LibriSpeech 960 h as Peng & Harwath train it (docs/corpora.md).
"""

import ml_collections

from fastvgs_jax.data.config import paper_corpora
from fastvgs_jax.train.config import fastvgs_plus_config

# Peng's FaST-VGS+ budget: 70 epochs of SpokenCOCO's Karpathy train split in batches of 64.
SPOKENCOCO_STEPS = 70 * 566_747 // 64


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg != "spokencoco":
        return fastvgs_plus_config(arg)
    config = fastvgs_plus_config(f"base,small,{SPOKENCOCO_STEPS}")
    paper_corpora(config.data)  # every role on SpokenCOCO / LibriSpeech; set the paths
    config.model.image.kind = "regions"
    config.log_every = 100
    config.snapshot_every = 5000
    config.eval_every = 10_000
    return config
