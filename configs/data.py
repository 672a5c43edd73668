"""Input data: which corpus, how utterances are cropped and batched, how streams are mixed.

    python -m fastvgs_jax.data.build --size small --data_dir data   # builds what this reads
    python benchmarks/data_pipeline.py --config=configs/data.py      # measures it

Fields are commented in fastvgs_jax/data/config.py. Run configs embed this as their ``data``
field.
"""

import ml_collections

from fastvgs_jax.data.config import data_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``arg`` optionally names the corpus size preset (tiny | small | large)."""
    return data_config(arg or "small")
