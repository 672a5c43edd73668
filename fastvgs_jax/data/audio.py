"""Per-example transforms: waveform normalisation, crop/pad with masks, image normalisation.

Pure numpy on single examples; the Grain pipelines call them per element.
Masks are True on real content and False on padding.
"""

from __future__ import annotations

import numpy as np

from fastvgs_jax.frames import FrameGeometry  # noqa: F401 (part of this module's API)

# ImageNet statistics, as the image towers of the reference expect.
IMAGE_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGE_STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalize_waveform(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """int16 or float samples → float32 with zero mean and unit variance.

    Raises:
      ValueError: naming ``name``, for empty, non-finite or constant (silent) audio.
    """
    if audio.ndim != 1:
        raise ValueError(f"{name}: expected a mono waveform [samples], got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError(f"{name}: empty waveform")
    x = audio.astype(np.float32)
    if np.issubdtype(audio.dtype, np.integer):
        x /= 32768.0
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: waveform contains NaN or infinite samples")
    std = float(x.std())
    if std < 1e-7:
        raise ValueError(f"{name}: waveform is constant (silent); cannot normalise")
    return (x - x.mean()) / std


def crop_or_pad(
    audio: np.ndarray, length: int, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """Crops (randomly if ``rng`` is given, else from the start) or zero-pads to ``length``.

    Returns:
      (audio [length], sample_mask [length] bool, True on real samples).
    """
    n = audio.shape[0]
    if n >= length:
        start = int(rng.integers(0, n - length + 1)) if rng is not None else 0
        return audio[start : start + length], np.ones(length, bool)
    padded = np.zeros(length, audio.dtype)
    padded[:n] = audio
    mask = np.zeros(length, bool)
    mask[:n] = True
    return padded, mask


def normalize_image(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] → float32 [H, W, 3], standardised per channel."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    return (image.astype(np.float32) / 255.0 - IMAGE_MEAN) / IMAGE_STD
