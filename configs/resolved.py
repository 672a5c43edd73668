"""A config written out as JSON: a sweep's run configs and its settings (what
``launch/sweep.py --emit`` writes under ``<out>/emit/configs/``), or a run's manifest.json
(its resolved config).

    python launch/train.py --config=configs/resolved.py:results/sweep_demo/emit/configs/RUN.json \
        --workdir=results/sweep_demo/runs/RUN
    python launch/sweep.py --config=configs/resolved.py:results/sweep_demo/emit/configs/sweep.json \
        --stage=collect

The argument is the JSON file's path (local or gs://); every field can be overridden as usual.
"""

import ml_collections
from etils import epath

from fastvgs_jax.sweep import configs_json


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if not arg:
        raise ValueError("configs/resolved.py:PATH needs the JSON file to load")
    path = epath.Path(arg)
    if not path.exists():
        raise FileNotFoundError(f"configs/resolved.py:{arg}: no such file")
    return configs_json.config_from_json(path.read_text())
