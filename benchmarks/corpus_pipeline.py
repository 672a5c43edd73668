"""A real corpus's training stream timed against the paper's base step, for
``benchmarks/data_pipeline.py --corpus=…`` (its docstring lists the JSON line's fields).

``real_corpus`` writes a sample corpus in the published layout at a realistic scale
(``make_sample``, ``SAMPLE_SCALE``) or points the config at the user's data
(``use_user_paths``), builds the checked index, times the training stream read from each
format (``measure_format``), and times the base step and the matmul peak in child processes
(``measure_step``, ``matmul_peak_gflops``). What to run comes in ``Options`` (the command's
flags); nothing here parses flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from absl import app

from fastvgs_jax.data import pipelines
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


@dataclasses.dataclass(frozen=True)
class Options:
    """What ``real_corpus`` measures: the ``data_pipeline.py`` flags of the same names (None:
    the real-corpus default)."""

    corpus: str
    split: str | None = None  # None: DEFAULT_SPLITS[corpus]
    format: str = "both"  # layout | array_record | both
    root: str | None = None  # None: a sample corpus
    image_root: str = ""
    text_root: str = ""
    audio_root: str = ""
    sample_examples: int = 640
    batches: int | None = None  # None: 20
    warmup: int | None = None  # None: 3
    read_threads: int | None = None  # None: os.cpu_count()
    skip_step: bool = False
    step_batch: int = 4
    step_seconds: float = 4.0
    step_steps: int = 2
    scratch_data_dir: bool = True  # data_dir not given: a fresh temporary folder, removed after


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


def use_user_paths(config, corpus: str, options: Options) -> dict:
    settings = config.corpora[corpus]
    settings.root = options.root
    for name in ("image_root", "text_root", "audio_root"):
        value = getattr(options, name)
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


def measure_format(
    config, corpus: str, split: str, kind: str, fmt: str, *, batches: int, warmup: int
) -> dict:
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
    for _ in range(warmup):
        next(iterator)
    unpadded = 0
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(batches):
        unpadded += int(next(iterator)["audio_mask"].sum())
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    cores = len(os.sched_getaffinity(0))
    examples = batches * spec.batch_size
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


def measure_step(options: Options) -> dict:
    """The base step on this machine, by ``train_throughput.py --variants=base``."""
    command = [
        sys.executable,
        os.path.join(HERE, "train_throughput.py"),
        "--variants=base",
        f"--steps={options.step_steps}",
        f"--base_batch={options.step_batch}",
        f"--base_seconds={options.step_seconds}",
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


def real_corpus(config, options: Options) -> dict:
    corpus = options.corpus
    split = options.split or DEFAULT_SPLITS[corpus]
    kind = pipelines.AUDIO_IMAGE if registry.CORPORA[corpus].captioned else pipelines.AUDIO_ONLY
    batches = 20 if options.batches is None else options.batches
    warmup = 3 if options.warmup is None else options.warmup
    config.read_threads = options.read_threads or os.cpu_count()
    config[kind].corpus, config[kind].split = corpus, split
    scratch = None
    if options.scratch_data_dir:
        scratch = config.data_dir = tempfile.mkdtemp(prefix="fastvgs-bench-")
    try:
        if options.root:
            data = use_user_paths(config, corpus, options)
        else:
            folder = os.path.join(str(config.data_dir), "sample_corpora")
            data = make_sample(config, corpus, split, options.sample_examples, folder)

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

        formats = registry.FORMATS if options.format == "both" else (options.format,)
        measured = {
            fmt: measure_format(config, corpus, split, kind, fmt, batches=batches, warmup=warmup)
            for fmt in formats
        }
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    step = None if options.skip_step else measure_step(options)
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
        "batches": batches,
        "warmup": warmup,
        "host_cores": len(os.sched_getaffinity(0)),
        "goal_ratio_per_core": GOAL_RATIO_PER_CORE,
        "formats": measured,
        "step": step,
        "matmul_peak_gflops": None if options.skip_step else matmul_peak_gflops(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
