"""(VGS+, W2V2): 20 parts α = 0.5, then 50 parts SSL, optimiser reset.

    python launch/train.py --config=configs/vgsplus_w2v2.py --workdir=runs/vgsplus_w2v2
    python launch/train.py --config=configs/vgsplus_w2v2.py:small,small,3000 --workdir=runs/x

The argument scales it: MODEL_SIZE,DATA_PRESET,STEPS. Override any field, e.g.
``--config.optimizer.learning_rate=5e-5`` or ``'--config.phases[0].steps=500'``.
"""

import ml_collections

from fastvgs_jax.train.config import study_model_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return study_model_config("vgsplus_w2v2", arg)
