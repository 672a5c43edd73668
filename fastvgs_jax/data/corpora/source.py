"""A checked index as a random-access source of contract examples, decoded on read.

Grain's reader threads call ``__getitem__``; each call decodes one utterance's audio (and
image or region features), so a first run needs no conversion of the corpus.
"""

from __future__ import annotations

import numpy as np

from fastvgs_jax.data.corpora import decode
from fastvgs_jax.data.corpora.index import CorpusError, CorpusIndex


class LayoutSource:
    """``len`` and ``[i]`` over a ``CorpusIndex``, yielding the example contract:

    ``audio`` [samples] int16 (16 kHz), ``text``, ``speaker``, ``utterance_id`` (str), and for
    captioned corpora ``image_id`` (int64) with either ``image`` [size, size, 3] uint8 or
    ``regions`` [R, D] float32 + ``boxes`` [R, 4] float32 (``regions``: a ``RegionFeatures``).
    """

    def __init__(
        self,
        index: CorpusIndex,
        *,
        image_size: int | None = None,
        regions=None,
        sample_rate: int = decode.SAMPLE_RATE,
    ):
        self.index = index
        self.image_size = image_size
        self.regions = regions
        self.sample_rate = sample_rate
        self.path = index.path
        self.split = index.split

    def __len__(self) -> int:
        return len(self.index.entries)

    def num_samples(self) -> np.ndarray:
        """[examples] int64 audio lengths, from the index (no decoding)."""
        return np.array([e.num_samples for e in self.index.entries], np.int64)

    def __getitem__(self, i: int) -> dict:
        entry = self.index.entries[int(i)]
        try:
            example = {
                "audio": decode.read_audio(entry.audio, self.sample_rate),
                "text": entry.text,
                "speaker": entry.speaker,
                "utterance_id": entry.utterance_id,
            }
            if entry.image:
                example["image_id"] = np.int64(entry.image_id)
                if self.regions is not None:
                    example["regions"], example["boxes"] = self.regions.lookup(entry.image_key)
                elif self.image_size:
                    example["image"] = decode.read_image(entry.image, self.image_size)
        except (decode.DecodeError, KeyError) as error:
            raise CorpusError(
                f"{self.index.corpus}/{self.index.split} example {i} ({entry.utterance_id}): "
                f"{error}; the file changed since the index at {self.path} was built (delete "
                "that folder to check the corpus again)"
            ) from error
        return example

    def __repr__(self) -> str:
        return f"LayoutSource({self.index.corpus}/{self.index.split}, {len(self)} examples)"
