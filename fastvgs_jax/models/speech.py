"""The speech encoder: a frontend (wav2vec2 CNN or log-mel + conv) and a post-LN transformer.

Follows wav2vec 2.0 base (fairseq / HF transformers layout) with FaST-VGS's learned CLS:

    waveform ─frontend→ features [B, T, C] ─LayerNorm→ (quantizer targets)
             ─Linear→ [B, T, D] ─dropout→ masked frames := mask embedding
             ─padding := 0→ prepend CLS → + grouped positional conv → LayerNorm ─dropout→
             transformer layers 1..L (every layer's output is returned)
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from fastvgs_jax.frames import FrameGeometry
from fastvgs_jax.models import conv1d, layers, logmel, vgs


def frame_geometry(config: ml_collections.ConfigDict) -> FrameGeometry:
    """Kernels and strides that the data pipeline needs for frame-level padding masks."""
    if config.frontend == "cnn":
        return FrameGeometry(tuple(config.cnn.kernels), tuple(config.cnn.strides))
    if config.frontend == "logmel":
        return FrameGeometry(
            (config.logmel.window, *config.logmel.conv_kernels),
            (config.logmel.hop, *config.logmel.conv_strides),
        )
    raise ValueError(f"unknown frontend {config.frontend!r}; expected 'cnn' or 'logmel'")


class ConvFeatureExtractor(nn.Module):
    """wav2vec2's raw-waveform CNN: conv (no bias) → [GroupNorm on layer 0] → GELU, per layer.

    ``norm="group"`` is wav2vec2-base's "default" mode: a GroupNorm with one group per channel
    after the first conv only; ``norm="layer"`` (the large models) puts a LayerNorm over
    channels after every conv.
    """

    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    norm: str = "group"
    use_bias: bool = False
    dtype: layers.Dtype = jnp.float32

    @nn.compact
    def __call__(self, audio: jax.Array, frame_mask: jax.Array | None = None) -> jax.Array:
        """audio: [batch, samples] → [batch, frames, channels[-1]] (the mask is not needed)."""
        del frame_mask
        if self.norm not in ("group", "layer"):
            raise ValueError(f"unknown CNN norm {self.norm!r}; expected 'group' or 'layer'")
        x = audio[..., None].astype(self.dtype)
        for i, (c, k, s) in enumerate(zip(self.channels, self.kernels, self.strides, strict=True)):
            x = StridedConv(c, k, s, self.use_bias, self.dtype, name=f"conv_{i}")(x)
            if self.norm == "group" and i == 0:
                x = nn.GroupNorm(
                    num_groups=c,
                    epsilon=1e-5,
                    dtype=jnp.float32,
                    scale_init=layers.partitioned(nn.initializers.ones, ("conv_out",)),
                    bias_init=layers.partitioned(nn.initializers.zeros, ("conv_out",)),
                    name="norm_0",
                )(x)
            elif self.norm == "layer":
                x = layers.layer_norm(1e-5, f"norm_{i}", "conv_out")(x)
            x = layers.gelu(x).astype(self.dtype)
        return x


class StridedConv(nn.Module):
    """A "VALID" strided conv over time with flax.linen.Conv's parameters (``kernel``
    [width, in, out], He-normal; ``bias``), computed by ``conv1d.strided_conv1d``."""

    features: int
    width: int
    stride: int
    use_bias: bool = False
    dtype: layers.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [batch, length, in] → [batch, (length − width) // stride + 1, features]."""
        kernel = self.param(
            "kernel",
            layers.partitioned(nn.initializers.he_normal(), (None, "conv_in", "conv_out")),
            (self.width, x.shape[-1], self.features),
        )
        y = conv1d.strided_conv1d(x.astype(self.dtype), kernel.astype(self.dtype), self.stride)
        if self.use_bias:
            bias = self.param(
                "bias", layers.partitioned(nn.initializers.zeros, ("conv_out",)), (self.features,)
            )
            y = y + bias.astype(self.dtype)
        return y


class LogMelFrontend(nn.Module):
    """Log-mel filterbank (computed in JAX) → normalisation → strided conv(s) + GELU → 20 ms.

    ``normalize="frame"``: a LayerNorm over each frame's mel bins (the spectral shape only:
    every frame, silence included, comes out at the same level). ``"utterance"``: per-bin mean
    and variance over the utterance's real frames (CMVN), which removes a fixed channel and
    gain but keeps the energy contour over time; it needs the frame mask.
    """

    channels: int
    num_mels: int = 80
    window: int = 400
    hop: int = 160
    fft_size: int = 512
    conv_kernels: tuple[int, ...] = (3,)
    conv_strides: tuple[int, ...] = (2,)
    normalize: str = "frame"
    sample_rate: int = 16_000
    dtype: layers.Dtype = jnp.float32

    def mel_frame_mask(self, frame_mask: jax.Array, num_mel_frames: int) -> jax.Array:
        """[batch, frames] output-frame mask → [batch, num_mel_frames]: the mel frames the
        real output frames read (at least one per utterance)."""
        needed = jnp.sum(frame_mask, axis=1)
        for k, s in reversed(list(zip(self.conv_kernels, self.conv_strides, strict=True))):
            needed = (needed - 1) * s + k
        needed = jnp.clip(needed, 1, num_mel_frames)
        return jnp.arange(num_mel_frames)[None, :] < needed[:, None]

    @nn.compact
    def __call__(self, audio: jax.Array, frame_mask: jax.Array | None = None) -> jax.Array:
        """audio: [batch, samples] (frame_mask [batch, frames]) → [batch, frames, channels]."""
        mel = logmel.log_mel(
            audio, self.sample_rate, self.num_mels, self.window, self.hop, self.fft_size
        )
        if self.normalize == "frame":
            x = layers.layer_norm(1e-5, "mel_norm", "mel")(mel).astype(self.dtype)
        elif self.normalize == "utterance":
            if frame_mask is None:
                raise ValueError("logmel.normalize='utterance' needs the frame mask")
            valid = self.mel_frame_mask(frame_mask, mel.shape[1])
            mean = vgs.masked_frame_mean(mel, valid)[:, None]
            var = vgs.masked_frame_mean(jnp.square(mel - mean), valid)[:, None]
            # Padding frames become zeros, so the conv reads nothing from them.
            x = jnp.where(valid[..., None], (mel - mean) * jax.lax.rsqrt(var + 1e-5), 0)
            x = x.astype(self.dtype)
        else:
            raise ValueError(
                f"unknown logmel.normalize {self.normalize!r}; expected 'frame' or 'utterance'"
            )
        for i, (k, s) in enumerate(zip(self.conv_kernels, self.conv_strides, strict=True)):
            x = nn.Conv(
                self.channels,
                (k,),
                (s,),
                padding="VALID",
                dtype=self.dtype,
                kernel_init=layers.partitioned(
                    nn.initializers.he_normal(), (None, "mel", "conv_out")
                ),
                bias_init=layers.partitioned(nn.initializers.zeros, ("conv_out",)),
                name=f"conv_{i}",
            )(x)
            x = layers.gelu(x)
        return x


class PositionalConv(nn.Module):
    """Grouped convolution over time with weight normalisation (g per kernel tap), + GELU.

    Same padding for an even kernel drops the last output frame, as wav2vec2 does.
    """

    kernel: int = 128
    groups: int = 16
    dtype: layers.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [batch, frames, embed] → [batch, frames, embed]."""
        embed = x.shape[-1]
        if embed % self.groups:
            raise ValueError(f"embed dim {embed} is not divisible by {self.groups} conv groups")
        fan = embed // self.groups
        # fairseq: normal(0, sqrt(4 / (kernel · embed))), then g := ||v|| per tap.
        std = (4.0 / (self.kernel * embed)) ** 0.5
        direction = self.param(
            "weight_v",
            layers.partitioned(nn.initializers.normal(std), (None, None, "embed")),
            (self.kernel, fan, embed),
        )
        magnitude = self.param(
            "weight_g",
            layers.partitioned(nn.initializers.constant(std * (fan * embed) ** 0.5), (None,)),
            (self.kernel,),
        )
        bias = self.param("bias", layers.partitioned(nn.initializers.zeros, ("embed",)), (embed,))
        norms = jnp.sqrt(jnp.sum(jnp.square(direction), axis=(1, 2), keepdims=True))
        kernel = (magnitude[:, None, None] * direction / norms).astype(self.dtype)
        pad = self.kernel // 2
        y = conv1d.grouped_conv1d(x.astype(self.dtype), kernel, pad, self.groups)
        if self.kernel % 2 == 0:
            y = y[:, :-1]
        return layers.gelu(y + bias.astype(self.dtype))


class EncoderOutput(NamedTuple):
    hidden_states: list[jax.Array]  # L+1 of [batch, (1 +) frames, embed]; [0] is the input
    features: jax.Array  # [batch, frames, channels] normalised frontend output (SSL targets)
    feature_penalty: jax.Array  # [] mean squared frontend output over real frames
    frame_mask: jax.Array  # [batch, frames] bool, True on real frames
    has_cls: bool  # whether position 0 of every hidden state is the CLS


class SpeechEncoder(nn.Module):
    """Frontend + projection + positional conv + post-LN transformer (+ learned CLS)."""

    config: ml_collections.ConfigDict
    dtype: layers.Dtype = jnp.float32

    def setup(self):
        c = self.config
        if c.frontend == "cnn":
            self.frontend = ConvFeatureExtractor(
                tuple(c.cnn.channels),
                tuple(c.cnn.kernels),
                tuple(c.cnn.strides),
                c.cnn.norm,
                c.cnn.bias,
                self.dtype,
            )
            self.frontend_dim = c.cnn.channels[-1]
        elif c.frontend == "logmel":
            self.frontend = LogMelFrontend(
                c.logmel.channels,
                c.logmel.num_mels,
                c.logmel.window,
                c.logmel.hop,
                c.logmel.fft_size,
                tuple(c.logmel.conv_kernels),
                tuple(c.logmel.conv_strides),
                c.logmel.normalize,
                dtype=self.dtype,
            )
            self.frontend_dim = c.logmel.channels
        else:
            raise ValueError(f"unknown frontend {c.frontend!r}; expected 'cnn' or 'logmel'")
        self.feature_norm = layers.layer_norm(c.layer_norm_eps, "feature_norm", "conv_out")
        self.feature_projection = layers.dense(
            c.hidden_dim, ("conv_out", "embed"), self.dtype, "feature_projection"
        )
        self.mask_embedding = self.param(
            "mask_embedding",
            layers.partitioned(nn.initializers.uniform(1.0), ("embed",)),
            (c.hidden_dim,),
        )
        if c.use_cls:
            self.cls = self.param(
                "cls", layers.partitioned(layers.LINEAR_INIT, ("embed",)), (c.hidden_dim,)
            )
        self.positional_conv = PositionalConv(c.pos_conv_kernel, c.pos_conv_groups, self.dtype)
        self.encoder_norm = layers.layer_norm(c.layer_norm_eps, "encoder_norm")
        self.transformer = layers.TransformerStack(
            c.num_layers,
            c.num_heads,
            c.mlp_dim,
            c.dropout,
            c.attention_dropout,
            c.activation_dropout,
            c.layer_norm_eps,
            c.remat,
            self.dtype,
        )
        self.input_dropout = nn.Dropout(c.feature_dropout)
        self.encoder_dropout = nn.Dropout(c.dropout)

    def __call__(
        self,
        audio: jax.Array,
        frame_mask: jax.Array,
        mask_positions: jax.Array | None = None,
        *,
        deterministic: bool = True,
        num_layers: int | None = None,
    ) -> EncoderOutput:
        """Encode a batch of waveforms.

        Args:
          audio: [batch, samples] normalised waveform (zeros on padding).
          frame_mask: [batch, frames] bool, True on real frames; ``frames`` must be what the
            frontend produces from ``samples`` (see ``frame_geometry``).
          mask_positions: [batch, frames] bool, frames replaced by the mask embedding.
          deterministic: no dropout.
          num_layers: stop after this many transformer layers (default: all).
        """
        c = self.config
        features = self.frontend(audio, frame_mask)
        if features.shape[1] != frame_mask.shape[1]:
            raise ValueError(
                f"the {c.frontend} frontend gives {features.shape[1]} frames for "
                f"{audio.shape[1]} samples but frame_mask has {frame_mask.shape[1]}; build the "
                "masks with the model's frame_geometry"
            )
        features = layers.scale_gradient(features, c.frontend_grad_scale)
        valid = frame_mask[..., None].astype(jnp.float32)
        squares = jnp.mean(jnp.square(features.astype(jnp.float32)), axis=-1, keepdims=True)
        feature_penalty = jnp.sum(squares * valid) / jnp.maximum(jnp.sum(valid), 1.0)

        features = self.feature_norm(features)
        x = self.feature_projection(features.astype(self.dtype))
        x = self.input_dropout(x, deterministic=deterministic)
        if mask_positions is not None:
            x = jnp.where(mask_positions[..., None], self.mask_embedding.astype(x.dtype), x)
        x = jnp.where(frame_mask[..., None], x, 0)
        attention_mask = frame_mask
        if c.use_cls:
            # FaST-VGS prepends the CLS before the positional conv, so it sees frame 0's
            # neighbourhood through the conv like any frame.
            cls = jnp.broadcast_to(self.cls.astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
            x = jnp.concatenate([cls, x], axis=1)
            attention_mask = jnp.pad(frame_mask, ((0, 0), (1, 0)), constant_values=True)
        x = x + self.positional_conv(x)
        x = self.encoder_norm(x).astype(self.dtype)
        x = self.encoder_dropout(x, deterministic=deterministic)
        hidden = self.transformer(x, attention_mask, deterministic, num_layers)
        return EncoderOutput(hidden, features, feature_penalty, frame_mask, bool(c.use_cls))


def frames_of(hidden: jax.Array, has_cls: bool) -> jax.Array:
    """[batch, (1 +) frames, embed] → [batch, frames, embed] (CLS removed)."""
    return hidden[:, 1:] if has_cls else hidden
