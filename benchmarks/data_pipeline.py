"""Corpus build and input pipeline throughput, as one JSON line.

    python benchmarks/data_pipeline.py                       # fresh `small` build in a temp dir
    python benchmarks/data_pipeline.py --config=configs/data.py:tiny --batches 20
    python benchmarks/data_pipeline.py --config.data_dir=data  # reuse a build: pipeline only
    python benchmarks/data_pipeline.py --corpus=spokencoco     # sample SpokenCOCO vs base step
    python benchmarks/data_pipeline.py --corpus=librispeech --format=layout --skip_step
    python benchmarks/data_pipeline.py --corpus=spokencoco --split=train_karpathy \
        --root=/data/SpokenCOCO --image_root=/data/mscoco --config.data_dir=/tmp/bench

**The embedded corpus** (``--corpus=spoken_scenes``, the default). Fields: build_seconds (null
when reused), utterances, utterances_per_second, audio_hours, mixed_batches_per_second at the
data config's batch shapes (``batch_shapes``: [batch, crop seconds] per stream), cpu_cores
(``os.cpu_count()``), python.

**A real corpus** (``--corpus`` spokencoco | librispeech | flickr8k | places; measured by the
sibling ``benchmarks/corpus_pipeline.py``): its training stream (``pipelines.training_stream``
on the registry's source; captioned corpora feed the audio-image stream, LibriSpeech the
audio-only one) read from each ``--format`` (``layout``: the published files, decoded by the
reader threads; ``array_record``: a conversion made by ``converted.convert``; ``both``, the
default), at the data config's batch (configs/data.py: audio-image 64 × 8 s with
``data.image.size`` 224 images, audio-only 64 × 10 s with clips under 2 s left out), then the
paper's base step (CNN + 12 × 768) timed on the same machine in the same run. The data is the
user's (``--root`` and the other path flags, mapped onto ``data.corpora.<corpus>.*``) or,
without ``--root``, a sample corpus written into a temporary folder by
``fastvgs_jax.data.corpora.samples`` in the exact published layout at a realistic scale
(``corpus_pipeline.SAMPLE_SCALE``: SpokenCOCO-like 4.5 s captions, 5 per 640 × 480 JPEG;
LibriSpeech-like 11 s FLAC utterances; the JPEGs are random noise, slower to decode than
photographs).
Indexes and conversions go under ``--config.data_dir`` (default: a fresh temporary folder).

Fields (a real corpus):
  corpus, split, stream: which corpus and split, read as which stream (audio_image or
    audio_only).
  data: what was read. ``source`` (``sample``: made here; ``user``: ``--root``), examples,
    images (distinct, captioned corpora), mean/min/max_audio_seconds and audio_hours (from
    the index), and for a sample corpus its audio_format, repeat (sentence repeats per
    utterance), image_pixels [width, height], audio_mb and image_mb on disk, write_seconds.
  index_seconds: building the checked index (every header read; shared by both formats);
    index_reused: it was already cached under data_dir (then index_seconds is a cache read).
  batch: [batch size, crop seconds] of the stream; min_seconds (shorter clips left out);
    image_size (decoded images' side; null for audio-only); read_threads (Grain reader
    threads, ``--read_threads``, default ``os.cpu_count()``); batches (timed, after
    ``warmup`` untimed ones).
  host_cores: cores this process may run on (``os.sched_getaffinity``): "per core" divides
    by it.
  formats.<layout | array_record>:
    conversion_seconds (array_record: the ArrayRecord conversion, the index excluded; null
      for layout), conversion_reused (a complete conversion was already under data_dir);
    seconds: wall seconds of the timed batches;
    examples_per_second;
    audio_seconds_per_second: real audio delivered, i.e. the unpadded seconds of the crops
      (``audio_mask``), decode included;
    crop_seconds_per_second: batch × crop seconds per second (padding included: what a step
      consumes);
    examples_per_second_per_core, audio_seconds_per_second_per_core,
      crop_seconds_per_second_per_core: the same divided by host_cores;
    cpu_cores_busy: process CPU seconds / wall seconds over the timed batches (all threads);
    crop_seconds_per_cpu_second: crop seconds per CPU second actually spent (less sensitive to
      a noisy host than the per-core figures);
    step_ratio_per_core: crop_seconds_per_second_per_core / step.audio_seconds_per_second
      (null with --skip_step): how many times the base step's consumption one core of
      pipeline delivers; the goal (``goal_ratio_per_core``) is 10;
    step_ratio_per_core_unpadded: the same with audio_seconds_per_second_per_core;
    meets_goal: step_ratio_per_core >= goal_ratio_per_core.
  step (null with --skip_step): the base step as ``benchmarks/train_throughput.py
    --variants=base`` measures it (its own process, all cores; a synthetic batch of ``batch`` ×
    ``seconds``, ``--step_batch`` × ``--step_seconds``, CPU-sized), step_seconds (median of
    ``--step_steps``), compile_seconds, parameters, layers, hidden_dim, and its consumption
    audio_seconds_per_second = batch × seconds / step_seconds. A step is close to linear in
    the audio it processes, so the consumption at the paper's batch (paper_batch × paper_seconds,
    64 × 8 s) is taken as the same audio-s/s: paper_step_seconds_linear is that step's
    estimated time (step_seconds × paper audio / measured audio), not a measurement.
  matmul_peak_gflops: this machine's dense fp32 matmul peak through XLA
    (``step_vs_hf.matmul_peak_flops``; null with --skip_step).
  cpu_count, python.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
import time

from absl import app, flags

# A sibling file: `python benchmarks/data_pipeline.py` puts benchmarks/ on sys.path.
from corpus_pipeline import DEFAULT_SPLITS, FORMATS, Options, real_corpus
from ml_collections import config_flags

from fastvgs_jax.data import build, pipelines, sources
from fastvgs_jax.data.corpora import registry

HERE = os.path.dirname(os.path.abspath(__file__))

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(HERE, "..", "configs", "data.py"), "Data config."
)
flags.DEFINE_enum("corpus", registry.EMBEDDED, list(registry.NAMES), "Corpus to time.")
flags.DEFINE_enum("format", "both", list(FORMATS), "Real corpora: which reader(s) to time.")
flags.DEFINE_string("root", None, "Real corpus root (data.corpora.<corpus>.root); none: sample.")
flags.DEFINE_string("image_root", "", "data.corpora.<corpus>.image_root (spokencoco, …).")
flags.DEFINE_string("text_root", "", "data.corpora.flickr8k.text_root.")
flags.DEFINE_string("audio_root", "", "data.corpora.places.audio_root.")
flags.DEFINE_string("split", None, f"Split to read (default per corpus: {DEFAULT_SPLITS}).")
flags.DEFINE_integer("sample_examples", 640, "Utterances in a sample corpus (without --root).")
flags.DEFINE_integer("batches", None, "Batches to time (default: 100 embedded, 20 real).")
flags.DEFINE_integer("warmup", None, "Untimed batches first (default: 5 embedded, 3 real).")
flags.DEFINE_integer("read_threads", None, "Real corpora: Grain reader threads (default: cores).")
flags.DEFINE_integer("workers", None, "Embedded corpus: synthesis processes (default: cores).")
flags.DEFINE_bool("skip_step", False, "Real corpora: leave out the base step and matmul peak.")
flags.DEFINE_integer("step_batch", 4, "Utterances per measured base step.")
flags.DEFINE_float("step_seconds", 4.0, "Seconds per utterance of the measured base step.")
flags.DEFINE_integer("step_steps", 2, "Timed base steps (after the compiling one).")


# ----------------------------------------------------------------------------------------------
# The embedded corpus


def embedded(config) -> dict:
    data_dir, preset, seed = config.data_dir, config.preset, config.corpus_seed
    item_file = os.path.join(sources.version_dir(data_dir, preset, seed), sources.ITEM_FILE)
    reused = os.path.exists(item_file)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # TFDS prints its progress: one JSON line
        builder = build.ensure_built(data_dir, preset, seed, num_workers=FLAGS.workers)
    build_seconds = None if reused else time.perf_counter() - start

    utterances, samples_read = 0, 0
    for split in builder.info.splits:
        source = sources.open_split(data_dir, preset, split, seed)
        utterances += len(source)
        samples_read += sum(source[i]["audio"].shape[0] for i in range(len(source)))

    batches = 100 if FLAGS.batches is None else FLAGS.batches
    iterator = iter(pipelines.mixed_stream_from_config(config))
    for _ in range(5 if FLAGS.warmup is None else FLAGS.warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    pipeline_seconds = time.perf_counter() - start

    return {
        "benchmark": "data_pipeline",
        "preset": preset,
        "build_seconds": None if build_seconds is None else round(build_seconds, 1),
        "utterances": utterances,
        "utterances_per_second": None
        if build_seconds is None
        else round(utterances / build_seconds, 1),
        "audio_hours": round(samples_read / 16_000 / 3600, 2),
        "mixed_batches_per_second": round(batches / pipeline_seconds, 2),
        "batch_shapes": {
            "audio_image": [config.audio_image.batch_size, config.audio_image.crop_seconds],
            "audio_only": [config.audio_only.batch_size, config.audio_only.crop_seconds],
        },
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------------------------
# A real corpus: benchmarks/corpus_pipeline.py


def real_corpus_options() -> Options:
    """The flags as ``corpus_pipeline.Options``."""
    return Options(
        corpus=FLAGS.corpus,
        split=FLAGS.split,
        format=FLAGS.format,
        root=FLAGS.root,
        image_root=FLAGS.image_root,
        text_root=FLAGS.text_root,
        audio_root=FLAGS.audio_root,
        sample_examples=FLAGS.sample_examples,
        batches=FLAGS.batches,
        warmup=FLAGS.warmup,
        read_threads=FLAGS.read_threads,
        skip_step=FLAGS.skip_step,
        step_batch=FLAGS.step_batch,
        step_seconds=FLAGS.step_seconds,
        step_steps=FLAGS.step_steps,
        scratch_data_dir="data_dir" not in FLAGS["config"].override_values,
    )


def main(argv) -> None:
    del argv
    config = _CONFIG.value
    if FLAGS.corpus == registry.EMBEDDED:
        if "data_dir" not in FLAGS["config"].override_values:
            config.data_dir = tempfile.mkdtemp(prefix="fastvgs-bench-")
        result = embedded(config)
    else:
        result = real_corpus(config, real_corpus_options())
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
