"""Frame geometry shared by the data pipeline (padding masks) and the model's frontends.

A frontend that turns samples into frames is described as a stack of strided convolutions;
both sides derive frame counts and masks from the same description.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class FrameGeometry:
    """How the audio frontend turns samples into frames (a stack of strided convolutions).

    The wav2vec2 CNN default gives a 400-sample receptive field and a 320-sample stride:
    one frame per 20 ms at 16 kHz.
    """

    kernels: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    strides: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)

    def __post_init__(self):
        if len(self.kernels) != len(self.strides) or not self.kernels:
            raise ValueError("kernels and strides must be non-empty and of equal length")

    @property
    def stride(self) -> int:
        return int(np.prod(self.strides))

    @property
    def receptive_field(self) -> int:
        field, jump = 1, 1
        for k, s in zip(self.kernels, self.strides, strict=True):
            field += (k - 1) * jump
            jump *= s
        return field

    def num_frames(self, num_samples: int) -> int:
        """Frames a valid (unpadded) convolution stack produces from ``num_samples``."""
        length = num_samples
        for k, s in zip(self.kernels, self.strides, strict=True):
            length = max(0, (length - k) // s + 1)
        return length

    def frame_mask(self, num_valid: int, num_samples: int) -> np.ndarray:
        """[frames] bool: a frame is padding if all samples it sees are padding.

        Valid samples are the prefix ``[0, num_valid)``, so frame i is real iff its first
        sample ``i * stride`` is.
        """
        starts = np.arange(self.num_frames(num_samples)) * self.stride
        return starts < num_valid
