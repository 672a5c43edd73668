"""One spoken utterance: synthesise, resample to 16 kHz, trim silence, add noise, align phones."""

from __future__ import annotations

import dataclasses
import functools
from math import gcd

import numpy as np
from scipy import signal

from fastvgs_jax.data.spoken_scenes import phones
from fastvgs_jax.data.spoken_scenes.espeak import Espeak
from fastvgs_jax.data.spoken_scenes.speakers import Speaker

SAMPLE_RATE = 16_000
# Trimming: a 10 ms frame is speech when its RMS is within this many dB of the loudest frame.
_TRIM_DB = 35.0
_TRIM_MARGIN_S = 0.03


@dataclasses.dataclass(frozen=True)
class Utterance:
    """A 16 kHz utterance with a contiguous phone alignment.

    Attributes:
      audio: int16 samples, [num_samples].
      phone_ids: indices into ``phones.INVENTORY``, [num_phones].
      phone_starts, phone_ends: sample offsets, [num_phones]; starts[0] == 0,
        ends[-1] == num_samples, ends[k] == starts[k + 1], every phone non-empty.
    """

    audio: np.ndarray
    phone_ids: np.ndarray
    phone_starts: np.ndarray
    phone_ends: np.ndarray


@dataclasses.dataclass(frozen=True)
class Variation:
    """Per-utterance deviations from a speaker's settings."""

    rate_factor: float
    pitch_shift: int
    range_shift: int
    word_gap: int  # espeak units of 10 ms
    snr_db: float
    gain: float
    # A smooth random channel: log-gain (dB) = Σ_k a_k cos(2π f_k · log2(Hz) + φ_k), [k, 3].
    channel: tuple[tuple[float, float, float], ...] = ()

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        snr_db: tuple[float, float] = (30.0, 45.0),
        channel_db: float = 0.0,
    ) -> Variation:
        """``channel_db`` > 0 adds a per-utterance channel (draws after the others, so a
        corpus without one keeps its bytes)."""
        variation = cls(
            rate_factor=float(rng.uniform(0.88, 1.12)),
            pitch_shift=int(rng.integers(-6, 7)),
            range_shift=int(rng.integers(-10, 11)),
            word_gap=int(rng.integers(0, 4)),
            snr_db=float(rng.uniform(*snr_db)),
            gain=float(rng.uniform(0.5, 0.9)),
        )
        if channel_db <= 0:
            return variation
        channel = tuple(
            (
                float(rng.uniform(-channel_db, channel_db)) / _CHANNEL_TERMS,
                float(rng.uniform(0.15, 0.6)),  # ripples per octave
                float(rng.uniform(0.0, 2 * np.pi)),
            )
            for _ in range(_CHANNEL_TERMS)
        )
        return dataclasses.replace(variation, channel=channel)


_CHANNEL_TERMS = 3


def apply_channel(x: np.ndarray, channel: tuple[tuple[float, float, float], ...]) -> np.ndarray:
    """[samples] → [samples] filtered by the channel's smooth log-gain curve (zero phase)."""
    if not channel:
        return x
    spectrum = np.fft.rfft(x)
    hz = np.maximum(np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE), 50.0)
    octaves = np.log2(hz)
    gain_db = sum(a * np.cos(2 * np.pi * f * octaves + phase) for a, f, phase in channel)
    return np.fft.irfft(spectrum * 10 ** (gain_db / 20), n=len(x))


@functools.cache
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """resample_poly's default anti-aliasing FIR (Kaiser, beta 5), designed once per ratio."""
    max_rate = max(up, down)
    half_length = 10 * max_rate
    return signal.firwin(2 * half_length + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def _resample(samples: np.ndarray, rate_in: int) -> np.ndarray:
    g = gcd(SAMPLE_RATE, rate_in)
    up, down = SAMPLE_RATE // g, rate_in // g
    window = _resampling_filter(up, down)
    return signal.resample_poly(samples.astype(np.float64), up, down, window=window)


def _speech_bounds(x: np.ndarray) -> tuple[int, int]:
    frame = SAMPLE_RATE // 100
    n = len(x) // frame
    if n == 0:
        return 0, len(x)
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -_TRIM_DB)
    margin = int(_TRIM_MARGIN_S * SAMPLE_RATE)
    start = max(0, loud[0] * frame - margin)
    end = min(len(x), (loud[-1] + 1) * frame + margin)
    return start, end


def _alignment(synthesis, num_samples_16k: int, scale: float):
    """Phone intervals at 16 kHz from espeak's onsets (a phone ends where the next starts)."""
    labels: list[str] = []
    bounds: list[float] = []
    onsets = list(synthesis.onsets * scale) + [float(num_samples_16k)]
    for k, mnemonic in enumerate(synthesis.phonemes):
        arpabet = phones.espeak_to_arpabet(mnemonic)
        start, end = onsets[k], onsets[k + 1]
        if not arpabet:  # a modifier: the previous phone absorbs its span
            continue
        step = (end - start) / len(arpabet)
        for j, phone in enumerate(arpabet):
            labels.append(phone)
            bounds.append(start + j * step)
    return labels, np.asarray(bounds + [float(num_samples_16k)])


def synthesize_utterance(
    engine: Espeak, text: str, speaker: Speaker, variation: Variation, rng: np.random.Generator
) -> Utterance:
    """Speaks ``text`` as ``speaker`` with ``variation``; ``rng`` draws the noise."""
    synthesis = engine.synthesize(
        text,
        voice=speaker.voice,
        rate_wpm=round(speaker.rate_wpm * variation.rate_factor),
        pitch=int(np.clip(speaker.pitch + variation.pitch_shift, 0, 100)),
        pitch_range=int(np.clip(speaker.pitch_range + variation.range_shift, 0, 100)),
        word_gap=variation.word_gap,
    )
    if synthesis.samples.size == 0:
        raise RuntimeError(f"espeak produced no audio for {text!r}")
    x = _resample(synthesis.samples, synthesis.sample_rate)
    scale = SAMPLE_RATE / synthesis.sample_rate
    labels, bounds = _alignment(synthesis, len(x), scale)

    start, end = _speech_bounds(x)
    x = x[start:end]
    bounds = np.clip(np.round(bounds - start), 0, end - start).astype(np.int64)

    x = apply_channel(x, variation.channel)
    peak = np.max(np.abs(x)) + 1e-9
    x = x / peak * variation.gain * 32767.0
    noise_std = np.sqrt(np.mean(x**2)) * 10 ** (-variation.snr_db / 20)
    x = x + rng.normal(0.0, noise_std, size=x.shape)
    audio = np.clip(np.round(x), -32768, 32767).astype(np.int16)

    # Drop phones emptied by trimming and merge neighbouring silences.
    ids: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    for label, s, e in zip(labels, bounds[:-1], bounds[1:], strict=True):
        if e <= s:
            continue
        pid = phones.PHONE_ID[label]
        if ids and pid == ids[-1] == phones.PHONE_ID[phones.SILENCE]:
            ends[-1] = int(e)
            continue
        ids.append(pid)
        starts.append(int(s))
        ends.append(int(e))
    if not ids:
        raise RuntimeError(f"no phones left after trimming {text!r}")
    starts[0] = 0
    ends[-1] = len(audio)
    return Utterance(
        audio=audio,
        phone_ids=np.asarray(ids, np.int32),
        phone_starts=np.asarray(starts, np.int32),
        phone_ends=np.asarray(ends, np.int32),
    )
