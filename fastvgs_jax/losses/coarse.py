"""Coarse (dual-encoder) retrieval losses between pooled speech and image embeddings.

Called on global arrays: under a device mesh every embedding of the global batch is a
negative for every other (the compiler gathers them); no hand-written collectives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fastvgs_jax.losses.wav2vec2 import unit_vectors

MASKED_SCORE = -10_000.0  # the reference's score for pairs that share an image


def _same_image_mask(image_ids: jax.Array) -> jax.Array:
    """[batch, batch] True where two rows show the same image but are different pairs."""
    same = image_ids[:, None] == image_ids[None, :]
    return same & ~jnp.eye(image_ids.shape[0], dtype=bool)


def _symmetric_cross_entropy(scores: jax.Array, example_mask: jax.Array | None) -> tuple:
    """Mean CE with the diagonal as target, over rows (image→audio) and columns (audio→image)."""
    batch = scores.shape[0]
    weight = jnp.ones((batch,), jnp.float32) if example_mask is None else example_mask
    weight = weight.astype(jnp.float32)
    if example_mask is not None:
        # Padding examples are neither queries nor candidates.
        pair = weight[:, None] * weight[None, :]
        scores = jnp.where(pair > 0, scores, MASKED_SCORE)
    diag = jnp.arange(batch)
    image_to_audio = -jax.nn.log_softmax(scores, axis=1)[diag, diag]
    audio_to_image = -jax.nn.log_softmax(scores, axis=0)[diag, diag]
    count = jnp.maximum(jnp.sum(weight), 1.0)
    return (
        jnp.sum(image_to_audio * weight) / count,
        jnp.sum(audio_to_image * weight) / count,
    )


def coarse_margin_infonce(
    audio: jax.Array,
    image: jax.Array,
    image_ids: jax.Array,
    margin: float = 1.0,
    example_mask: jax.Array | None = None,
) -> jax.Array:
    """The masked margin InfoNCE of FaST-VGS (coarse), summed over both directions.

    S = image @ audio.T (raw dot products); S_ii −= margin; pairs (i, j≠i) that share an
    image score −10000; loss = CE over rows of S + CE over rows of S.T, each a batch mean.

    Args:
      audio: [batch, dim] audio embeddings (caption i).
      image: [batch, dim] image embeddings (the image of caption i; may repeat).
      image_ids: [batch] int, equal for captions of the same image.
      margin: subtracted from the positive scores.
      example_mask: optional [batch] bool; False rows (batch padding) are ignored.
    Returns:
      [] loss.
    """
    scores = jnp.einsum("id,jd->ij", image.astype(jnp.float32), audio.astype(jnp.float32))
    scores = scores - margin * jnp.eye(scores.shape[0], dtype=jnp.float32)
    scores = jnp.where(_same_image_mask(image_ids), MASKED_SCORE, scores)
    rows, columns = _symmetric_cross_entropy(scores, example_mask)
    return rows + columns


def coarse_clip_loss(
    audio: jax.Array,
    image: jax.Array,
    image_ids: jax.Array,
    log_scale: jax.Array,
    example_mask: jax.Array | None = None,
) -> jax.Array:
    """CLIP-style alternative: cosine similarities × exp(log_scale), same-image pairs masked,
    mean of the two directions' cross-entropies.

    Args:
      audio, image: [batch, dim]; image_ids: [batch]; log_scale: [] learned log temperature
      (clipped at log 100 as CLIP does); example_mask: optional [batch] bool.
    """
    audio = unit_vectors(audio)
    image = unit_vectors(image)
    scale = jnp.exp(jnp.minimum(log_scale, jnp.log(100.0)))
    scores = scale * jnp.einsum("id,jd->ij", image, audio)
    scores = jnp.where(_same_image_mask(image_ids), MASKED_SCORE, scores)
    rows, columns = _symmetric_cross_entropy(scores, example_mask)
    return (rows + columns) / 2
