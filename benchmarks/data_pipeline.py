"""Corpus build and input pipeline throughput, as one JSON line.

    python benchmarks/data_pipeline.py                       # fresh `small` build in a temp dir
    python benchmarks/data_pipeline.py --config=configs/data.py:tiny --batches 20
    python benchmarks/data_pipeline.py --config.data_dir=data  # reuse a build: pipeline only

Fields: build_seconds (null when reused), utterances, utterances_per_second, audio_hours,
mixed_batches_per_second at the data config's batch shapes, and the machine's core count.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time

from absl import app, flags
from ml_collections import config_flags

from fastvgs_jax.data import build, pipelines, sources

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "..", "configs", "data.py"), "Data config."
)
flags.DEFINE_integer("batches", 100, "Mixed batches to time (after 5 warm-up batches).")
flags.DEFINE_integer("workers", None, "Synthesis processes (default: all cores).")


def main(argv) -> None:
    del argv
    config = _CONFIG.value
    if "data_dir" not in FLAGS["config"].override_values:
        config.data_dir = tempfile.mkdtemp(prefix="fastvgs-bench-")
    data_dir, preset, seed = config.data_dir, config.preset, config.corpus_seed
    item_file = os.path.join(sources.version_dir(data_dir, preset, seed), sources.ITEM_FILE)
    reused = os.path.exists(item_file)
    start = time.perf_counter()
    builder = build.ensure_built(data_dir, preset, seed, num_workers=FLAGS.workers)
    build_seconds = None if reused else time.perf_counter() - start

    utterances, samples = 0, 0
    for split in builder.info.splits:
        source = sources.open_split(data_dir, preset, split, seed)
        utterances += len(source)
        samples += sum(source[i]["audio"].shape[0] for i in range(len(source)))

    iterator = iter(pipelines.mixed_stream_from_config(config))
    for _ in range(5):
        next(iterator)
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        next(iterator)
    pipeline_seconds = time.perf_counter() - start

    result = {
        "benchmark": "data_pipeline",
        "preset": preset,
        "build_seconds": None if build_seconds is None else round(build_seconds, 1),
        "utterances": utterances,
        "utterances_per_second": None
        if build_seconds is None
        else round(utterances / build_seconds, 1),
        "audio_hours": round(samples / 16_000 / 3600, 2),
        "mixed_batches_per_second": round(FLAGS.batches / pipeline_seconds, 2),
        "batch_shapes": {
            "audio_image": [config.audio_image.batch_size, config.audio_image.crop_seconds],
            "audio_only": [config.audio_only.batch_size, config.audio_only.crop_seconds],
        },
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
