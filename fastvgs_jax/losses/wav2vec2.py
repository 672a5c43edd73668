"""The wav2vec 2.0 objective: contrastive prediction of quantized targets, plus regularisers.

Scaling follows fairseq after its division by the number of masked frames N:
``contrastive (mean over masked frames) + diversity_weight · diversity + penalty_weight ·
feature_penalty``. (HF transformers reports sums over masked frames instead; multiply by N.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class ContrastiveOutput(NamedTuple):
    loss: jax.Array  # [] mean cross-entropy over masked frames
    logits: jax.Array  # [batch, frames, 1 + K] cosine / temperature; positive at index 0
    accuracy: jax.Array  # [] share of masked frames whose positive scores highest
    num_masked: jax.Array  # [] masked frames in the batch


def unit_vectors(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """x / max(‖x‖, eps) along the last axis, in fp32, with finite gradients at x = 0."""
    x = x.astype(jnp.float32)
    # rsqrt of a clamped squared norm: the gradient of norm() itself is NaN at 0.
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def contrastive_loss(
    context: jax.Array,
    targets: jax.Array,
    codes: jax.Array,
    masked: jax.Array,
    negatives: jax.Array,
    temperature: float = 0.1,
) -> ContrastiveOutput:
    """Cross-entropy of each masked frame's true target against K distractors.

    Cosine similarities of all frame pairs of an utterance are computed once
    ([batch, frames, frames]) and the distractors' scores gathered from them, rather than
    gathering K target vectors per frame. A distractor whose codes equal the positive's
    (hence the same quantized vector), or index -1 (no distractor exists), scores −inf.

    Args:
      context: [batch, frames, dim] transformer outputs projected to the target space.
      targets: [batch, frames, dim] projected quantized targets.
      codes: [batch, frames, groups] int codebook choices behind ``targets``.
      masked: [batch, frames] bool, the frames that are predicted.
      negatives: [batch, frames, K] int frame indices (``masking.sample_negatives``).
      temperature: logits = cosine / temperature.
    """
    similarity = jnp.einsum("btd,bsd->bts", unit_vectors(context), unit_vectors(targets))
    positive = jnp.diagonal(similarity, axis1=1, axis2=2)[..., None]  # [b, t, 1]
    safe = jnp.maximum(negatives, 0)
    negative = jnp.take_along_axis(similarity, safe, axis=-1)  # [b, t, K]
    negative_codes = jax.vmap(lambda c, i: c[i])(codes, safe)  # [b, t, K, groups]
    same_as_positive = jnp.all(negative_codes == codes[:, :, None, :], axis=-1)
    invalid = same_as_positive | (negatives < 0)
    logits = jnp.concatenate([positive, jnp.where(invalid, -jnp.inf, negative)], -1)
    logits = logits / temperature
    nll = -jax.nn.log_softmax(logits, axis=-1)[..., 0]
    weight = masked.astype(jnp.float32)
    num_masked = jnp.sum(weight)
    denominator = jnp.maximum(num_masked, 1.0)
    loss = jnp.sum(jnp.where(masked, nll, 0.0)) / denominator
    correct = (jnp.argmax(logits, axis=-1) == 0) & masked
    accuracy = jnp.sum(correct) / denominator
    return ContrastiveOutput(loss, logits, accuracy, num_masked)


def codebook_perplexity(soft_probs: jax.Array, masked: jax.Array) -> jax.Array:
    """Sum over groups of exp(entropy) of the codebook usage averaged over masked frames.

    Args:
      soft_probs: [batch, frames, groups, entries] softmax over entries (no Gumbel noise).
      masked: [batch, frames] bool, frames that count.
    Returns:
      [] perplexity, between ``groups`` (collapse) and ``groups · entries`` (uniform use).
    """
    weight = masked.astype(jnp.float32)[..., None, None]
    mean = jnp.sum(soft_probs * weight, axis=(0, 1)) / jnp.maximum(jnp.sum(weight), 1.0)
    entropy = -jnp.sum(mean * jnp.log(mean + 1e-7), axis=-1)  # [groups]
    return jnp.sum(jnp.exp(entropy))


def diversity_loss(soft_probs: jax.Array, masked: jax.Array) -> jax.Array:
    """(G·V − perplexity) / (G·V): 0 when every entry of every codebook is used equally."""
    groups, entries = soft_probs.shape[-2:]
    total = groups * entries
    return (total - codebook_perplexity(soft_probs, masked)) / total
