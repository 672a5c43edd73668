"""Cross-modal retrieval of a run's weights on a split: caption and image embeddings, Recall@K."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from fastvgs_jax.data import pipelines
from fastvgs_jax.eval import retrieval
from fastvgs_jax.models import fastvgs


@functools.lru_cache(maxsize=8)
def _embedders(model_json: str):
    """Jitted ``(variables, audio, frame_mask) → [B, D]`` and ``(variables, image) → [B, D]``
    (variables are arguments: trained and random weights share the executables)."""
    model = fastvgs.FaSTVGSPlus(ml_collections.ConfigDict(json.loads(model_json)))
    audio = jax.jit(lambda v, a, m: model.apply(v, a, m, method=model.encode_audio))
    image = jax.jit(lambda v, inputs: model.apply(v, **inputs, method=model.encode_image))
    return audio, image


# What an image is in a batch: pixels, or detector region features and their boxes.
IMAGE_FIELDS = (("image",), ("regions", "boxes"))


def image_fields(batch: Mapping) -> tuple[str, ...]:
    for fields in IMAGE_FIELDS:
        if all(name in batch for name in fields):
            return fields
    raise ValueError(f"an audio-image batch without image inputs (has {sorted(batch)})")


def caption_spec(
    config: ml_collections.ConfigDict,
    batch_size: int | None = None,
    crop_seconds: float | None = None,
) -> pipelines.StreamSpec:
    """The run's audio-image stream spec (crop length, frame geometry), batch size replaced."""
    spec = pipelines.stream_spec(config.data, pipelines.AUDIO_IMAGE)
    changes = {"min_seconds": 0.0}  # evaluation keeps every caption
    if batch_size is not None:
        changes["batch_size"] = int(batch_size)
    if crop_seconds is not None:
        changes["crop_seconds"] = float(crop_seconds)
    return dataclasses.replace(spec, **changes)


def embed_captions(
    model_config: ml_collections.ConfigDict,
    variables: Mapping,
    batches: Iterable[dict],
    *,
    progress: bool = False,
    total: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """Audio embeddings of every caption, and the first normalised image of each image id.

    Args:
      batches: ``pipelines.evaluation_batches`` output (fixed shapes, ``example_mask``).
    Returns:
      ([captions, D] float32, [captions] image ids, {image id: its image inputs}), the inputs
      ``{"image": [H, W, 3]}`` or ``{"regions": [R, F], "boxes": [R, 4]}`` (float32).
    """
    encode_audio, _ = _embedders(model_config.to_json())
    embeddings, image_ids, images = [], [], {}
    for batch in tqdm(batches, desc="captions", total=total, disable=not progress, leave=False):
        keep = np.flatnonzero(np.asarray(batch["example_mask"]))
        emb = jax.device_get(encode_audio(variables, batch["audio"], batch["frame_mask"]))
        embeddings.append(np.asarray(emb, np.float32)[keep])
        fields = image_fields(batch)
        for row in keep:
            image_id = int(batch["image_id"][row])
            image_ids.append(image_id)
            if image_id not in images:  # copies: a view would keep the whole batch alive
                images[image_id] = {name: np.array(batch[name][row]) for name in fields}
    return np.concatenate(embeddings), np.asarray(image_ids, np.int64), images


def embed_images(
    model_config: ml_collections.ConfigDict,
    variables: Mapping,
    images: Sequence[np.ndarray | Mapping[str, np.ndarray]],
    batch_size: int,
) -> np.ndarray:
    """[images, D] float32 embeddings, in fixed-size batches (the last one padded).

    ``images``: pixels [H, W, 3] each, or the inputs ``embed_captions`` collects.
    """
    _, encode_image = _embedders(model_config.to_json())
    images = [x if isinstance(x, Mapping) else {"image": x} for x in images]
    out = []
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        count = len(chunk)
        chunk += [chunk[-1]] * (batch_size - count)  # filler rows: one compiled shape
        stacked = {name: np.stack([x[name] for x in chunk]) for name in chunk[0]}
        emb = jax.device_get(encode_image(variables, stacked))
        out.append(np.asarray(emb, np.float32)[:count])
    return np.concatenate(out)


def retrieval_metrics(
    model_config: ml_collections.ConfigDict,
    variables: Mapping,
    batches: Iterable[dict],
    batch_size: int,
    *,
    ks: Sequence[int] = (1, 5, 10, 100),
    progress: bool = False,
    total: int | None = None,
) -> dict:
    """Recall@K in both directions (percent) of captions against their unique images.

    Returns:
      ``{"speech_to_image": {"r1": %, ...}, "image_to_speech": {...}, "mean_r1": %,
      "num_images", "num_captions"}``.
    """
    audio, image_ids, images = embed_captions(
        model_config, variables, batches, progress=progress, total=total
    )
    unique_ids, caption_image = retrieval.caption_image_index(image_ids)
    image_emb = embed_images(
        model_config, variables, [images[int(i)] for i in unique_ids], batch_size
    )
    recalls = retrieval.retrieval_recalls(image_emb, audio, caption_image, ks)
    out: dict = {"speech_to_image": {}, "image_to_speech": {}}
    for key, value in recalls.items():
        direction, _, k = key.rpartition("_")
        if direction in out:
            out[direction][k] = 100.0 * value
    out["mean_r1"] = 100.0 * recalls["mean_r1"]
    out["num_images"], out["num_captions"] = int(len(unique_ids)), int(len(audio))
    return out
