"""Pretrain the conv image tower on rendered scenes (see fastvgs_jax/train/image_tower.py).

    python launch/pretrain_image_tower.py --preset small --out results/image_tower.msgpack

The study does this itself (configs/study.py, ``image_tower``); this trains one alone, to
load into a run with ``--config.image_tower_init=PATH --config.model.image.cnn_frozen=True``.
Prints one JSON line: held-out attribute F1 and scene exact match (%), losses.

A mistake on the command line (a mistyped flag or config field, a missing run or snapshot)
ends with one line ``error: …`` on stderr and exit status 2; ``FASTVGS_VERBOSE=1`` also prints
its traceback.
"""

import dataclasses
import json
import logging

from absl import flags

from fastvgs_jax import cli
from fastvgs_jax.train import image_tower

_DEFAULTS = image_tower.TowerSettings()
_PRESET = flags.DEFINE_string("preset", "small", "Corpus preset whose scenes it learns.")
_OUT = flags.DEFINE_string("out", "image_tower.msgpack", "Where the tower is written.")
_STEPS = flags.DEFINE_integer("steps", _DEFAULTS.steps, "Optimiser steps.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Scenes, initialisation, batch order.")


def main(argv) -> None:
    del argv
    logging.basicConfig(level=logging.INFO)
    settings = dataclasses.replace(
        _DEFAULTS, corpus_preset=_PRESET.value, steps=_STEPS.value, seed=_SEED.value
    )
    metrics = image_tower.ensure_pretrained(_OUT.value, settings)
    print(json.dumps({"out": _OUT.value, **metrics}))


if __name__ == "__main__":
    cli.run(main)
