"""Building blocks shared by the speech, audio-pooling and image towers.

Every parameter carries logical axis names (``embed``, ``mlp``, ``heads``, ``kv``, ...) so one
rules table (``fastvgs_jax.models.sharding``) maps them onto a device mesh. Activations are
computed in ``dtype`` (fp32 or bf16) with fp32 parameters; softmax and norms run in fp32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

# wav2vec2 and BERT initialise every Linear from N(0, 0.02) with zero biases.
LINEAR_INIT = nn.initializers.normal(stddev=0.02)
_SQRT_HALF = 0.5**0.5
NEG_INF = -1e9  # additive attention bias on padded keys (finite: all-padding rows stay finite)


def partitioned(init, names: Sequence[str | None]):
    """``init`` whose parameters are boxed with logical axis ``names``."""
    return nn.with_logical_partitioning(init, tuple(names))


def gelu(x: jax.Array) -> jax.Array:
    """The exact GELU of wav2vec2 and BERT, x·Φ(x) = ½·x·(1 + erf(x/√2)), in fp32.

    Written through erf, as torch computes it, rather than ``jax.nn.gelu``'s erfc: XLA:CPU
    evaluates erfc as two branches (a polynomial and an exponential) and selects, which made
    the CNN's first-layer GELU (26 M values per 4 × 4 s batch) the step's largest elementwise
    cost. The two agree within 1e-6, as both do with torch.
    """
    x32 = x.astype(jnp.float32)
    return (0.5 * x32 * (1.0 + jax.lax.erf(x32 * _SQRT_HALF))).astype(x.dtype)


def dense(
    features: int,
    names: Sequence[str | None],
    dtype: Dtype,
    name: str,
    use_bias=True,
    init_std: float | None = None,
):
    """A Linear with N(0, 0.02) kernels (or N(0, init_std²)) and zero biases."""
    kernel_init = LINEAR_INIT if init_std is None else nn.initializers.normal(stddev=init_std)
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        kernel_init=partitioned(kernel_init, names),
        bias_init=partitioned(nn.initializers.zeros, names[-1:]),
        name=name,
    )


def layer_norm(eps: float, name: str, axis_name: str = "embed") -> nn.LayerNorm:
    # Norms compute in fp32 whatever the activation dtype: bf16 variance underflows.
    return nn.LayerNorm(
        epsilon=eps,
        dtype=jnp.float32,
        scale_init=partitioned(nn.initializers.ones, (axis_name,)),
        bias_init=partitioned(nn.initializers.zeros, (axis_name,)),
        name=name,
    )


def scale_gradient(x: jax.Array, scale: float) -> jax.Array:
    """Identity forward; multiplies the gradient by ``scale`` (fairseq's feature_grad_mult)."""
    if scale == 1.0:
        return x
    if scale == 0.0:
        return jax.lax.stop_gradient(x)
    # x − sg(x) is exactly 0 forward, so the output is exactly x; its gradient is `scale`.
    frozen = jax.lax.stop_gradient(x)
    return frozen + scale * (x - frozen)


class SelfAttention(nn.Module):
    """Multi-head self-attention with biases on q, k, v and output (wav2vec2 / BERT)."""

    num_heads: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None, deterministic: bool) -> jax.Array:
        """x: [batch, length, embed]; mask: [batch, length] bool, True on real frames."""
        embed = x.shape[-1]
        if embed % self.num_heads:
            raise ValueError(f"embed dim {embed} is not divisible by {self.num_heads} heads")
        head_dim = embed // self.num_heads

        def projection(name):
            return nn.DenseGeneral(
                (self.num_heads, head_dim),
                dtype=self.dtype,
                kernel_init=partitioned(LINEAR_INIT, ("embed", "heads", "kv")),
                bias_init=partitioned(nn.initializers.zeros, ("heads", "kv")),
                name=name,
            )

        query = projection("query")(x) * (head_dim**-0.5)
        key = projection("key")(x)
        value = projection("value")(x)
        logits = jnp.einsum("bqhd,bkhd->bhqk", query, key).astype(jnp.float32)
        if mask is not None:
            logits = logits + jnp.where(mask[:, None, None, :], 0.0, NEG_INF)
        weights = jax.nn.softmax(logits, axis=-1)
        if not deterministic and self.dropout > 0:
            weights = nn.Dropout(self.dropout)(weights, deterministic=False)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), value)
        return nn.DenseGeneral(
            embed,
            axis=(-2, -1),
            dtype=self.dtype,
            kernel_init=partitioned(LINEAR_INIT, ("heads", "kv", "embed")),
            bias_init=partitioned(nn.initializers.zeros, ("embed",)),
            name="out",
        )(out)


class TransformerLayer(nn.Module):
    """A post-LN transformer layer (wav2vec2 ``layer_norm_first=False``, BERT).

    x = LN(x + Attention(x)); x = LN(x + FFN(x)).
    """

    num_heads: int
    mlp_dim: int
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None, deterministic: bool) -> jax.Array:
        """x: [batch, length, embed] → [batch, length, embed]."""
        embed = x.shape[-1]
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        h = SelfAttention(self.num_heads, self.attention_dropout, self.dtype, name="attention")(
            x, mask, deterministic
        )
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        x = layer_norm(self.layer_norm_eps, "attention_norm")(x + h).astype(self.dtype)
        h = dense(self.mlp_dim, ("embed", "mlp"), self.dtype, "mlp_in")(x)
        h = gelu(h)
        h = nn.Dropout(self.activation_dropout)(h, deterministic=deterministic)
        h = dense(embed, ("mlp", "embed"), self.dtype, "mlp_out")(h)
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        return layer_norm(self.layer_norm_eps, "output_norm")(x + h).astype(self.dtype)


class TransformerStack(nn.Module):
    """``num_layers`` post-LN layers; returns the input and every layer's output."""

    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    remat: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        mask: jax.Array | None,
        deterministic: bool,
        num_layers: int | None = None,
    ) -> list[jax.Array]:
        """x: [batch, length, embed] → [x, layer_1(x), ...] (``num_layers`` outputs + input).

        ``num_layers`` stops early (e.g. at the VGS layer); the skipped layers still exist in
        the parameter tree when the module is initialised with the full depth.
        """
        depth = self.num_layers if num_layers is None else num_layers
        if not 0 <= depth <= self.num_layers:
            raise ValueError(f"num_layers={depth} outside [0, {self.num_layers}]")
        layer_cls = (
            nn.remat(TransformerLayer, static_argnums=(3,)) if self.remat else (TransformerLayer)
        )
        hidden = [x]
        for i in range(depth):
            x = layer_cls(
                self.num_heads,
                self.mlp_dim,
                self.dropout,
                self.attention_dropout,
                self.activation_dropout,
                self.layer_norm_eps,
                self.dtype,
                name=f"layer_{i}",
            )(x, mask, deterministic)
            hidden.append(x)
        return hidden


class ClsMlp(nn.Module):
    """The CLS head of FaST-VGS: Linear d→2d, GELU, Linear 2d→d."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [..., embed] → [..., embed]."""
        embed = x.shape[-1]
        h = dense(2 * embed, ("embed", "mlp"), self.dtype, "fc1")(x)
        return dense(embed, ("mlp", "embed"), self.dtype, "fc2")(gelu(h))
