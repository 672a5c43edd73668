"""The corpus difficulty probe's model: a log-mel speech encoder, an image CNN (or the
attribute MLP), the dual encoder and its CLIP-style loss (the probe itself:
corpus_difficulty_probe.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fastvgs_jax.data.spoken_scenes import scenes

SAMPLE_RATE = 16_000
# Log-mel frontend: 25 ms Hann windows every 10 ms, zero-padded to a 512-point FFT.
WINDOW = 400
HOP = 160
FFT_SIZE = 512
NUM_MELS = 80
LOG_FLOOR = 1e-6

EMBED_DIM = 256
INIT_LOG_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature
MAX_LOG_SCALE = math.log(100.0)  # CLIP's cap: an unbounded scale destabilises training
MASKED_LOGIT = -1e9  # excludes same-image pairs from the negatives

Params = Any


# ----------------------------------------------------------------------------------------------
# Log-mel frontend (inside the jitted step, so the host only reads and crops waveforms)


def mel_filterbank(
    num_mels: int = NUM_MELS, fft_size: int = FFT_SIZE, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """[fft_size // 2 + 1, num_mels] triangular HTK-mel filters from 0 Hz to Nyquist."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    bin_hz = np.linspace(0.0, sample_rate / 2, fft_size // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(0.0, hz_to_mel(np.float64(sample_rate / 2)), num_mels + 2))
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bin_hz[:, None] - lower) / (centre - lower)
    falling = (upper - bin_hz[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def num_frames(num_samples: int) -> int:
    """Frames of a valid (uncentred) framing of ``num_samples``."""
    return max(0, (num_samples - WINDOW) // HOP + 1)


def log_mel(
    audio: jax.Array, audio_mask: jax.Array, normalize: str = "utterance"
) -> tuple[jax.Array, jax.Array]:
    """Normalised log-mel features: per bin over the utterance, or per frame (--normalize).

    Args:
      audio: [B, L] float32 waveform at 16 kHz.
      audio_mask: [B, L] bool, True on real samples (a prefix).

    Returns:
      (features [B, F, 80] float32, zero on padding frames; frame_mask [B, F] bool), with
      ``F = (L - 400) // 160 + 1``. A frame is real if all its samples are (at least one frame
      per utterance is kept, so the normalisation never divides by zero frames).
    """
    frames_total = num_frames(audio.shape[1])
    starts = np.arange(frames_total)[:, None] * HOP
    frames = audio[:, starts + np.arange(WINDOW)[None, :]]  # [B, F, WINDOW]
    window = np.hanning(WINDOW + 1)[:-1].astype(np.float32)  # periodic Hann
    spectrum = jnp.fft.rfft(frames * window, n=FFT_SIZE)  # [B, F, FFT_SIZE // 2 + 1]
    power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
    features = jnp.log(power @ mel_filterbank() + LOG_FLOOR)  # [B, F, NUM_MELS]

    valid_samples = audio_mask.sum(axis=1)
    valid_frames = jnp.maximum(1, (valid_samples - WINDOW) // HOP + 1)
    frame_mask = jnp.arange(frames_total)[None, :] < valid_frames[:, None]  # [B, F]
    weights = frame_mask[..., None].astype(features.dtype)
    if normalize == "frame":
        mean = features.mean(axis=-1, keepdims=True)
        var = ((features - mean) ** 2).mean(axis=-1, keepdims=True)
    else:
        count = weights.sum(axis=1, keepdims=True)
        mean = (features * weights).sum(axis=1, keepdims=True) / count
        var = (((features - mean) * weights) ** 2).sum(axis=1, keepdims=True) / count
    features = (features - mean) * jax.lax.rsqrt(var + 1e-5) * weights
    return features, frame_mask


# ----------------------------------------------------------------------------------------------
# Model


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """[B, T, D] and [B, T] bool -> [B, D], the mean over True positions."""
    weights = mask[..., None].astype(x.dtype)
    return (x * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


def l2_normalize(x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.maximum((x * x).sum(axis=-1, keepdims=True), 1e-12))


class SpeechEncoder(nn.Module):
    """Log-mel -> 1-D conv stack -> masked mean pool -> [B, EMBED_DIM] (not normalised)."""

    widths: Sequence[int] = (256, 256, 256, 256)
    kernels: Sequence[int] = (5, 5, 3, 3)
    strides: Sequence[int] = (2, 2, 1, 1)  # 10 ms -> 40 ms frames: cheap, still word-scale
    normalize: str = "utterance"  # log-mel CMVN per utterance, or per frame

    @nn.compact
    def __call__(self, audio: jax.Array, audio_mask: jax.Array) -> jax.Array:
        """audio, audio_mask: [B, L] -> [B, EMBED_DIM]."""
        x, mask = log_mel(audio, audio_mask, self.normalize)
        for width, kernel, stride in zip(self.widths, self.kernels, self.strides, strict=True):
            x = nn.Conv(width, (kernel,), strides=(stride,), padding="SAME")(x)
            # SAME padding with stride s keeps output frame j at input frame j * s.
            mask = mask[:, ::stride]
            x = nn.gelu(nn.LayerNorm()(x))
            # Zero padding frames so the next convolution does not read features from them.
            x = x * mask[..., None]
        return nn.Dense(EMBED_DIM)(masked_mean(x, mask))


class AttributeImageEncoder(nn.Module):
    """Ground-truth attribute multi-hot [B, A] -> MLP -> [B, EMBED_DIM] (--image_input)."""

    @nn.compact
    def __call__(self, attributes: jax.Array) -> jax.Array:
        return nn.Dense(EMBED_DIM)(nn.gelu(nn.Dense(256)(attributes)))


def attribute_table(*split_sources: Any) -> np.ndarray:
    """[max image_id + 1, A]: every image's attribute multi-hot (``scenes.attribute_targets``
    over the full vocabulary), indexed by image_id."""
    rows: dict[int, np.ndarray] = {}
    for source in split_sources:
        for index in range(len(source)):
            example = source[index]
            scene = example["scene"]
            scene = scene.decode() if isinstance(scene, bytes) else str(scene)
            scene = scenes.Scene.from_json_dict(json.loads(scene))
            targets = scenes.attribute_targets(scene, scenes.SceneVocabulary())
            rows.setdefault(int(example["image_id"]), targets)
    table = np.zeros((max(rows) + 1, len(next(iter(rows.values())))), np.float32)
    for image_id, row in rows.items():
        table[image_id] = row
    return table


class ImageEncoder(nn.Module):
    """Strided CNN -> global average pool -> [B, EMBED_DIM] (not normalised)."""

    widths: Sequence[int] = (32, 64, 128, 256)

    @nn.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        """image: [B, H, W, 3] -> [B, EMBED_DIM]."""
        x = image
        for width in self.widths:
            x = nn.Conv(width, (3, 3), strides=(2, 2), padding="SAME")(x)
            x = nn.gelu(nn.LayerNorm()(x))
        return nn.Dense(EMBED_DIM)(x.mean(axis=(1, 2)))


class DualEncoder(nn.Module):
    """Both towers and the learned logit scale (log of the inverse temperature)."""

    normalize: str = "utterance"  # --normalize
    image_input: str = "pixels"  # --image_input

    def setup(self) -> None:
        self.speech = SpeechEncoder(normalize=self.normalize)
        self.image = AttributeImageEncoder() if self.image_input == "attributes" else ImageEncoder()
        self.log_scale = self.param("log_scale", nn.initializers.constant(INIT_LOG_SCALE), ())

    def encode_speech(self, audio: jax.Array, audio_mask: jax.Array) -> jax.Array:
        """[B, L] -> [B, EMBED_DIM], unit norm."""
        return l2_normalize(self.speech(audio, audio_mask))

    def encode_image(self, image: jax.Array) -> jax.Array:
        """[B, H, W, 3] -> [B, EMBED_DIM], unit norm."""
        return l2_normalize(self.image(image))

    def __call__(
        self, audio: jax.Array, audio_mask: jax.Array, image: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(speech [B, D], image [B, D], logit scale []) for a batch of pairs."""
        scale = jnp.exp(jnp.clip(self.log_scale, 0.0, MAX_LOG_SCALE))
        return self.encode_speech(audio, audio_mask), self.encode_image(image), scale


# ----------------------------------------------------------------------------------------------
# Loss and training step


def contrastive_loss(
    speech: jax.Array, image: jax.Array, image_id: jax.Array, scale: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Symmetric InfoNCE over in-batch negatives.

    Args:
      speech, image: [B, D] unit-norm embeddings; row b of each is a matching pair.
      image_id: [B] int; rows sharing an id are captions of the same image. Their off-diagonal
        pairs are true matches, so they are masked out rather than pushed apart as negatives.
      scale: [] logit scale.

    Returns:
      (loss [], metrics: speech->image and image->speech in-batch top-1 accuracy).
    """
    logits = scale * speech @ image.T  # [B, B], speech rows x image columns
    same_image = image_id[:, None] == image_id[None, :]
    diagonal = jnp.eye(logits.shape[0], dtype=bool)
    logits = jnp.where(same_image & ~diagonal, MASKED_LOGIT, logits)
    labels = jnp.arange(logits.shape[0])
    s2i = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    i2s = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
    metrics = {
        "batch_s2i_acc": (logits.argmax(axis=1) == labels).mean(),
        "batch_i2s_acc": (logits.argmax(axis=0) == labels).mean(),
    }
    return 0.5 * (s2i + i2s), metrics
