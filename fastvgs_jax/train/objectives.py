"""The study's objectives on one batch: α·coarse + (1 − α)·SSL, from one model pass.

Glue between the model (``fastvgs_jax.models``) and the pure losses (``fastvgs_jax.losses``):
draws the span mask and negatives from a PRNG key, runs the model once, and returns every
loss term as a metric.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from fastvgs_jax.losses import coarse as coarse_losses
from fastvgs_jax.losses import wav2vec2 as w2v2_losses
from fastvgs_jax.models import fastvgs, masking, quantizer


def gumbel_temperature(config: ml_collections.ConfigDict, step: jax.Array | int) -> jax.Array:
    """The quantizer temperature at ``step`` (constant when ``decay_temperature`` is False)."""
    q = config.quantizer
    decay = q.temperature_decay if q.decay_temperature else 1.0
    return quantizer.gumbel_temperature(step, q.temperature_start, q.temperature_end, decay)


def ssl_terms(
    config: ml_collections.ConfigDict,
    outputs: fastvgs.ModelOutputs,
    masked: jax.Array,
    negatives: jax.Array,
) -> dict[str, jax.Array]:
    """wav2vec 2.0 loss terms with fairseq's scaling (see ``losses.wav2vec2``)."""
    ssl = outputs.ssl
    contrastive = w2v2_losses.contrastive_loss(
        ssl.context, ssl.targets, ssl.codes, masked, negatives, config.logit_temperature
    )
    diversity = w2v2_losses.diversity_loss(ssl.soft_probs, masked)
    penalty = outputs.encoder.feature_penalty
    total = (
        contrastive.loss
        + config.diversity_weight * diversity
        + config.feature_penalty_weight * penalty
    )
    return {
        "ssl": total,
        "contrastive": contrastive.loss,
        "diversity": diversity,
        "feature_penalty": penalty,
        "codebook_perplexity": w2v2_losses.codebook_perplexity(ssl.soft_probs, masked),
        "contrastive_accuracy": contrastive.accuracy,
        "masked_frames": contrastive.num_masked,
    }


def coarse_term(
    config: ml_collections.ConfigDict,
    outputs: fastvgs.ModelOutputs,
    image_ids: jax.Array,
    log_scale: jax.Array | None = None,
) -> jax.Array:
    """The configured coarse loss between the pooled audio and image embeddings."""
    if config.coarse.loss == "margin":
        return coarse_losses.coarse_margin_infonce(
            outputs.audio_embedding, outputs.image_embedding, image_ids, config.coarse.margin
        )
    return coarse_losses.coarse_clip_loss(
        outputs.audio_embedding, outputs.image_embedding, image_ids, log_scale
    )


def joint_loss(
    model: fastvgs.FaSTVGSPlus,
    params,
    batch_stats,
    batch: dict[str, jax.Array],
    key: jax.Array,
    step: jax.Array | int,
    alpha: jax.Array | float,
    ssl_weight: jax.Array | float | None = None,
    *,
    ssl: bool = True,
    vgs: bool = True,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict]]:
    """α·coarse + (1 − α)·SSL on one batch, in training mode.

    ``alpha`` weighs the coarse loss; ``ssl_weight`` (default 1 − α) the SSL loss, so
    separate FaST-VGS+ weights fit the same call.

    ``ssl`` / ``vgs`` are static: a phase with α = 1 skips the SSL head and the layers above
    ``vgs_layer``; α = 0 skips the VGS branch and needs no images.

    Args:
      batch: audio [batch, samples], frame_mask [batch, frames], and for VGS image
        [batch, H, W, 3] (or regions, boxes) and image_id [batch].
    Returns:
      (loss, (metrics, updated batch_stats)).
    """
    config = model.config
    k_mask, k_neg, k_dropout, k_gumbel = jax.random.split(key, 4)
    frame_mask = batch["frame_mask"]
    masked = None
    if ssl:
        m = config.masking
        masked = masking.mask_spans(k_mask, frame_mask, m.prob, m.span, m.min_spans)
    temperature = gumbel_temperature(config, step)
    outputs, updates = model.apply(
        {"params": params, "batch_stats": batch_stats},
        batch["audio"],
        frame_mask,
        batch.get("image"),
        batch.get("regions"),
        batch.get("boxes"),
        mask_positions=masked,
        temperature=temperature,
        deterministic=False,
        ssl=ssl,
        vgs=vgs,
        rngs={"dropout": k_dropout, "gumbel": k_gumbel},
        mutable=["batch_stats"],
    )
    metrics: dict[str, jax.Array] = {"gumbel_temperature": temperature}
    loss = jnp.zeros((), jnp.float32)
    if ssl:
        negatives = masking.sample_negatives(k_neg, masked, config.num_negatives)
        terms = ssl_terms(config, outputs, masked, negatives)
        metrics.update(terms)
        weight = (1.0 - alpha) if ssl_weight is None else ssl_weight
        loss = loss + weight * terms["ssl"]
    if vgs:
        log_scale = params.get("log_scale") if config.coarse.loss == "clip" else None
        coarse = coarse_term(config, outputs, batch["image_id"], log_scale)
        metrics["coarse"] = coarse
        loss = loss + alpha * coarse
    metrics["loss"] = loss
    return loss, (metrics, updates.get("batch_stats", batch_stats))
