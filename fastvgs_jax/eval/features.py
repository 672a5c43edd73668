"""Frame-level features for ABX: the model's layers on whole utterances, and an MFCC baseline.

Model features come from whole, uncropped, unmasked utterances (evaluation mode, no dropout):
``"frontend"`` is the frontend output after its LayerNorm (the SSL targets' input), and
``"layer_K"`` the output of the K-th transformer layer (``EncoderOutput.hidden_states[K]``,
1-based; its parameters are ``layer_{K-1}``), with the CLS removed. Frames are 20 ms apart.

Utterances are padded into a few bucket lengths (a geometric ladder) and encoded in batches,
one jitted program per bucket shape; each utterance's valid frames are cropped back out. The
features equal those of the utterance encoded alone (up to float rounding) because:

- the frame mask marks only frames whose receptive field lies inside the utterance, exactly
  the frames the unpadded utterance has, so attention never sees padding;
- the positional conv sees zeros past the end either way (masked frames are zeroed first);
- wav2vec2-base's GroupNorm after the first conv normalises every channel over TIME, so with
  padding its statistics would include the padded frames. Here such GroupNorms run with
  statistics over each utterance's valid frames only (a Flax method interceptor, only during
  feature extraction). Training does not do this (nor does the reference): there, crops are
  padded and the statistics see the padding.

``mfcc_features`` is the classic baseline: 13 MFCCs + Δ + ΔΔ, 25 ms Hamming windows every
20 ms (the CNN's frame count and rate), numpy only.
"""

from __future__ import annotations

import collections
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from fastvgs_jax.data import audio as audio_lib
from fastvgs_jax.frames import FrameGeometry
from fastvgs_jax.models import fastvgs, logmel, speech

FRONTEND = "frontend"
# Traces of each bucket encoder, keyed (model config JSON, layers); tests check one per bucket.
TRACES: collections.Counter = collections.Counter()


# --------------------------------------------------------------------------------------------
# Layer names
# --------------------------------------------------------------------------------------------


def layer_name(layer: int) -> str:
    """0 → "frontend", K ≥ 1 → "layer_K" (output of the K-th transformer layer)."""
    return FRONTEND if layer == 0 else f"layer_{layer}"


def parse_layers(spec: str | Sequence[int | str], num_layers: int) -> tuple[int, ...]:
    """Layer indices (0 = frontend, 1..L transformer layers), sorted and distinct.

    Args:
      spec: "all", or a comma-separated string / sequence of K (1-based) or "frontend"/0.
      num_layers: the model's transformer depth L.
    Raises:
      ValueError: naming an entry that is not a layer of this model.
    """
    if isinstance(spec, str):
        if spec.strip() == "all":
            return tuple(range(num_layers + 1))
        spec = [part.strip() for part in spec.split(",") if part.strip()]
    out = set()
    for entry in spec:
        if entry == FRONTEND:
            out.add(0)
            continue
        try:
            layer = int(entry)
        except (TypeError, ValueError):
            raise ValueError(
                f"layer {entry!r}: expected 'all', 'frontend' or a number in 0..{num_layers}"
            ) from None
        if not 0 <= layer <= num_layers:
            raise ValueError(f"layer {layer} outside 0..{num_layers} (0 = frontend)")
        out.add(layer)
    if not out:
        raise ValueError("no layers selected")
    return tuple(sorted(out))


# --------------------------------------------------------------------------------------------
# Buckets
# --------------------------------------------------------------------------------------------


def bucket_ladder(max_samples: int, quantum: int, growth: float = 1.25) -> list[int]:
    """Bucket lengths in samples: multiples of ``quantum`` growing by about ``growth``.

    Multiples 1, 2, 3, 4, 5, 7, 9, 12, 15, ... (growth 1.25) up to the first ≥ max_samples:
    an utterance is padded by at most ~25 %, and a corpus of 1–10 s utterances uses a handful
    of buckets (one compile each).
    """
    if quantum < 1 or growth <= 1.0:
        raise ValueError(f"need quantum >= 1 and growth > 1, got {quantum} and {growth}")
    ladder, multiple = [], 1
    while True:
        ladder.append(multiple * quantum)
        if ladder[-1] >= max_samples:
            return ladder
        multiple = max(multiple + 1, math.ceil(multiple * growth))


def assign_buckets(
    lengths: Mapping[str, int], geometry: FrameGeometry, growth: float = 1.25
) -> dict[int, list[str]]:
    """Utterance ids grouped by bucket length (samples), shortest first within a bucket.

    The quantum is 16 frames of the frontend's stride (0.32 s for 20 ms frames).
    """
    if not lengths:
        return {}
    ladder = bucket_ladder(max(lengths.values()), 16 * geometry.stride, growth)
    buckets: dict[int, list[str]] = collections.defaultdict(list)
    for name in sorted(lengths, key=lambda n: (lengths[n], n)):
        buckets[next(b for b in ladder if b >= lengths[name])].append(name)
    return dict(sorted(buckets.items()))


# --------------------------------------------------------------------------------------------
# Exact per-utterance GroupNorm statistics under padding
# --------------------------------------------------------------------------------------------


def _valid_lengths(valid_samples: jax.Array, kernels, strides) -> jax.Array:
    """[batch] valid output positions after convs (kernels, strides) of [batch] valid inputs."""
    length = valid_samples
    for k, s in zip(kernels, strides, strict=True):
        length = jnp.maximum(0, (length - k) // s + 1)
    return length


def _masked_group_norm(module: nn.GroupNorm, x: jax.Array, valid: jax.Array) -> jax.Array:
    """``module`` (a GroupNorm over [batch, time, channels]) with statistics over the first
    ``valid[b]`` time steps of each row only; padded steps are normalised with them too."""
    batch, time, channels = x.shape
    groups = module.num_groups or channels // module.group_size
    xf = x.astype(jnp.float32).reshape(batch, time, groups, channels // groups)
    mask = (jnp.arange(time)[None, :] < valid[:, None]).astype(jnp.float32)[..., None, None]
    count = jnp.maximum(valid.astype(jnp.float32), 1.0)[:, None, None, None] * xf.shape[-1]
    mean = jnp.sum(xf * mask, axis=(1, 3), keepdims=True) / count
    var = jnp.sum(jnp.square(xf - mean) * mask, axis=(1, 3), keepdims=True) / count
    y = ((xf - mean) * jax.lax.rsqrt(var + module.epsilon)).reshape(batch, time, channels)
    if module.use_scale:
        y = y * nn.meta.unbox(module.get_variable("params", "scale"))
    if module.use_bias:
        y = y + nn.meta.unbox(module.get_variable("params", "bias"))
    return y.astype(module.dtype or x.dtype)


def _frontend_norm_interceptor(valid_samples: jax.Array, kernels, strides) -> Callable:
    """A Flax interceptor replacing the frontend's GroupNorms by per-utterance masked ones.

    A GroupNorm named ``norm_i`` follows ``conv_i`` (``speech.ConvFeatureExtractor``), so its
    valid length is that of ``valid_samples`` after convs 0..i.
    """

    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if not (
            isinstance(module, nn.GroupNorm)
            and context.method_name == "__call__"
            and "frontend" in module.path
        ):
            return next_fun(*args, **kwargs)
        prefix, _, index = module.name.rpartition("_")
        if prefix != "norm" or not index.isdigit():
            raise ValueError(f"frontend GroupNorm {'/'.join(module.path)}: expected norm_<conv>")
        layer = int(index)
        valid = _valid_lengths(valid_samples, kernels[: layer + 1], strides[: layer + 1])
        return _masked_group_norm(module, args[0], valid)

    return intercept


# --------------------------------------------------------------------------------------------
# Model features
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _bucket_encoder(model_json: str, layers: tuple[int, ...]):
    """A jitted ``(variables, audio [B, L], valid_samples [B]) → {name: [B, F, dim]}``;
    it compiles once per bucket shape (variables are arguments, so trained and randomly
    initialised weights share the executable)."""
    config = ml_collections.ConfigDict(json.loads(model_json))
    model = fastvgs.FaSTVGSPlus(config)
    geometry = speech.frame_geometry(config)
    key = (model_json, layers)

    def encode(variables, audio, valid_samples):
        TRACES[key] += 1  # runs once per trace, not per call
        frames = geometry.num_frames(audio.shape[1])
        valid_frames = _valid_lengths(valid_samples, geometry.kernels, geometry.strides)
        frame_mask = jnp.arange(frames)[None, :] < valid_frames[:, None]
        intercept = _frontend_norm_interceptor(valid_samples, geometry.kernels, geometry.strides)
        with nn.intercept_methods(intercept):
            out = model.apply(
                variables, audio, frame_mask, num_layers=max(layers), method=model.hidden_states
            )
        named = {}
        for layer in layers:
            if layer == 0:
                named[FRONTEND] = out.features.astype(jnp.float32)
            else:
                hidden = speech.frames_of(out.hidden_states[layer], out.has_cls)
                named[layer_name(layer)] = hidden.astype(jnp.float32)
        return named

    return jax.jit(encode)


def _bucket_batches(names: list[str], bucket: int, batch_seconds: float, sample_rate: int):
    """Split one bucket's utterances into batches of a fixed size (one shape per bucket)."""
    size = min(len(names), max(1, int(batch_seconds * sample_rate) // bucket))
    return size, [names[i : i + size] for i in range(0, len(names), size)]


def extract_features(
    model_config: ml_collections.ConfigDict,
    variables: Mapping,
    utterances: Mapping[str, np.ndarray],
    layers: Sequence[int],
    *,
    batch_seconds: float = 64.0,
    growth: float = 1.25,
    sample_rate: int = 16_000,
    progress: bool = False,
    description: str = "features",
) -> dict[str, dict[str, np.ndarray]]:
    """Per-layer frame features of whole utterances.

    Args:
      model_config: the run config's ``model`` section.
      variables: ``{"params", "batch_stats"}`` (numpy or jax arrays, sharded ones too).
      utterances: id → raw waveform [samples] (int16 or float); each is normalised whole.
      layers: indices as ``parse_layers`` returns (0 = frontend).
      batch_seconds: padded audio per batch; a bucket's batch size is this over its length.
      growth: bucket ladder growth (see ``bucket_ladder``).
      progress: show a progress bar over batches.
    Returns:
      ``{layer_name: {utterance id: [frames, dim] float32}}`` with ``frames =
      frame_geometry(model_config).num_frames(samples)`` (one per 20 ms).
    Raises:
      ValueError: naming an utterance shorter than one frame, or a bad layer.
    """
    layers = parse_layers(list(layers), int(model_config.num_layers))
    geometry = speech.frame_geometry(model_config)
    normalised = {
        name: audio_lib.normalize_waveform(np.asarray(a), name) for name, a in utterances.items()
    }
    for name, wave in normalised.items():
        if geometry.num_frames(wave.shape[0]) < 1:
            raise ValueError(
                f"{name}: {wave.shape[0]} samples are shorter than one frame "
                f"({geometry.receptive_field} samples)"
            )
    encode = _bucket_encoder(model_config.to_json(), layers)
    buckets = assign_buckets({n: w.shape[0] for n, w in normalised.items()}, geometry, growth)
    plan = [
        (bucket, size, group)
        for bucket, names in buckets.items()
        for size, groups in [_bucket_batches(names, bucket, batch_seconds, sample_rate)]
        for group in groups
    ]
    out: dict[str, dict[str, np.ndarray]] = {layer_name(layer): {} for layer in layers}
    for bucket, size, group in tqdm(plan, desc=description, disable=not progress, leave=False):
        audio = np.zeros((size, bucket), np.float32)
        valid = np.zeros(size, np.int32)
        for row in range(size):
            wave = normalised[group[min(row, len(group) - 1)]]  # filler rows repeat the last
            audio[row, : wave.shape[0]] = wave
            valid[row] = wave.shape[0]
        named = jax.device_get(encode(variables, jax.device_put(audio), jax.device_put(valid)))
        for row, name in enumerate(group):
            frames = geometry.num_frames(int(valid[row]))
            for key, values in named.items():
                # A copy, so the padded batch is not kept alive by views into it.
                out[key][name] = np.array(values[row, :frames], np.float32)
    return out


# --------------------------------------------------------------------------------------------
# MFCC baseline
# --------------------------------------------------------------------------------------------


def frame_signal(signal: np.ndarray, window: int, hop: int) -> np.ndarray:
    """[samples] → [frames, window], frame i = samples [i·hop, i·hop + window) (no centring)."""
    frames = (signal.shape[0] - window) // hop + 1
    if frames < 1:
        raise ValueError(f"{signal.shape[0]} samples are shorter than one {window}-sample window")
    index = np.arange(frames)[:, None] * hop + np.arange(window)[None, :]
    return signal[index]


def log_mel_energies(
    audio: np.ndarray,
    sample_rate: int = 16_000,
    *,
    num_filters: int = 40,
    window_ms: float = 25.0,
    hop_ms: float = 20.0,
    fft_size: int = 512,
    preemphasis: float = 0.97,
) -> np.ndarray:
    """[samples] waveform → [frames, num_filters] log mel filterbank energies (float64).

    Pre-emphasis, Hamming windows, power spectrum, HTK-mel triangles from 0 Hz to Nyquist
    (``models.logmel.mel_filterbank``), natural log with a floor.
    """
    x = np.asarray(audio)
    x = x.astype(np.float64) / 32768.0 if np.issubdtype(x.dtype, np.integer) else x.astype(float)
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform [samples], got shape {x.shape}")
    emphasised = np.concatenate([x[:1], x[1:] - preemphasis * x[:-1]])
    window = round(window_ms * sample_rate / 1000)
    hop = round(hop_ms * sample_rate / 1000)
    if window > fft_size:
        raise ValueError(f"a {window}-sample window does not fit a {fft_size}-point FFT")
    frames = frame_signal(emphasised, window, hop) * np.hamming(window)
    power = np.abs(np.fft.rfft(frames, n=fft_size, axis=-1)) ** 2 / fft_size
    filters = logmel.mel_filterbank(num_filters, fft_size, sample_rate).astype(np.float64)
    # The floor keeps digital silence finite (log 0); far below any real band energy.
    return np.log(np.maximum(power @ filters, 1e-10))


def dct_matrix(num_inputs: int, num_outputs: int) -> np.ndarray:
    """[num_inputs, num_outputs] orthonormal DCT-II: ``x @ D`` = scipy's dct(x, 2, 'ortho')[:n]."""
    n = np.arange(num_inputs)[:, None]
    k = np.arange(num_outputs)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * num_inputs)) * np.sqrt(2.0 / num_inputs)
    basis[:, 0] /= np.sqrt(2.0)
    return basis


def deltas(features: np.ndarray, window: int = 2) -> np.ndarray:
    """Regression deltas over time: d_t = Σ_n n (c_{t+n} − c_{t−n}) / (2 Σ_n n²), n = 1..N.

    Edges repeat the first/last frame (so a constant signal has zero deltas everywhere).
    Args: features [frames, dim]. Returns [frames, dim].
    """
    frames = features.shape[0]
    padded = np.pad(features, ((window, window), (0, 0)), mode="edge")
    out = np.zeros_like(features, dtype=np.float64)
    for n in range(1, window + 1):
        out += n * (
            padded[window + n : window + n + frames] - padded[window - n : window - n + frames]
        )
    return out / (2 * sum(n * n for n in range(1, window + 1)))


def mfcc_features(
    audio: np.ndarray,
    sample_rate: int = 16_000,
    *,
    num_ceps: int = 13,
    num_filters: int = 40,
    delta_window: int = 2,
) -> np.ndarray:
    """13 MFCCs + Δ + ΔΔ every 20 ms (50 Hz, like the model's frames).

    Args:
      audio: [samples] int16 or float waveform.
    Returns:
      [frames, 3 · num_ceps] float32, ``frames = (samples − 400) // 320 + 1`` at 16 kHz (the
      wav2vec2 CNN's count).
    """
    energies = log_mel_energies(audio, sample_rate, num_filters=num_filters)
    ceps = energies @ dct_matrix(num_filters, num_ceps)
    delta = deltas(ceps, delta_window)
    return np.concatenate([ceps, delta, deltas(delta, delta_window)], axis=1).astype(np.float32)
