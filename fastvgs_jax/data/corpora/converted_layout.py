"""Where a converted corpus split lives and what names it: the shared ground of ``converted``.

``<data_dir>/converted/real_corpus/<corpus>-<split slug>/<VERSION>/`` (see ``converted_builder``'s
docstring for what the folder holds), the TFDS names inside it, the command that makes it, and
its ``metadata.json``.
"""

from __future__ import annotations

import json
import re

import ml_collections
from etils import epath

from fastvgs_jax.data.corpora import registry

VERSION = "1.0.0"
BUILDER_NAME = "real_corpus"
SUBDIR = "converted"  # under data.data_dir
NUM_SAMPLES_FILE = "num_samples.npy"
COMMAND = "python -m fastvgs_jax.data.corpora.convert"
COMPLETE_FILES = ("dataset_info.json", "metadata.json", NUM_SAMPLES_FILE)  # a finished conversion


def split_slug(split: str) -> str:
    """``split`` as a TFDS config-name part (``train-clean-100+train-clean-360`` stays)."""
    return re.sub(r"[^\w.+-]", "_", split)


def config_name(corpus: str, split: str) -> str:
    """``spokencoco-test_karpathy``, ``librispeech-dev-clean``."""
    return f"{corpus}-{split_slug(split)}"


def tfds_split(split: str) -> str:
    """The TFDS split inside the dataset (word characters only: ``+`` would mean a union)."""
    return re.sub(r"\W", "_", split)


def converted_dir(data_config: ml_collections.ConfigDict) -> str:
    """The TFDS data dir of conversions: ``<data.data_dir>/converted``."""
    return str(epath.Path(str(data_config.data_dir)) / SUBDIR)


def version_dir(data_config: ml_collections.ConfigDict, corpus: str, split: str) -> str:
    return str(
        epath.Path(converted_dir(data_config)) / BUILDER_NAME / config_name(corpus, split) / VERSION
    )


def is_converted(data_config: ml_collections.ConfigDict, corpus: str, split: str) -> bool:
    """Whether a complete conversion of ``corpus``/``split`` is under ``data.data_dir``."""
    root = epath.Path(version_dir(data_config, corpus, split))
    return all((root / name).exists() for name in COMPLETE_FILES)


def command(data_config: ml_collections.ConfigDict, corpus: str, split: str) -> str:
    """The command line that converts ``corpus``/``split`` for this data config."""
    settings = (data_config.get("corpora") or {}).get(corpus) or {}
    paths = registry.CORPORA[corpus].paths if corpus in registry.CORPORA else ("root",)
    overrides = [
        f"--config.corpora.{corpus}.{p}={settings.get(p)}" for p in paths if settings.get(p)
    ]
    return " ".join(
        [
            COMMAND,
            "--config=configs/data.py",
            f"--corpus={corpus}",
            f"--split={split}",
            f"--config.data_dir={data_config.data_dir}",
            *overrides,
        ]
    )


def index_settings(data_config: ml_collections.ConfigDict, corpus: str, split: str) -> dict:
    """What identifies the index of ``corpus``/``split`` (as ``registry.open_index`` keys it)."""
    settings = registry.corpus_settings(data_config, corpus)
    paths = registry.CORPORA[corpus].paths
    return {"corpus": corpus, "split": split, **{p: str(settings.get(p, "")) for p in paths}}


def read_metadata(path: str) -> dict:
    """The metadata of the conversion at ``path`` (a version folder): ``index`` is the index
    manifest (``examples``, ``skipped``, ``problems``, ``settings``, …)."""
    return json.loads((epath.Path(path) / "metadata.json").read_text())
