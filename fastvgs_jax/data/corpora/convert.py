"""Convert a real corpus split to ArrayRecord once (for buckets and pods); see converted.py.

    python -m fastvgs_jax.data.corpora.convert --config=configs/data.py \
        --corpus=spokencoco --split=test_karpathy \
        --config.corpora.spokencoco.root=/data/SpokenCOCO \
        --config.corpora.spokencoco.image_root=/data/mscoco --config.data_dir=gs://bucket/data
    python -m fastvgs_jax.data.corpora.convert --config=configs/data.py \
        --corpus=librispeech --split=train-clean-100+train-clean-360+train-other-500 \
        --config.corpora.librispeech.root=/data/LibriSpeech

``--config`` is the data config (``configs/data.py``) or a run config (its ``data`` section is
used). Runs then read the conversion with ``--config.data.corpora.<name>.format=array_record``.
Running the same command again reuses a complete conversion. Prints one line: examples,
skipped, seconds, examples/s and the output folder. A mistake ends with one ``error: …`` line.
"""

from __future__ import annotations

import time

from absl import flags
from ml_collections import config_flags

from fastvgs_jax import cli
from fastvgs_jax.data.corpora import converted, registry

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Registers the command-line flags (not at import: importing the module defines none)."""
    config_flags.DEFINE_config_file(
        "config", "configs/data.py", "Data config (or a run config with a data section)."
    )
    flags.DEFINE_enum("corpus", None, list(registry.CORPORA), "Corpus to convert.", required=True)
    flags.DEFINE_string("split", None, "Its split, as the layout reader names it.", required=True)
    flags.DEFINE_integer("workers", None, "Reader threads (default: data.index_threads).")


def data_section(config):
    """The data config: ``config`` itself, or a run config's ``data``."""
    return config.data if "data" in config and "corpora" in config.data else config


def main(argv) -> None:
    del argv
    data_config = data_section(FLAGS.config)
    corpus, split = FLAGS.corpus, FLAGS.split
    reused = converted.is_converted(data_config, corpus, split)
    start = time.perf_counter()
    path = converted.convert(data_config, corpus, split, num_workers=FLAGS.workers)
    seconds = time.perf_counter() - start
    manifest = converted.read_metadata(path).get("index", {})
    examples, skipped = int(manifest.get("examples", 0)), int(manifest.get("skipped", 0))
    rate = "reused, not converted again" if reused else f"{examples / seconds:.1f} examples/s"
    print(
        f"{corpus}/{split}: {examples} examples, {skipped} skipped, {seconds:.1f} s, {rate}"
        f" -> {path}"
    )


if __name__ == "__main__":
    define_flags()
    cli.run(main)
