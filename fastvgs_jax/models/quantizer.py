"""The Gumbel product quantizer of wav2vec 2.0: the targets of the SSL objective."""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fastvgs_jax.models import layers


class QuantizerOutput(NamedTuple):
    quantized: jax.Array  # [batch, frames, codevector_dim] (before the target projection)
    codes: jax.Array  # [batch, frames, groups] int32, the chosen entry per group
    soft_probs: jax.Array  # [batch, frames, groups, entries] softmax of the logits (no noise)


def gumbel_temperature(step: jax.Array | int, start: float, end: float, decay: float) -> jax.Array:
    """fairseq's schedule: max(end, start · decay^step). decay = 1 keeps it constant.

    log(decay) is taken in float64 on the host: 0.999995 itself is not representable in
    float32 to better than ~1e-2 relative error in (1 − decay).
    """
    log_decay = math.log(decay)
    return jnp.maximum(end, start * jnp.exp(jnp.asarray(step, jnp.float32) * log_decay))


class GumbelQuantizer(nn.Module):
    """Product quantizer: ``groups`` codebooks of ``entries`` vectors of dim codevector_dim/groups.

    Training draws a straight-through hard Gumbel sample (forward: one-hot of
    argmax(logits + g); backward: the gradient of softmax((logits + g)/τ)). Evaluation picks
    argmax(logits).
    """

    groups: int = 2
    entries: int = 320
    codevector_dim: int = 256
    # Std of the logit projection's N(0, σ²) init. 0.02 (the reference) makes the logits
    # tiny next to the Gumbel noise, so early codes are noise; fairseq and HF use 1.0.
    projection_init_std: float = 0.02

    @nn.compact
    def __call__(
        self,
        features: jax.Array,
        temperature: jax.Array | float,
        deterministic: bool,
        gumbel_noise: jax.Array | None = None,
    ) -> QuantizerOutput:
        """features: [batch, frames, channels] (the frontend's normalised, unmasked output).

        ``gumbel_noise`` ([batch, frames, groups, entries]) replaces the sampled noise, so
        tests can feed the noise another implementation drew. Otherwise training draws it
        from the ``gumbel`` RNG stream.
        """
        if self.codevector_dim % self.groups:
            raise ValueError(f"codevector_dim {self.codevector_dim} % groups {self.groups} != 0")
        batch, frames, _ = features.shape
        logits = layers.dense(
            self.groups * self.entries,
            ("conv_out", "codebook"),
            jnp.float32,
            "weight_proj",
            init_std=self.projection_init_std,
        )(features.astype(jnp.float32))
        logits = logits.reshape(batch, frames, self.groups, self.entries)
        codebook = self.param(
            "codebook",
            layers.partitioned(nn.initializers.uniform(1.0), ("groups", "codebook", None)),
            (self.groups, self.entries, self.codevector_dim // self.groups),
        )
        soft_probs = jax.nn.softmax(logits, axis=-1)
        if deterministic:
            codes = jnp.argmax(logits, axis=-1)
            weights = jax.nn.one_hot(codes, self.entries, dtype=jnp.float32)
        else:
            if gumbel_noise is None:
                gumbel_noise = jax.random.gumbel(self.make_rng("gumbel"), logits.shape)
            noisy = (logits + gumbel_noise) / temperature
            codes = jnp.argmax(noisy, axis=-1)
            soft = jax.nn.softmax(noisy, axis=-1)
            hard = jax.nn.one_hot(codes, self.entries, dtype=jnp.float32)
            weights = hard + soft - jax.lax.stop_gradient(soft)
        quantized = jnp.einsum("btgv,gvd->btgd", weights, codebook)
        quantized = quantized.reshape(batch, frames, self.codevector_dim)
        return QuantizerOutput(quantized, codes.astype(jnp.int32), soft_probs)
