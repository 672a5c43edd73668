"""Opening built corpus splits as random-access sources, with errors that name the problem."""

from __future__ import annotations

import os

import numpy as np

from fastvgs_jax.data.corpora.index import CorpusError  # one error type for every corpus
from fastvgs_jax.data.spoken_scenes import builder as builder_lib

__all__ = ["CorpusError", "SplitSource", "decode_text", "open_builder", "open_split"]

ITEM_FILE = "abx.item"


def version_dir(data_dir: str, preset: str, seed: int = 0) -> str:
    config = builder_lib.builder_config(preset, seed)
    return os.path.join(data_dir, "spoken_scenes", config.name, builder_lib.VERSION)


class SplitSource:
    """A random-access source over one split that reports unreadable records clearly.

    Grain reads it like any ``RandomAccessDataSource`` (``len`` and ``[index]``).
    """

    def __init__(self, source, split: str, path: str):
        self._source = source
        self.split = split
        self.path = path

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict:
        try:
            return self._source[index]
        except Exception as error:  # the array_record/proto/zlib errors are not descriptive
            raise CorpusError(
                f"record {index} of split {self.split!r} under {self.path} is unreadable "
                f"({type(error).__name__}: {error}); the corpus is corrupt: delete {self.path} "
                "and build it again"
            ) from error

    def __repr__(self) -> str:
        return f"SplitSource({self.split!r}, {len(self)} records, {self.path})"


def open_builder(data_dir: str, preset: str, seed: int = 0) -> builder_lib.SpokenScenes:
    """The builder of an already built corpus (CorpusError if it is not built)."""
    path = version_dir(data_dir, preset, seed)
    if not os.path.exists(os.path.join(path, "dataset_info.json")):
        raise CorpusError(
            f"no built spoken_scenes/{preset} (seed {seed}) under {data_dir}; build it with "
            f"`python -m fastvgs_jax.data.build --size {preset} --seed {seed} "
            f"--data_dir {data_dir}`"
        )
    return builder_lib.make_builder(data_dir, preset, seed)


def open_split(
    data_dir: str, preset: str, split: str, seed: int = 0, expected_sample_rate: int = 16_000
) -> SplitSource:
    """One split of a built corpus as a random-access source.

    Raises:
      CorpusError: the corpus is not built, a record file is missing or truncated, or its
        audio is not at ``expected_sample_rate``.
    """
    builder = open_builder(data_dir, preset, seed)
    rate = int(builder.info.metadata["sample_rate"])
    if rate != expected_sample_rate:
        raise CorpusError(
            f"spoken_scenes/{preset} under {data_dir} has {rate} Hz audio; the pipeline expects "
            f"{expected_sample_rate} Hz"
        )
    if split not in builder.info.splits:
        raise CorpusError(
            f"split {split!r} not in the corpus; it has {sorted(builder.info.splits)}"
        )
    path = version_dir(data_dir, preset, seed)
    try:
        source = builder.as_data_source(split)
        len(source)
    except Exception as error:
        raise CorpusError(
            f"cannot open split {split!r} under {path} ({type(error).__name__}: {error}); "
            f"the record files are missing or truncated: delete {path} and build it again"
        ) from error
    return SplitSource(source, split, path)


def read_item_file(data_dir: str, preset: str, seed: int = 0) -> str:
    path = os.path.join(version_dir(data_dir, preset, seed), ITEM_FILE)
    if not os.path.exists(path):
        raise CorpusError(f"no ABX item file at {path}; run the corpus build again")
    with open(path) as f:
        return f.read()


def decode_text(value) -> str:
    """TFDS Text features come back as bytes from array_record sources."""
    return value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)
