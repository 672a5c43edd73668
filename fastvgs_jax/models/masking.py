"""Span masking and negative sampling for the wav2vec 2.0 objective, inside jit.

Both are pure functions of a PRNG key and fixed-shape masks, so they run on device inside the
train step (no host-side numpy, no recompiles). Masks are True on real frames.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def max_spans(num_frames: int, prob: float, span: int, min_spans: int) -> int:
    """The most spans any utterance of ``num_frames`` frames can draw (a static bound)."""
    return max(min_spans, math.floor(prob * num_frames / span + 1.0))


def mask_spans(
    key: jax.Array,
    frame_mask: jax.Array,
    prob: float = 0.65,
    span: int = 10,
    min_spans: int = 2,
) -> jax.Array:
    """Choose frames to mask, as wav2vec 2.0 does.

    Each utterance with ``L`` real frames draws ``max(min_spans, floor(prob·L/span + u))``
    span starts (u ~ U[0, 1), so the expected count is ``prob·L/span``) uniformly without
    replacement from ``[0, L − span]``; spans may overlap. Padding is never masked. Then every
    utterance keeps a random subset of its masked frames so that all utterances with real
    frames mask the same number (the smallest count), as fairseq's ``require_same_masks``.
    An utterance with no real frames masks nothing and does not lower the count of others.

    Args:
      key: PRNG key.
      frame_mask: [batch, frames] bool, True on real frames (a prefix of each row).
    Returns:
      [batch, frames] bool, True on masked frames.
    """
    batch, frames = frame_mask.shape
    lengths = frame_mask.sum(axis=-1)  # [batch]
    k_count, k_starts, k_trim = jax.random.split(key, 3)

    last_start = jnp.maximum(lengths - span, 0)  # starts in [0, last_start]
    num_starts = last_start + 1
    u = jax.random.uniform(k_count, (batch,))
    wanted = jnp.floor(prob * lengths / span + u).astype(jnp.int32)
    count = jnp.minimum(jnp.maximum(wanted, min_spans), num_starts)
    count = jnp.where(lengths > 0, count, 0)

    # Uniform choice without replacement: the `count` highest random scores among the
    # allowed starts.
    positions = jnp.arange(frames)
    scores = jax.random.uniform(k_starts, (batch, frames))
    scores = jnp.where(positions[None] <= last_start[:, None], scores, -1.0)
    rank = jnp.argsort(jnp.argsort(-scores, axis=-1), axis=-1)  # 0 = highest score
    starts = (rank < count[:, None]) & (lengths[:, None] > 0)

    # A frame is masked when a start lies within the `span` frames ending at it.
    cumulative = jnp.cumsum(starts.astype(jnp.int32), axis=-1)
    shifted = jnp.pad(cumulative, ((0, 0), (span, 0)))[:, :frames]
    masked = ((cumulative - shifted) > 0) & frame_mask

    # Equalise: keep a random subset of size min over non-empty rows.
    per_row = masked.sum(axis=-1)
    target = jnp.min(jnp.where(lengths > 0, per_row, frames))
    keep_scores = jnp.where(masked, jax.random.uniform(k_trim, (batch, frames)), -1.0)
    keep_rank = jnp.argsort(jnp.argsort(-keep_scores, axis=-1), axis=-1)
    return masked & (keep_rank < target)


def sample_negatives(key: jax.Array, masked: jax.Array, num_negatives: int) -> jax.Array:
    """Indices of distractor frames for every frame: other masked frames of the same row.

    Drawn uniformly with replacement from the row's masked frames excluding the frame itself
    (so a negative is never the positive's own frame, and never padding). Rows with fewer than
    two masked frames have no valid negative: their indices are returned as -1, and the loss
    gives them logit −inf.

    Args:
      key: PRNG key.
      masked: [batch, frames] bool, the frames that are targets.
      num_negatives: K.
    Returns:
      [batch, frames, K] int32 frame indices, or -1 where no negative exists.
    """
    batch, frames = masked.shape
    count = masked.sum(axis=-1).astype(jnp.int32)  # [batch]
    # Masked frames first, in time order: order[b, r] is the r-th masked frame of row b.
    order = jnp.argsort(~masked, axis=-1, stable=True)
    rank_of_frame = jnp.cumsum(masked, axis=-1) - 1  # rank of a masked frame in its row
    pool = jnp.maximum(count - 1, 1)  # draw from the other count − 1 masked frames
    uniform = jax.random.uniform(key, (batch, frames, num_negatives))
    draw = jnp.floor(uniform * pool[:, None, None]).astype(jnp.int32)
    draw = jnp.minimum(draw, pool[:, None, None] - 1)
    # Skip over the frame's own rank (only masked frames have one).
    own = jnp.where(masked, rank_of_frame, frames)[:, :, None]
    draw = jnp.where(draw >= own, draw + 1, draw)
    indices = jax.vmap(lambda row_order, row_draw: row_order[row_draw])(order, draw)
    return jnp.where((count >= 2)[:, None, None], indices, -1).astype(jnp.int32)
