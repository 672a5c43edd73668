"""Decoding one utterance's audio and one image from a corpus's files (local or ``gs://``).

Audio is decoded by libsndfile (``soundfile``: wav and FLAC), never by hand; images by Pillow.
Both open files through ``etils.epath``, so bucket paths work wherever its cloud backend does.
"""

from __future__ import annotations

import io

import numpy as np
from etils import epath

SAMPLE_RATE = 16_000  # the example contract's rate; other rates are bad data, not resampled


class DecodeError(RuntimeError):
    """A corpus file is missing, unreadable or not what the example contract needs."""


def _read_bytes(path: str) -> bytes:
    try:
        return epath.Path(path).read_bytes()
    except FileNotFoundError as error:
        raise DecodeError(f"missing file {path}") from error
    except OSError as error:
        raise DecodeError(f"cannot read {path} ({error})") from error


def audio_info(path: str) -> tuple[int, int]:
    """``(sample_rate, samples)`` from the file's header (DecodeError when unreadable)."""
    import soundfile

    try:
        with epath.Path(path).open("rb") as f:
            info = soundfile.info(f)
    except FileNotFoundError as error:
        raise DecodeError(f"missing file {path}") from error
    except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
        raise DecodeError(f"unreadable audio {path} ({error})") from error
    return int(info.samplerate), int(info.frames)


def read_audio(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A mono int16 waveform [samples] at ``sample_rate``.

    Raises:
      DecodeError: naming ``path``: missing, undecodable, another rate, empty, or multichannel.
    """
    import soundfile

    data = _read_bytes(path)
    try:
        audio, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise DecodeError(f"unreadable audio {path} ({error})") from error
    if rate != sample_rate:
        raise DecodeError(f"{path} is {rate} Hz; the corpus contract is {sample_rate} Hz")
    if audio.shape[1] != 1:
        raise DecodeError(f"{path} has {audio.shape[1]} channels; expected mono")
    if audio.shape[0] == 0:
        raise DecodeError(f"{path} is empty (0 samples)")
    return audio[:, 0]


def check_image(path: str) -> None:
    """Opens the image header (cheap: no full decode); DecodeError when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with epath.Path(path).open("rb") as f, Image.open(f) as image:
            image.verify()
    except FileNotFoundError as error:
        raise DecodeError(f"missing file {path}") from error
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise DecodeError(f"unreadable image {path} ({error})") from error


def read_bytes(path: str) -> bytes:
    """A file's bytes (DecodeError naming ``path`` when missing or unreadable)."""
    return _read_bytes(path)


def read_image(path: str, size: int) -> np.ndarray:
    """uint8 RGB [size, size, 3] of the image file at ``path`` (see ``image_from_bytes``).

    Raises:
      DecodeError: naming ``path``, for a missing or undecodable image.
    """
    return image_from_bytes(_read_bytes(path), size, path)


def image_from_bytes(data: bytes, size: int, where: str = "image") -> np.ndarray:
    """uint8 RGB [size, size, 3] from an encoded image: the shorter side resized to ``size``
    (bicubic), then the centre square cropped, as ImageNet-style evaluation transforms do.

    Raises:
      DecodeError: naming ``where``, for bytes Pillow cannot decode.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            width, height = image.size
            scale = size / min(width, height)
            resized = (max(size, round(width * scale)), max(size, round(height * scale)))
            image = image.resize(resized, Image.Resampling.BICUBIC)
            left = (resized[0] - size) // 2
            top = (resized[1] - size) // 2
            image = image.crop((left, top, left + size, top + size))
            return np.asarray(image, np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise DecodeError(f"unreadable image {where} ({error})") from error
