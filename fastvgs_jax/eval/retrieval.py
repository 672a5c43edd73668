"""SpokenCOCO "one to many" cross-modal retrieval recall@K from coarse embeddings.

Scores are raw dot products, as in the coarse loss: ``S[i, c] = image[i] · audio[c]``, an
``[images, captions]`` matrix in which every image owns one or more captions
(``caption_image[c]`` is the row of caption c's image).

- Image → speech (historically "Audio R@K"): image i hits at K if ANY of its captions is among
  the top K of all captions. Mean over images.
- Speech → image (historically "Image R@K"): caption c hits at K if its own image is among the
  top K of all images. Mean over captions.

Tie rule: PESSIMISTIC. A competitor scoring exactly the target's score counts as ranked above
it, so a query hits at K iff fewer than K competitors score at least as high:

- speech → image: ``#{images j ≠ own(c): S[j, c] ≥ S[own(c), c]} < K``;
- image → speech: ``#{captions c not of i: S[i, c] ≥ max over i's captions of S[i, c]} < K``
  (the order among an image's own captions never matters).

Why: a collapsed model with constant embeddings puts every score in a tie; an optimistic rule
(or a sort that happens to put the target first) would report a perfect recall for it. Under
this rule the all-equal matrix scores 0 at every K ≤ number of competitors.

NaN scores (a diverged model) are read as −inf: a NaN target loses to every competitor, which
is the pessimistic reading too. A K at or above the number of candidates is clamped: every
query hits (the counting rule gives this without a special case).

Scale: the SpokenCOCO test split (5,000 images × 25,000 captions × 768 dims) runs on a CPU in
bounded memory. ``retrieval_recalls`` never builds the whole score matrix: it makes one pass
over chunks of captions (speech → image) and one over chunks of images (image → speech), each
inside a single jitted ``lax.map``, and keeps only the per-query competitor counts. Two passes
cost one extra matmul but take every comparison of a query from one computed block, so the
target and its competitors always carry the same rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# f32 matmuls at full precision: on GPUs the default may round inputs to TF32, which would
# merge nearby scores into ties and shift the ranks.
_PRECISION = jax.lax.Precision.HIGHEST


def _finite_or_low(scores: jax.Array) -> jax.Array:
    """NaN → −inf, so a NaN target is beaten (pessimistically) by every competitor."""
    return jnp.where(jnp.isnan(scores), -jnp.inf, scores)


def _speech_to_image_counts(block: jax.Array, own: jax.Array) -> jax.Array:
    """Competitors at least as good as the own image, per caption.

    Args:
      block: [images, chunk] scores of every image against a chunk of captions.
      own: [chunk] int, the row of each caption's image (any value for padding columns).
    Returns:
      [chunk] int32 counts of images j ≠ own with S[j, c] ≥ S[own, c].
    """
    block = _finite_or_low(block)
    columns = jnp.arange(block.shape[1])
    target = block[jnp.clip(own, 0, block.shape[0] - 1), columns]  # [chunk]
    rows = jnp.arange(block.shape[0])[:, None]
    beaten_by = (block >= target[None, :]) & (rows != own[None, :])
    return jnp.sum(beaten_by, axis=0, dtype=jnp.int32)


def _image_to_speech_counts(
    block: jax.Array, row_ids: jax.Array, caption_image: jax.Array
) -> jax.Array:
    """Foreign captions at least as good as the image's best own caption, per image.

    Args:
      block: [chunk, captions] scores of a chunk of images against every caption.
      row_ids: [chunk] int, the image rows of the block (padding rows own no caption).
      caption_image: [captions] int, the row of each caption's image.
    Returns:
      [chunk] int32 counts of captions c not of i with S[i, c] ≥ max over i's captions.
    """
    block = _finite_or_low(block)
    own = caption_image[None, :] == row_ids[:, None]  # [chunk, captions]
    target = jnp.max(jnp.where(own, block, -jnp.inf), axis=1)  # [chunk]
    beaten_by = (block >= target[:, None]) & ~own
    return jnp.sum(beaten_by, axis=1, dtype=jnp.int32)


@jax.jit
def _chunked_speech_to_image(
    images: jax.Array, audio_chunks: jax.Array, own_chunks: jax.Array
) -> jax.Array:
    """Speech → image counts [n_chunks, chunk] of caption chunks against all images.

    Args: images [images, dim]; audio_chunks [n_chunks, chunk, dim]; own_chunks [n_chunks, chunk].
    """

    def one_chunk(args):
        audio, own = args
        block = jnp.matmul(images, audio.T, precision=_PRECISION)  # [images, chunk]
        return _speech_to_image_counts(block, own)

    # lax.map runs the chunks one after another: one [images, chunk] block alive at a time.
    return jax.lax.map(one_chunk, (audio_chunks, own_chunks))


@jax.jit
def _chunked_image_to_speech(
    image_chunks: jax.Array, row_chunks: jax.Array, audio: jax.Array, caption_image: jax.Array
) -> jax.Array:
    """Image → speech counts [n_chunks, chunk] of image chunks against all captions.

    Args: image_chunks [n_chunks, chunk, dim]; row_chunks [n_chunks, chunk]; audio
    [captions, dim]; caption_image [captions].
    """

    def one_chunk(args):
        images, row_ids = args
        block = jnp.matmul(images, audio.T, precision=_PRECISION)  # [chunk, captions]
        return _image_to_speech_counts(block, row_ids, caption_image)

    return jax.lax.map(one_chunk, (image_chunks, row_chunks))


@jax.jit
def _matmul_transposed(images: jax.Array, audio: jax.Array) -> jax.Array:
    """[images, captions] = images [images, dim] @ audio [captions, dim].T at full precision."""
    return jnp.matmul(images, audio.T, precision=_PRECISION)


_speech_to_image_block = jax.jit(_speech_to_image_counts)
_image_to_speech_block = jax.jit(_image_to_speech_counts)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct Ks, always including 1 (``mean_r1`` needs both R@1)."""
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"every K must be >= 1, got {ks}")
    return tuple(sorted(set(ks) | {1}))


def _check_caption_image(caption_image, num_images: int, num_captions: int) -> np.ndarray:
    """Validated [captions] int32 image rows: in range, and every image owns a caption."""
    caption_image = np.asarray(caption_image)
    if caption_image.ndim != 1 or caption_image.shape[0] != num_captions:
        raise ValueError(
            f"caption_image must be [captions={num_captions}], got shape {caption_image.shape}"
        )
    if not np.issubdtype(caption_image.dtype, np.integer):
        raise ValueError(f"caption_image must hold integer rows, got dtype {caption_image.dtype}")
    if num_images == 0 or num_captions == 0:
        raise ValueError(f"need images and captions, got {num_images} and {num_captions}")
    outside = (caption_image < 0) | (caption_image >= num_images)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"caption {first} points to image row {int(caption_image[first])}, outside "
            f"[0, {num_images})"
        )
    per_image = np.bincount(caption_image, minlength=num_images)
    if (per_image == 0).any():
        missing = np.flatnonzero(per_image == 0)
        raise ValueError(
            f"{missing.size} image(s) have no caption (first row {int(missing[0])}); "
            "image → speech recall is undefined for them"
        )
    return caption_image.astype(np.int32)


def _recalls_from_counts(
    speech_to_image: np.ndarray, image_to_speech: np.ndarray, ks: tuple[int, ...]
) -> dict[str, float]:
    """Flat recall dict from per-query competitor counts (hit at K iff count < K)."""
    out = {}
    for k in ks:
        out[f"speech_to_image_r{k}"] = float(np.mean(speech_to_image < k))
    for k in ks:
        out[f"image_to_speech_r{k}"] = float(np.mean(image_to_speech < k))
    out["mean_r1"] = 0.5 * (out["speech_to_image_r1"] + out["image_to_speech_r1"])
    return out


def _balanced_chunk(n: int, chunk_size: int) -> int:
    """The smallest chunk giving as many chunks as ``chunk_size`` does: least padding."""
    return -(-n // -(-n // chunk_size))


def _pad_axis(x: np.ndarray, axis: int, multiple: int, value) -> np.ndarray:
    """Pad ``axis`` up to a multiple of ``multiple`` (one compiled shape for every chunk)."""
    extra = -x.shape[axis] % multiple
    if extra == 0:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, extra)
    return np.pad(x, pad, constant_values=value)


def score_matrix(image_embeddings, audio_embeddings) -> np.ndarray:
    """Coarse scores S = image @ audio.T, in float32.

    Args:
      image_embeddings: [images, dim].
      audio_embeddings: [captions, dim].
    Returns:
      [images, captions] np.float32 raw dot products.
    """
    images = np.asarray(image_embeddings, np.float32)
    audio = np.asarray(audio_embeddings, np.float32)
    if images.ndim != 2 or audio.ndim != 2 or images.shape[1] != audio.shape[1]:
        raise ValueError(
            f"need [images, dim] and [captions, dim], got {images.shape} and {audio.shape}"
        )
    scores = _matmul_transposed(jax.device_put(images), jax.device_put(audio))
    return np.asarray(jax.device_get(scores))


def recalls_from_scores(
    scores, caption_image, ks: Sequence[int] = (1, 5, 10), *, chunk_size: int = 2048
) -> dict[str, float]:
    """Recall@K of both directions from a full score matrix (pessimistic ties; see module doc).

    Args:
      scores: [images, captions] scores, higher is better.
      caption_image: [captions] int, the row in ``scores`` of each caption's image.
      ks: the Ks to report; K = 1 is always added (for ``mean_r1``).
      chunk_size: columns (then rows) of ``scores`` compared at once, to bound temporaries.
    Returns:
      ``{"speech_to_image_r{K}", "image_to_speech_r{K}", "mean_r1"}`` as fractions in [0, 1].
    """
    scores = np.asarray(scores, np.float32)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [images, captions], got shape {scores.shape}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    num_images, num_captions = scores.shape
    caption_image = _check_caption_image(caption_image, num_images, num_captions)
    ks = _check_ks(ks)

    # Only the last chunk is padded (a copy of one chunk, not of the matrix), so each kernel
    # compiles for one shape; padding counts are dropped.
    chunk = _balanced_chunk(num_captions, chunk_size)
    speech_to_image = np.zeros(num_captions, np.int64)
    for start in range(0, num_captions, chunk):
        stop = min(start + chunk, num_captions)
        block = _pad_axis(scores[:, start:stop], 1, chunk, 0.0)
        own = _pad_axis(caption_image[start:stop], 0, chunk, 0)
        counts = _speech_to_image_block(jax.device_put(block), jax.device_put(own))
        speech_to_image[start:stop] = jax.device_get(counts)[: stop - start]

    chunk = _balanced_chunk(num_images, chunk_size)
    image_to_speech = np.zeros(num_images, np.int64)
    device_caption_image = jax.device_put(caption_image)
    for start in range(0, num_images, chunk):
        stop = min(start + chunk, num_images)
        block = _pad_axis(scores[start:stop], 0, chunk, 0.0)
        row_ids = np.arange(start, start + chunk, dtype=np.int32)  # padding rows own no caption
        counts = _image_to_speech_block(
            jax.device_put(block), jax.device_put(row_ids), device_caption_image
        )
        image_to_speech[start:stop] = jax.device_get(counts)[: stop - start]
    return _recalls_from_counts(speech_to_image, image_to_speech, ks)


def retrieval_recalls(
    image_embeddings,
    audio_embeddings,
    caption_image,
    ks: Sequence[int] = (1, 5, 10, 100),
    chunk_size: int = 2048,
) -> dict[str, float]:
    """Recall@K of both directions without materialising the score matrix.

    Equal to ``recalls_from_scores(score_matrix(images, audio), caption_image, ks)`` up to
    float rounding of the chunked matmuls. Peak memory beyond the inputs is about
    ``chunk_size × max(images, captions)`` floats.

    Args:
      image_embeddings: [images, dim], each unique image once.
      audio_embeddings: [captions, dim].
      caption_image: [captions] int, the row in ``image_embeddings`` of caption c's image
        (see ``caption_image_index``).
      ks: the Ks to report; K = 1 is always added (for ``mean_r1``).
      chunk_size: captions (first pass) or images (second pass) scored at once.
    Returns:
      ``{"speech_to_image_r{K}", "image_to_speech_r{K}", "mean_r1"}`` as fractions in [0, 1].
    """
    images = np.asarray(image_embeddings, np.float32)
    audio = np.asarray(audio_embeddings, np.float32)
    if images.ndim != 2 or audio.ndim != 2 or images.shape[1] != audio.shape[1]:
        raise ValueError(
            f"need [images, dim] and [captions, dim], got {images.shape} and {audio.shape}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    num_images, num_captions = images.shape[0], audio.shape[0]
    caption_image = _check_caption_image(caption_image, num_images, num_captions)
    ks = _check_ks(ks)
    dim = images.shape[1]

    # Speech → image: chunks of captions against all images. Padding captions are dropped.
    chunk = _balanced_chunk(num_captions, chunk_size)
    audio_chunks = _pad_axis(audio, 0, chunk, 0.0).reshape(-1, chunk, dim)
    own_chunks = _pad_axis(caption_image, 0, chunk, 0).reshape(-1, chunk)
    counts = _chunked_speech_to_image(
        jax.device_put(images), jax.device_put(audio_chunks), jax.device_put(own_chunks)
    )
    speech_to_image = jax.device_get(counts).reshape(-1)[:num_captions]

    # Image → speech: chunks of images against all captions. Padding rows get ids ≥ images,
    # so they own no caption; their counts are dropped.
    chunk = _balanced_chunk(num_images, chunk_size)
    image_chunks = _pad_axis(images, 0, chunk, 0.0).reshape(-1, chunk, dim)
    row_chunks = np.arange(image_chunks.shape[0] * chunk, dtype=np.int32).reshape(-1, chunk)
    counts = _chunked_image_to_speech(
        jax.device_put(image_chunks),
        jax.device_put(row_chunks),
        jax.device_put(audio),
        jax.device_put(caption_image),
    )
    image_to_speech = jax.device_get(counts).reshape(-1)[:num_images]

    return _recalls_from_counts(speech_to_image, image_to_speech, ks)


def caption_image_index(image_ids) -> tuple[np.ndarray, np.ndarray]:
    """Per-caption image ids → (unique ids, row of each caption), to encode each image once.

    Args:
      image_ids: [captions] ids (ints or strings) of each caption's image, as a split stores them.
    Returns:
      unique_ids: [images] the distinct ids, sorted; row i of the image table is unique_ids[i].
      caption_image: [captions] int32 rows, with ``unique_ids[caption_image] == image_ids``.
    """
    image_ids = np.asarray(image_ids)
    if image_ids.ndim != 1 or image_ids.shape[0] == 0:
        raise ValueError(f"image_ids must be a non-empty [captions] array, got {image_ids.shape}")
    unique_ids, caption_image = np.unique(image_ids, return_inverse=True)
    return unique_ids, caption_image.reshape(-1).astype(np.int32)
