"""A converted corpus split read back (``open_converted``), yielding the layout reader's examples.

How a split is converted, and what its folder holds: ``converted_builder`` (``convert``, run by
``python -m fastvgs_jax.data.corpora.convert``); where the folder is: ``converted_layout``. Their
public names are importable from here too.
"""

from __future__ import annotations

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from fastvgs_jax.data.corpora import decode
from fastvgs_jax.data.corpora.converted_builder import (
    ConvertedConfig,
    ConvertedCorpus,
    builder_config,
    convert,
)
from fastvgs_jax.data.corpora.converted_layout import (
    BUILDER_NAME,
    COMMAND,
    COMPLETE_FILES,
    NUM_SAMPLES_FILE,
    SUBDIR,
    VERSION,
    command,
    config_name,
    converted_dir,
    index_settings,
    is_converted,
    read_metadata,
    split_slug,
    tfds_split,
    version_dir,
)
from fastvgs_jax.data.corpora.index import CorpusError

__all__ = [
    "BUILDER_NAME",
    "COMMAND",
    "COMPLETE_FILES",
    "NUM_SAMPLES_FILE",
    "SUBDIR",
    "VERSION",
    "ConvertedConfig",
    "ConvertedCorpus",
    "ConvertedSource",
    "builder_config",
    "command",
    "config_name",
    "convert",
    "converted_dir",
    "index_settings",
    "is_converted",
    "open_converted",
    "read_metadata",
    "split_slug",
    "tfds_split",
    "version_dir",
]


class ConvertedSource:
    """``len`` and ``[i]`` over a conversion, yielding ``LayoutSource``'s example dicts:

    ``audio`` [samples] int16, ``text``, ``speaker``, ``utterance_id`` (str), and for captioned
    corpora ``image_id`` (int64) with either ``image`` [size, size, 3] uint8 or ``regions``
    [R, D] float32 + ``boxes`` [R, 4] float32 (``regions``: a ``RegionFeatures``).
    """

    def __init__(
        self,
        source,
        *,
        corpus: str,
        split: str,
        path: str,
        lengths: np.ndarray,
        image_size: int | None = None,
        regions=None,
    ):
        self._source = source
        self.corpus = corpus
        self.split = split
        self.path = path
        self._lengths = lengths
        self.image_size = image_size
        self.regions = regions

    def __len__(self) -> int:
        return len(self._source)

    def num_samples(self) -> np.ndarray:
        """[examples] int64 audio lengths (from ``num_samples.npy``: no record is read)."""
        return self._lengths.copy()

    def __getitem__(self, i: int) -> dict:
        try:
            record = self._source[int(i)]
        except Exception as error:  # the array_record/proto errors are not descriptive
            raise CorpusError(
                f"record {i} of {self.corpus}/{self.split} under {self.path} is unreadable "
                f"({type(error).__name__}: {error}); the conversion is corrupt: delete "
                f"{self.path} and convert again"
            ) from error
        example = {
            "audio": record["audio"],
            "text": _text(record["text"]),
            "speaker": _text(record["speaker"]),
            "utterance_id": _text(record["utterance_id"]),
        }
        if "image_id" in record:
            example["image_id"] = np.int64(record["image_id"])
            try:
                if self.regions is not None:
                    key = _text(record["image_key"])
                    example["regions"], example["boxes"] = self.regions.lookup(key)
                elif self.image_size:
                    where = f"record {i} ({example['utterance_id']}) under {self.path}"
                    example["image"] = decode.image_from_bytes(
                        record["image"].tobytes(), self.image_size, where
                    )
            except (decode.DecodeError, KeyError) as error:
                raise CorpusError(f"{self.corpus}/{self.split} example {i}: {error}") from error
        return example

    def __repr__(self) -> str:
        return f"ConvertedSource({self.corpus}/{self.split}, {len(self)} examples, {self.path})"


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)


def open_converted(
    data_config: ml_collections.ConfigDict, corpus: str, split: str, regions=None
) -> ConvertedSource:
    """The conversion of ``corpus``/``split`` as a random-access source (what
    ``registry.open_role`` returns for ``data.corpora.<name>.format = "array_record"``).

    Images are decoded to ``data.image.size`` unless ``regions`` (a ``RegionFeatures``) is
    given. The corpus's own files are not read (only the conversion, local or ``gs://``).

    Raises:
      CorpusError: no complete conversion (naming the command that makes it), one of another
        corpus, split or sample rate, or record files that cannot be opened.
    """
    config = builder_config(corpus, split)
    path = version_dir(data_config, corpus, split)
    if not is_converted(data_config, corpus, split):
        raise CorpusError(
            f"no conversion of {corpus}/{split} at {path} (data.corpora.{corpus}.format="
            f"'array_record'); make it with `{command(data_config, corpus, split)}`"
        )
    metadata = read_metadata(path)
    if (metadata.get("corpus"), metadata.get("split")) != (corpus, split):
        raise CorpusError(
            f"{path} holds {metadata.get('corpus')}/{metadata.get('split')}, not "
            f"{corpus}/{split}; delete it and convert again"
        )
    rate, expected_rate = int(metadata.get("sample_rate", -1)), int(data_config.sample_rate)
    if rate != expected_rate:
        raise CorpusError(f"{path} holds {rate} Hz audio; the pipeline expects {expected_rate} Hz")
    try:
        # From the folder's own description (features.json): no builder code is needed.
        source = tfds.builder_from_directory(path).as_data_source(tfds_split(split))
        with (epath.Path(path) / NUM_SAMPLES_FILE).open("rb") as f:
            lengths = np.load(f)
        count = len(source)
    except Exception as error:
        raise CorpusError(
            f"cannot open the conversion of {corpus}/{split} at {path} "
            f"({type(error).__name__}: {error}); the record files are missing or truncated: "
            "delete that folder and convert again"
        ) from error
    if count != len(lengths):
        raise CorpusError(
            f"{path}: {count} records but {len(lengths)} lengths in {NUM_SAMPLES_FILE}; delete "
            "that folder and convert again"
        )
    image = data_config.get("image") or {}
    return ConvertedSource(
        source,
        corpus=corpus,
        split=split,
        path=path,
        lengths=lengths,
        image_size=int(image.get("size", 224)) if config.captioned else None,
        regions=regions,
    )
