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

**A real corpus** (``--corpus`` spokencoco | librispeech | flickr8k | places): its training
stream (``pipelines.training_stream`` on the registry's source; captioned corpora feed the
audio-image stream, LibriSpeech the audio-only one) read from each ``--format`` (``layout``:
the published files, decoded by the reader threads; ``array_record``: a conversion made by
``converted.convert``; ``both``, the default), at the data config's batch (configs/data.py:
audio-image 64 × 8 s with ``data.image.size`` 224 images, audio-only 64 × 10 s with clips under
2 s left out), then the paper's base step (CNN + 12 × 768) timed on the same machine in the
same run. The data is the user's (``--root`` and the other path flags, mapped onto
``data.corpora.<corpus>.*``) or, without ``--root``, a sample corpus written into a temporary
folder by ``fastvgs_jax.data.corpora.samples`` in the exact published layout at a realistic
scale (``SAMPLE_SCALE``: SpokenCOCO-like 4.5 s captions, 5 per 640 × 480 JPEG; LibriSpeech-like
11 s FLAC utterances; the JPEGs are random noise, slower to decode than photographs).
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
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import grain
from absl import app, flags
from ml_collections import config_flags

from fastvgs_jax.data import build, pipelines, sources
from fastvgs_jax.data.corpora import index as index_lib
from fastvgs_jax.data.corpora import librispeech, places, registry, samples

HERE = os.path.dirname(os.path.abspath(__file__))
FORMATS = (*registry.FORMATS, "both")
# Each corpus's default split, and the split a sample corpus is written as.
DEFAULT_SPLITS = {
    "spokencoco": "train_karpathy",
    "librispeech": "train-clean-100",
    "flickr8k": "test",  # samples.make_flickr8k puts every image but the first in `test`
    "places": "train_2020",
}
# What a sample corpus imitates: sentence repeats per utterance (0.48–0.6 s each) and the
# JPEGs' size. SpokenCOCO: 4.5 s captions, 5 per 640 × 480 image; LibriSpeech: 11 s FLACs,
# 20 per chapter; Flickr8k: 2 captions per 500 × 375 image (samples.make_flickr8k's count);
# Places: 9 s captions of 256 × 256 images, one each.
SAMPLE_SCALE = {
    "spokencoco": {"repeat": 8, "image_pixels": (640, 480), "captions_per_image": 5},
    "librispeech": {"repeat": 20, "utterances_per_chapter": 20, "speakers": 16},
    "flickr8k": {"repeat": 8, "image_pixels": (500, 375)},
    "places": {"repeat": 16, "image_pixels": (256, 256)},
}
GOAL_RATIO_PER_CORE = 10.0
PAPER_BATCH, PAPER_SECONDS = 64, 8.0

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
# Sample corpora in the published layouts


def _rewrite_at_scale(config, corpus: str, split: str, repeat: int, pixels) -> None:
    """Rewrites every audio file and image the layout names with longer speech and larger
    JPEGs (for the sample makers that write fixed tiny files)."""
    settings = config.corpora[corpus]
    written = set()
    for k, row in enumerate(registry.CORPORA[corpus].rows(settings, split)):
        if not isinstance(row, index_lib.Entry):
            raise RuntimeError(f"the sample {corpus} layout has a problem: {row}")
        sentence = samples.SENTENCES[k % len(samples.SENTENCES)]
        wave = samples.speech(sentence, speaker=k % 4, seed=k, repeat=repeat)
        samples.write_audio(row.audio, wave)
        if row.image and row.image not in written:
            samples.write_jpeg(row.image, seed=len(written), size=pixels)
            written.add(row.image)


def make_sample(config, corpus: str, split: str, examples: int, folder: str) -> dict:
    """Writes a sample ``corpus`` of about ``examples`` utterances under ``folder``, points
    ``data.corpora.<corpus>`` at it and returns what was made."""
    scale = SAMPLE_SCALE[corpus]
    settings = config.corpora[corpus]
    root = os.path.join(folder, corpus)
    start = time.perf_counter()
    if corpus == "spokencoco":
        settings.root, settings.image_root = root, os.path.join(folder, "mscoco")
        per_image = scale["captions_per_image"]
        samples.make_spokencoco(
            settings.root,
            settings.image_root,
            split,
            images=math.ceil(examples / per_image),
            captions=per_image,
            repeat=scale["repeat"],
            image_size=scale["image_pixels"],
        )
    elif corpus == "librispeech":
        settings.root = root
        subsets = librispeech.subsets(split)
        per_chapter = scale["utterances_per_chapter"]
        speakers = max(1, min(scale["speakers"], math.ceil(examples / per_chapter)))
        for s, subset in enumerate(subsets):
            chapters = math.ceil(examples / len(subsets) / per_chapter / speakers)
            samples.make_librispeech(
                settings.root,
                subset,
                speakers=tuple(100 * (s + 1) + i for i in range(speakers)),
                chapters=chapters,
                utterances=per_chapter,
                repeat=scale["repeat"],
            )
    elif corpus == "flickr8k":
        if split != "test":
            raise app.UsageError("a sample flickr8k has its captions in --split=test")
        settings.root = root
        settings.image_root = os.path.join(folder, "Flicker8k_Dataset")
        settings.text_root = os.path.join(folder, "Flickr8k_text")
        stems = [f"{1000 + i}_{i:05x}" for i in range(math.ceil(examples / 2) + 1)]
        samples.make_flickr8k(settings.root, settings.image_root, settings.text_root, stems)
        _rewrite_at_scale(config, corpus, split, scale["repeat"], scale["image_pixels"])
    else:  # places: make_places writes two captions; the manifest is extended to `examples`
        settings.root = root
        settings.audio_root = os.path.join(folder, "PlacesAudio")
        settings.image_root = os.path.join(folder, "places205")
        samples.make_places(settings.root, settings.audio_root, settings.image_root, split)
        path = places.manifest_path(settings.root, split)
        with open(path) as f:
            manifest = json.load(f)
        template = manifest["data"]
        manifest["data"] = [
            dict(
                template[k % len(template)],
                wav=f"wavs/{k // 100}/utterance_{k}.wav",
                image=f"{os.path.dirname(template[k % len(template)]['image'])}/gsun_{k:06d}.jpg",
                uttid=f"A{k}-GSUN{k}",
            )
            for k in range(examples)
        ]
        with open(path, "w") as f:
            json.dump(manifest, f)
        _rewrite_at_scale(config, corpus, split, scale["repeat"], scale["image_pixels"])
    seconds = time.perf_counter() - start
    audio_bytes, image_bytes, images = 0, 0, set()
    for row in registry.CORPORA[corpus].rows(settings, split):
        audio_bytes += os.path.getsize(row.audio)
        if row.image and row.image not in images:
            images.add(row.image)
            image_bytes += os.path.getsize(row.image)
    made = {
        "source": "sample",
        "audio_format": "flac" if corpus == "librispeech" else "wav",
        "repeat": scale["repeat"],
        "audio_mb": round(audio_bytes / 2**20, 1),
        "write_seconds": round(seconds, 1),
    }
    if images:
        made["image_pixels"] = list(scale["image_pixels"])
        made["image_mb"] = round(image_bytes / 2**20, 1)
    return made


def use_user_paths(config, corpus: str) -> dict:
    settings = config.corpora[corpus]
    settings.root = FLAGS.root
    for name in ("image_root", "text_root", "audio_root"):
        value = getattr(FLAGS, name)
        if value and name not in registry.CORPORA[corpus].paths:
            raise app.UsageError(f"--{name} is not a path of {corpus}")
        if value:
            settings[name] = value
    return {"source": "user", **{p: str(settings[p]) for p in registry.CORPORA[corpus].paths}}


# ----------------------------------------------------------------------------------------------
# Measuring


def _index_cached(config, corpus: str, split: str) -> bool:
    from fastvgs_jax.data.corpora import converted

    key = converted.index_settings(config, corpus, split)
    path = index_lib.index_path(registry.index_dir(config), corpus, split, key)
    return index_lib.load_index(path, corpus, split) is not None


def measure_format(config, corpus: str, split: str, kind: str, fmt: str) -> dict:
    """Conversion (array_record) and the training stream's throughput read from ``fmt``."""
    result = {"conversion_seconds": None, "conversion_reused": None}
    if fmt == "array_record":
        from fastvgs_jax.data.corpora import converted

        result["conversion_reused"] = converted.is_converted(config, corpus, split)
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # TFDS prints its progress: one JSON line
            converted.convert(config, corpus, split, progress=False)
        result["conversion_seconds"] = round(time.perf_counter() - start, 2)
    config.corpora[corpus].format = fmt
    source = registry.open_role(config, kind)
    spec = pipelines.stream_spec(config, kind)
    keep = pipelines.long_enough_indices(source, spec) if spec.min_seconds > 0 else None
    stream = pipelines.training_stream(
        source,
        kind,
        spec,
        seed=int(config.seed),
        read_options=grain.ReadOptions(
            num_threads=int(config.read_threads), prefetch_buffer_size=64
        ),
        keep=keep,
    )
    iterator = iter(stream)
    for _ in range(FLAGS.warmup):
        next(iterator)
    unpadded = 0
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(FLAGS.batches):
        unpadded += int(next(iterator)["audio_mask"].sum())
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    cores = len(os.sched_getaffinity(0))
    examples = FLAGS.batches * spec.batch_size
    audio = unpadded / spec.sample_rate
    crop = examples * spec.crop_seconds
    return {
        **result,
        "seconds": round(seconds, 2),
        "examples_per_second": round(examples / seconds, 1),
        "audio_seconds_per_second": round(audio / seconds, 1),
        "crop_seconds_per_second": round(crop / seconds, 1),
        "examples_per_second_per_core": round(examples / seconds / cores, 1),
        "audio_seconds_per_second_per_core": round(audio / seconds / cores, 1),
        "crop_seconds_per_second_per_core": round(crop / seconds / cores, 1),
        "cpu_cores_busy": round(cpu / seconds, 2),
        "crop_seconds_per_cpu_second": round(crop / cpu, 1),
    }


def measure_step() -> dict:
    """The base step on this machine, by ``train_throughput.py --variants=base``."""
    command = [
        sys.executable,
        os.path.join(HERE, "train_throughput.py"),
        "--variants=base",
        f"--steps={FLAGS.step_steps}",
        f"--base_batch={FLAGS.step_batch}",
        f"--base_seconds={FLAGS.step_seconds}",
    ]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the base step failed:\n{done.stderr[-3000:]}")
    base = json.loads(done.stdout.strip().splitlines()[-1])["variants"]["base"]
    measured = base["batch"] * base["seconds"]
    return {
        "variant": "base",
        "batch": base["batch"],
        "seconds": base["seconds"],
        "layers": base["layers"],
        "hidden_dim": base["hidden_dim"],
        "parameters": base["parameters"],
        "compile_seconds": base["compile_seconds"],
        "step_seconds": base["step_seconds"],
        "audio_seconds_per_second": round(measured / base["step_seconds"], 2),
        "paper_batch": PAPER_BATCH,
        "paper_seconds": PAPER_SECONDS,
        "paper_step_seconds_linear": round(
            base["step_seconds"] * PAPER_BATCH * PAPER_SECONDS / measured, 1
        ),
    }


def matmul_peak_gflops() -> float:
    """``step_vs_hf.matmul_peak_flops`` in a child process (its module defines flags and
    imports jax)."""
    code = "import step_vs_hf; print(step_vs_hf.matmul_peak_flops())"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.path.dirname(HERE)]))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return round(float(done.stdout.strip().splitlines()[-1]) / 1e9, 1)


def real_corpus(config) -> dict:
    corpus = FLAGS.corpus
    split = FLAGS.split or DEFAULT_SPLITS[corpus]
    kind = pipelines.AUDIO_IMAGE if registry.CORPORA[corpus].captioned else pipelines.AUDIO_ONLY
    FLAGS.batches = 20 if FLAGS.batches is None else FLAGS.batches
    FLAGS.warmup = 3 if FLAGS.warmup is None else FLAGS.warmup
    config.read_threads = FLAGS.read_threads or os.cpu_count()
    config[kind].corpus, config[kind].split = corpus, split
    scratch = None
    if "data_dir" not in FLAGS["config"].override_values:
        scratch = config.data_dir = tempfile.mkdtemp(prefix="fastvgs-bench-")
    try:
        if FLAGS.root:
            data = use_user_paths(config, corpus)
        else:
            folder = os.path.join(str(config.data_dir), "sample_corpora")
            data = make_sample(config, corpus, split, FLAGS.sample_examples, folder)

        index_reused = _index_cached(config, corpus, split)
        start = time.perf_counter()
        index = registry.open_index(config, corpus, split, progress=False)
        index_seconds = time.perf_counter() - start
        lengths = [e.num_samples / config.sample_rate for e in index.entries]
        data.update(
            examples=len(index),
            mean_audio_seconds=round(statistics.mean(lengths), 2),
            min_audio_seconds=round(min(lengths), 2),
            max_audio_seconds=round(max(lengths), 2),
            audio_hours=round(sum(lengths) / 3600, 3),
        )
        if registry.CORPORA[corpus].captioned:
            data["images"] = index.manifest["images"]

        formats = registry.FORMATS if FLAGS.format == "both" else (FLAGS.format,)
        measured = {fmt: measure_format(config, corpus, split, kind, fmt) for fmt in formats}
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    step = None if FLAGS.skip_step else measure_step()
    for result in measured.values():
        ratio = ratio_unpadded = None
        if step:
            consumption = step["audio_seconds_per_second"]
            ratio = round(result["crop_seconds_per_second_per_core"] / consumption, 2)
            ratio_unpadded = round(result["audio_seconds_per_second_per_core"] / consumption, 2)
        result["step_ratio_per_core"] = ratio
        result["step_ratio_per_core_unpadded"] = ratio_unpadded
        result["meets_goal"] = None if ratio is None else ratio >= GOAL_RATIO_PER_CORE
    spec = pipelines.stream_spec(config, kind)
    return {
        "benchmark": "data_pipeline",
        "corpus": corpus,
        "split": split,
        "stream": kind,
        "data": data,
        "index_seconds": round(index_seconds, 2),
        "index_reused": index_reused,
        "batch": [spec.batch_size, spec.crop_seconds],
        "min_seconds": spec.min_seconds,
        "image_size": int(config.image.size) if kind == pipelines.AUDIO_IMAGE else None,
        "read_threads": int(config.read_threads),
        "batches": FLAGS.batches,
        "warmup": FLAGS.warmup,
        "host_cores": len(os.sched_getaffinity(0)),
        "goal_ratio_per_core": GOAL_RATIO_PER_CORE,
        "formats": measured,
        "step": step,
        "matmul_peak_gflops": None if FLAGS.skip_step else matmul_peak_gflops(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def main(argv) -> None:
    del argv
    config = _CONFIG.value
    if FLAGS.corpus == registry.EMBEDDED:
        if "data_dir" not in FLAGS["config"].override_values:
            config.data_dir = tempfile.mkdtemp(prefix="fastvgs-bench-")
        result = embedded(config)
    else:
        result = real_corpus(config)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
