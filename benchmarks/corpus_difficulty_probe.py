"""How hard is the spoken-scenes corpus for retrieval? A small dual encoder probes it.

    python -m fastvgs_jax.data.build --size small --data_dir data     # the corpus it reads
    python benchmarks/corpus_difficulty_probe.py --data_dir data --preset small --minutes 10

A ~1.3 M-parameter log-mel speech encoder and a small image CNN are trained with a CLIP-style
symmetric InfoNCE loss on the `train` split for a fixed wall-clock budget, then every test
caption (held-out speakers) is scored against every unique test image. The recalls say how far
a cheap model gets on the corpus: near 100% means the difficulty knobs in
`fastvgs_jax/data/spoken_scenes/corpus.py` (objects per scene, near-duplicates, vocabulary)
should go up; near chance means the corpus is too hard to learn from in the budget.

Retrieval follows the SpokenCOCO protocol (docs: shared/reference/evaluation.md):
  image -> speech R@K: an image is a hit if ANY of its captions ranks in the top K; mean over
  images. speech -> image R@K: a caption is a hit if its own image ranks in the top K; mean over
  captions. Ties are broken in the query's favour (only strictly higher scores rank above).

The training clock counts data loading and train steps only: compilation and evaluation are
excluded (reported separately), so curves from busy and idle machines stay comparable in steps.

Output fields: benchmark, preset, corpus_seed, minutes, steps, train_examples_seen, params,
test_images, test_captions, speech_to_image_r{1,5,10}, image_to_speech_r{1,5,10} (in %),
chance_speech_to_image_r10 (%), curve [{minute, step, speech_to_image_r10,
image_to_speech_r10}], plus throughput (steps_per_second, audio_seconds_per_second),
timings and the settings (batch_size, crop_seconds, normalize, ...).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
import optax
from absl import app, flags

# A sibling file: `python benchmarks/corpus_difficulty_probe.py` puts benchmarks/ on sys.path.
from probe_model import SAMPLE_RATE, DualEncoder, attribute_table, contrastive_loss

from fastvgs_jax.data import pipelines, sources

_DATA_DIR = flags.DEFINE_string("data_dir", "data", "TFDS data dir holding the built corpus.")
_PRESET = flags.DEFINE_string("preset", "small", "Corpus size preset (tiny | small | large).")
_CORPUS_SEED = flags.DEFINE_integer("corpus_seed", 0, "Seed the corpus was built with.")
_MINUTES = flags.DEFINE_float("minutes", 10.0, "Training wall-clock budget in minutes.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Captions per training batch.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the initialisation and of the data order.")
_EVAL_EVERY = flags.DEFINE_float("eval_every_minutes", 2.5, "Training minutes between evals.")
_CROP_SECONDS = flags.DEFINE_float("crop_seconds", 6.0, "Random training crop per caption.")
_NORMALIZE = flags.DEFINE_enum(
    "normalize",
    "utterance",
    ["utterance", "frame"],
    "Log-mel normalisation: per-bin mean/variance over the utterance (CMVN) or over each "
    "frame's bins (the model's logmel.normalize='frame').",
)
_IMAGE_INPUT = flags.DEFINE_enum(
    "image_input",
    "pixels",
    ["pixels", "attributes"],
    "What the image tower sees: the rendered pixels (a CNN), or the scene's ground-truth "
    "object attributes (a multi-hot over shape x colour, shape, colour and size, then an MLP): "
    "an oracle image side, so that the speech side's share of the difficulty shows.",
)
_EVAL_CROP_SECONDS = flags.DEFINE_float(
    "eval_crop_seconds",
    None,
    "Evaluation crop (from the start); default: the longest test caption, so none is cut.",
)


LEARNING_RATE = 1e-3
WARMUP_STEPS = 100  # linear warm-up, then constant: the budget is too short for a decay to matter
WEIGHT_DECAY = 1e-4
CLIP_NORM = 1.0
RECALL_KS = (1, 5, 10)

Batch = dict[str, np.ndarray]
Params = Any


def log(message: str) -> None:
    """Progress goes to stderr: stdout carries only the final JSON line."""
    print(message, file=sys.stderr, flush=True)


def make_optimizer() -> optax.GradientTransformation:
    """AdamW with clipping and a linear warm-up; only kernels are decayed."""
    schedule = optax.linear_schedule(0.0, LEARNING_RATE, WARMUP_STEPS)
    return optax.chain(
        optax.clip_by_global_norm(CLIP_NORM),
        optax.adamw(
            schedule,
            weight_decay=WEIGHT_DECAY,
            mask=lambda params: jax.tree.map(lambda p: p.ndim > 1, params),
        ),
    )


def make_train_step(
    model: DualEncoder, optimizer: optax.GradientTransformation
) -> Callable[[Params, optax.OptState, Batch], tuple[Params, optax.OptState, dict]]:
    """The pure step ``(params, opt_state, batch) -> (params, opt_state, metrics)``."""

    def train_step(params: Params, opt_state: optax.OptState, batch: Batch):
        def loss_fn(p: Params):
            speech, image, scale = model.apply(
                p, batch["audio"], batch["audio_mask"], batch["image"]
            )
            loss, metrics = contrastive_loss(speech, image, batch["image_id"], scale)
            return loss, {**metrics, "scale": scale}

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}

    return train_step


TRAIN_KEYS = ("audio", "audio_mask", "image", "image_id")


def to_train_batch(batch: Batch, attributes: np.ndarray | None = None) -> Batch:
    """Keeps the arrays the step reads; int32 ids (JAX runs without x64). With ``attributes``
    ([image ids, A]), the image is replaced by its scene's attribute multi-hot."""
    out = {key: batch[key] for key in TRAIN_KEYS}
    if attributes is not None:
        out["image"] = attributes[batch["image_id"]]
    out["image_id"] = out["image_id"].astype(np.int32)
    return out


# ----------------------------------------------------------------------------------------------
# Retrieval evaluation


def retrieval_recalls(
    scores: np.ndarray, caption_image: np.ndarray, ks: Sequence[int] = RECALL_KS
) -> dict[str, float]:
    """Recall@K in % in both directions (SpokenCOCO "one to many" protocol).

    Args:
      scores: [I, C], score of image i against caption c.
      caption_image: [C] int, the row of each caption's own image.

    Returns:
      ``speech_to_image_r{K}`` (mean over captions) and ``image_to_speech_r{K}`` (mean over
      images; a hit if any of the image's captions is in the top K).
    """
    num_images, num_captions = scores.shape
    captions = np.arange(num_captions)
    # Speech -> image: rank of the caption's own image among all images (0 = top).
    own = scores[caption_image, captions]  # [C]
    s2i_rank = (scores > own[None, :]).sum(axis=0)  # [C]
    # Image -> speech: the image's best-scored own caption is its best-ranked one, and its rank
    # is the number of captions (all from other images) scored strictly above it.
    is_own = caption_image[None, :] == np.arange(num_images)[:, None]  # [I, C]
    best_own = np.where(is_own, scores, -np.inf).max(axis=1)  # [I]
    i2s_rank = (scores > best_own[:, None]).sum(axis=1)  # [I]
    result = {}
    for k in ks:
        result[f"speech_to_image_r{k}"] = 100.0 * float((s2i_rank < k).mean())
        result[f"image_to_speech_r{k}"] = 100.0 * float((i2s_rank < k).mean())
    return result


class Evaluator:
    """Encodes the test split once per call and scores every unique image x every caption."""

    def __init__(
        self,
        model: DualEncoder,
        test_source: Any,
        spec: pipelines.StreamSpec,
        attributes: np.ndarray | None = None,
    ):
        self._source = test_source
        self.attributes = attributes
        self._spec = spec
        self._encode_speech = jax.jit(
            lambda p, audio, mask: model.apply(p, audio, mask, method=DualEncoder.encode_speech)
        )
        self._encode_image = jax.jit(
            lambda p, image: model.apply(p, image, method=DualEncoder.encode_image)
        )
        self.num_images: int | None = None
        self.num_captions: int | None = None
        self.truncated_captions: int | None = None

    def __call__(self, params: Params) -> dict[str, float]:
        speech_parts, caption_ids = [], []
        image_rows: dict[int, np.ndarray] = {}  # image_id -> embedding, first occurrence order
        truncated = 0
        for batch in pipelines.evaluation_batches(self._source, "audio_image", self._spec):
            keep = batch["example_mask"]
            speech = self._encode_speech(params, batch["audio"], batch["audio_mask"])
            speech_parts.append(np.asarray(speech)[keep])
            ids = batch["image_id"][keep]
            caption_ids.append(ids)
            # A caption that fills the whole crop was probably cut: the crop is too short.
            truncated += int(batch["audio_mask"][keep].all(axis=1).sum())
            new = [row for row, i in enumerate(ids) if int(i) not in image_rows]
            if new:
                pixels = (
                    batch["image"]
                    if self.attributes is None
                    else self.attributes[batch["image_id"]]
                )
                images = np.asarray(self._encode_image(params, pixels))[keep]
                for row in new:
                    image_rows.setdefault(int(ids[row]), images[row])
        speech = np.concatenate(speech_parts)  # [C, D]
        caption_ids = np.concatenate(caption_ids)  # [C]
        image_order = {image_id: row for row, image_id in enumerate(image_rows)}
        images = np.stack(list(image_rows.values()))  # [I, D]
        caption_image = np.array([image_order[int(i)] for i in caption_ids])
        self.num_images, self.num_captions = len(images), len(speech)
        self.truncated_captions = truncated
        return retrieval_recalls(images @ speech.T, caption_image)


# ----------------------------------------------------------------------------------------------
# Main


def longest_seconds(source: Any) -> float:
    """The longest utterance of ``source``, rounded up to whole seconds."""
    longest = max(source[index]["audio"].shape[0] for index in range(len(source)))
    return float(math.ceil(longest / SAMPLE_RATE))


def count_params(params: Params) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def main(argv: Sequence[str]) -> None:
    del argv
    data_dir, preset, corpus_seed = _DATA_DIR.value, _PRESET.value, _CORPUS_SEED.value
    train_source = sources.open_split(data_dir, preset, "train", seed=corpus_seed)
    test_source = sources.open_split(data_dir, preset, "test", seed=corpus_seed)
    log(f"train: {train_source}\ntest: {test_source}")

    eval_crop_seconds = _EVAL_CROP_SECONDS.value or longest_seconds(test_source)
    train_spec = pipelines.StreamSpec(_BATCH_SIZE.value, _CROP_SECONDS.value)
    eval_spec = pipelines.StreamSpec(_BATCH_SIZE.value, eval_crop_seconds)
    batches: Iterator[Batch] = iter(
        pipelines.training_stream(train_source, "audio_image", train_spec, seed=_SEED.value)
    )

    model = DualEncoder(normalize=_NORMALIZE.value, image_input=_IMAGE_INPUT.value)
    optimizer = make_optimizer()
    attributes = None
    if _IMAGE_INPUT.value == "attributes":
        attributes = attribute_table(train_source, test_source)
    first = to_train_batch(next(batches), attributes)
    params = model.init(
        jax.random.key(_SEED.value), first["audio"], first["audio_mask"], first["image"]
    )
    opt_state = optimizer.init(params)
    num_params = count_params(params)
    log(f"model: {num_params:,} parameters")

    # Compiled ahead of time: the step is traced exactly once, and a batch of another shape
    # would fail loudly instead of silently recompiling inside the timed loop.
    start = time.perf_counter()
    train_step = (
        jax.jit(make_train_step(model, optimizer), donate_argnums=(0, 1))
        .lower(params, opt_state, first)
        .compile()
    )
    compile_seconds = time.perf_counter() - start

    evaluate = Evaluator(model, test_source, eval_spec, attributes)
    curve: list[dict[str, float]] = []
    eval_seconds = 0.0

    def run_eval(step: int, train_seconds: float) -> dict[str, float]:
        nonlocal eval_seconds
        start = time.perf_counter()
        recalls = evaluate(params)
        eval_seconds += time.perf_counter() - start
        point = {
            "minute": round(train_seconds / 60, 2),
            "step": step,
            "speech_to_image_r10": round(recalls["speech_to_image_r10"], 2),
            "image_to_speech_r10": round(recalls["image_to_speech_r10"], 2),
        }
        curve.append(point)
        log(
            f"eval {point} R@1 s2i {recalls['speech_to_image_r1']:.1f} "
            f"i2s {recalls['image_to_speech_r1']:.1f}"
        )
        return recalls

    recalls = run_eval(0, 0.0)  # the untrained model: should be near chance
    budget = 60.0 * _MINUTES.value
    eval_interval = 60.0 * _EVAL_EVERY.value
    next_eval = eval_interval
    train_seconds, step, valid_samples = 0.0, 0, 0
    batch = first
    while train_seconds < budget:
        start = time.perf_counter()
        if step > 0:
            batch = to_train_batch(next(batches), attributes)
        valid_samples += int(batch["audio_mask"].sum())
        params, opt_state, metrics = train_step(params, opt_state, batch)
        # Wait for the step so the clock measures work, not dispatch.
        metrics = jax.device_get(metrics)
        train_seconds += time.perf_counter() - start
        step += 1
        if step % 25 == 0:
            log(
                f"step {step} {train_seconds:.0f}s loss {metrics['loss']:.3f} "
                f"scale {metrics['scale']:.1f} batch s2i acc {metrics['batch_s2i_acc']:.2f}"
            )
        if not np.isfinite(metrics["loss"]):
            raise FloatingPointError(f"loss is {metrics['loss']} at step {step}")
        if train_seconds >= next_eval and train_seconds < budget:
            recalls = run_eval(step, train_seconds)
            next_eval += eval_interval
    recalls = run_eval(step, train_seconds)

    num_images = evaluate.num_images
    result = {
        "benchmark": "corpus_difficulty_probe",
        "preset": preset,
        "corpus_seed": corpus_seed,
        "minutes": _MINUTES.value,
        "steps": step,
        "train_examples_seen": step * _BATCH_SIZE.value,
        "params": num_params,
        "test_images": num_images,
        "test_captions": evaluate.num_captions,
        **{
            f"{direction}_r{k}": round(recalls[f"{direction}_r{k}"], 2)
            for direction in ("speech_to_image", "image_to_speech")
            for k in RECALL_KS
        },
        "chance_speech_to_image_r10": round(100.0 * min(10, num_images) / num_images, 2),
        "curve": curve,
        "steps_per_second": round(step / train_seconds, 3),
        "audio_seconds_per_second": round(valid_samples / SAMPLE_RATE / train_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "compile_seconds": round(compile_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "eval_truncated_captions": evaluate.truncated_captions,
        "batch_size": _BATCH_SIZE.value,
        "crop_seconds": _CROP_SECONDS.value,
        "eval_crop_seconds": eval_crop_seconds,
        "normalize": _NORMALIZE.value,
        "image_input": _IMAGE_INPUT.value,
        "seed": _SEED.value,
        "cpu_cores": os.cpu_count(),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
