"""Log-mel filterbank features computed in JAX (no extra dependency, runs inside jit)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(num_mels: int, fft_size: int, sample_rate: int) -> np.ndarray:
    """[fft_size // 2 + 1, num_mels] triangular HTK-mel filters from 0 Hz to Nyquist."""
    bins = fft_size // 2 + 1
    fft_hz = np.linspace(0.0, sample_rate / 2, bins)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(sample_rate / 2), num_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (fft_hz[:, None] - lower) / (centre - lower)
    falling = (upper - fft_hz[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def num_frames(num_samples: int, window: int, hop: int) -> int:
    """Frames of an unpadded framing (as a strided convolution of kernel window, stride hop)."""
    return max(0, (num_samples - window) // hop + 1)


def log_mel(
    audio: jax.Array,
    sample_rate: int = 16_000,
    num_mels: int = 80,
    window: int = 400,
    hop: int = 160,
    fft_size: int = 512,
) -> jax.Array:
    """audio: [batch, samples] → [batch, frames, num_mels] log(mel power + 1e-6).

    25 ms Hann windows every 10 ms at 16 kHz by default, without centring, so frame i covers
    samples [i·hop, i·hop + window), like the first layer of a strided conv stack.
    """
    frames = num_frames(audio.shape[-1], window, hop)
    if frames == 0:
        raise ValueError(f"audio of {audio.shape[-1]} samples is shorter than one window")
    index = np.arange(frames)[:, None] * hop + np.arange(window)[None, :]
    framed = audio.astype(jnp.float32)[:, index]  # [batch, frames, window]
    hann = np.hanning(window + 1)[:-1].astype(np.float32)  # periodic Hann
    spectrum = jnp.fft.rfft(framed * hann, n=fft_size, axis=-1)
    power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
    mel = power @ jnp.asarray(mel_filterbank(num_mels, fft_size, sample_rate))
    return jnp.log(mel + 1e-6)
