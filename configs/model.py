"""The FaST-VGS+ model: speech encoder, SSL head, audio pooler, image encoder, coarse loss.

    python benchmarks/step_vs_hf.py --config=configs/model.py:tiny   # one step, ours vs HF

``--config=configs/model.py:SIZE`` with SIZE tiny (CPU tests) | small (CPU demo) | base (the
paper). Every field is commented in fastvgs_jax/models/config.py. Run configs embed this as
their ``model`` field.
"""

import ml_collections

from fastvgs_jax.models.config import model_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return model_config(arg or "base")
