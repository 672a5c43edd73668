"""A real corpus split converted once to ArrayRecord (TFDS, no TensorFlow), for buckets and pods.

    python -m fastvgs_jax.data.corpora.convert --config=configs/data.py \
        --corpus=spokencoco --split=test_karpathy \
        --config.corpora.spokencoco.root=/data/SpokenCOCO \
        --config.corpora.spokencoco.image_root=/data/mscoco

The layout reader (``source.LayoutSource``) opens thousands of small files per second; on a
bucket or a pod's many hosts, a few large record files read faster. ``convert`` writes the
split's checked index (``registry.open_index``: the same bad-data policy and report as the
layout path) as one TFDS dataset; ``data.corpora.<name>.format = "array_record"`` then makes
``registry.open_role`` read it through :func:`open_converted`, which yields the same example
dicts as the layout reader.

On disk (``data_dir`` local or ``gs://``; TFDS's file layer writes both)::

    <data_dir>/converted/real_corpus/<corpus>-<split slug>/<VERSION>/
        dataset_info.json, features.json   TFDS's description (written last)
        metadata.json                      the index manifest (examples, skipped, problems),
                                           the corpus, split and sample rate
        num_samples.npy                    [examples] int64 audio lengths (no decoding needed)
        real_corpus-<split>.array_record-000NN-of-000MM

e.g. ``data/converted/real_corpus/spokencoco-test_karpathy/1.0.0``. Records keep the index's
order. Audio is stored decoded (int16), images as their original file bytes (JPEGs stay
compressed), decoded, resized and centre-cropped to ``data.image.size`` when read, exactly as
the layout reader does. A conversion is written into a temporary folder that TFDS renames into
place; an interrupted one's leftovers are removed by the next ``convert`` (one conversion of a
split at a time).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Iterator

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from fastvgs_jax.data import tfds_compat
from fastvgs_jax.data.corpora import decode, registry
from fastvgs_jax.data.corpora.converted_layout import (
    BUILDER_NAME,
    COMMAND,
    COMPLETE_FILES,
    NUM_SAMPLES_FILE,
    VERSION,
    config_name,
    converted_dir,
    index_settings,
    is_converted,
    read_metadata,
    tfds_split,
    version_dir,
)
from fastvgs_jax.data.corpora.index import CorpusError, CorpusIndex, Entry

# ----------------------------------------------------------------------------------------------
# The builder


@dataclasses.dataclass(kw_only=True)
class ConvertedConfig(tfds.core.BuilderConfig):
    """One (corpus, split): made at run time by :func:`builder_config`."""

    corpus: str = ""
    split: str = ""
    captioned: bool = False


def builder_config(corpus: str, split: str) -> ConvertedConfig:
    if corpus not in registry.CORPORA:
        raise CorpusError(f"no real corpus {corpus!r}; expected one of {tuple(registry.CORPORA)}")
    return ConvertedConfig(
        name=config_name(corpus, split),
        version=VERSION,
        description=f"{corpus}/{split} converted from its published layout",
        corpus=corpus,
        split=split,
        captioned=registry.CORPORA[corpus].captioned,
    )


def _ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """``map(fn, items)`` on ``workers`` threads, in order, with a bounded number in flight."""
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 4 * max(1, workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class ConvertedCorpus(tfds.core.GeneratorBasedBuilder):
    """A real corpus split (its checked index) as ArrayRecord; see the module docstring."""

    name = BUILDER_NAME
    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES = {"1.0.0": "First conversion: decoded int16 audio, original image bytes."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "The corpus is read from its published layout at data.corpora.<name> (the manual dir "
        f"is its root); nothing is downloaded. Convert with `{COMMAND}`."
    )

    def __init__(
        self,
        *,
        index: CorpusIndex | None = None,
        sample_rate: int = decode.SAMPLE_RATE,
        num_workers: int = 16,
        **kwargs,
    ):
        self._index = index
        self._sample_rate = sample_rate
        self._num_workers = num_workers
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        # Raw bytes: TFDS would otherwise store int16 as int64 varints (see spoken_scenes).
        raw = tfds.features.Encoding.BYTES
        features = {
            "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16, encoding=raw),
            "num_samples": tfds.features.Scalar(dtype=np.int64),
            "text": tfds.features.Text(),
            "speaker": tfds.features.Text(),
            "utterance_id": tfds.features.Text(),
        }
        if self.builder_config.captioned:
            features.update(
                image_id=tfds.features.Scalar(dtype=np.int64),
                image_key=tfds.features.Text(),
                # The image file as published (JPEG bytes): decoded when read.
                image=tfds.features.Tensor(shape=(None,), dtype=np.uint8, encoding=raw),
            )
        metadata = tfds.core.MetadataDict(
            corpus=self.builder_config.corpus,
            split=self.builder_config.split,
            sample_rate=self._sample_rate,
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(features),
            metadata=metadata,
            disable_shuffling=True,  # records keep the index's order
            homepage="https://github.com/fastvgs-jax/fastvgs-jax",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the examples come from the checked index, not from downloads
        if self._index is None:
            raise ValueError("ConvertedCorpus prepares only with an index (use convert())")
        entries = self._index.entries
        self.info.metadata["index"] = self._index.manifest
        self.info.metadata["index_path"] = self._index.path
        # self.data_dir is TFDS's temporary folder here: renamed into place with the records.
        lengths = np.array([e.num_samples for e in entries], np.int64)
        with (epath.Path(self.data_dir) / NUM_SAMPLES_FILE).open("wb") as f:
            np.save(f, lengths)
        return {tfds_split(self.builder_config.split): self._generate_examples(entries)}

    def _read(self, entry: Entry) -> dict:
        try:
            audio = decode.read_audio(entry.audio, self._sample_rate)
            example = {
                "audio": audio,
                "num_samples": np.int64(audio.shape[0]),
                "text": entry.text,
                "speaker": entry.speaker,
                "utterance_id": entry.utterance_id,
            }
            if self.builder_config.captioned:
                example["image_id"] = np.int64(entry.image_id)
                example["image_key"] = entry.image_key
                example["image"] = np.frombuffer(decode.read_bytes(entry.image), np.uint8)
        except decode.DecodeError as error:
            raise CorpusError(
                f"{entry.utterance_id}: {error}; the file changed since the index at "
                f"{self._index.path} was built (delete that folder to check the corpus again)"
            ) from error
        if audio.shape[0] != entry.num_samples:
            raise CorpusError(
                f"{entry.audio} has {audio.shape[0]} samples, the index at {self._index.path} "
                f"says {entry.num_samples}: it changed since (delete that folder to check again)"
            )
        return example

    def _generate_examples(self, entries: list[Entry]):
        # Integer keys in index order: with shuffling disabled, TFDS writes them sorted.
        yield from enumerate(_ordered_map(self._read, entries, self._num_workers))


# ----------------------------------------------------------------------------------------------
# Converting


def _remove_half_built(path: epath.Path) -> None:
    """Removes an interrupted conversion's temporary folders and an incomplete version folder."""
    config_dir = path.parent
    if config_dir.exists():
        for leftover in config_dir.glob(f"incomplete.*_{VERSION}"):
            logging.warning("removing an interrupted conversion at %s", leftover)
            leftover.rmtree(missing_ok=True)
    if path.exists() and not all((path / name).exists() for name in COMPLETE_FILES):
        logging.warning("removing a half-built conversion at %s", path)
        path.rmtree(missing_ok=True)


def convert(
    data_config: ml_collections.ConfigDict,
    corpus: str,
    split: str,
    *,
    num_workers: int | None = None,
    progress: bool = True,
) -> str:
    """Converts ``corpus``/``split`` to ArrayRecord under ``<data_dir>/converted`` (see the
    module docstring) unless a complete conversion is there; returns its version folder.

    A complete conversion is reused without reading the corpus; an interrupted one's leftovers
    are removed first. ``num_workers`` threads read and decode files (default
    ``data.index_threads``). Offline: nothing is downloaded.

    Raises:
      CorpusError: the corpus's paths are not set, bad examples under the ``fail`` policy,
        a file changed since the index was built, or the existing conversion was made from
        other corpus paths (delete it to convert again).
    """
    config = builder_config(corpus, split)
    expected = index_settings(data_config, corpus, split)
    path = epath.Path(version_dir(data_config, corpus, split))
    _remove_half_built(path)
    if is_converted(data_config, corpus, split):
        recorded = read_metadata(str(path)).get("index", {}).get("settings")
        if recorded != expected:
            raise CorpusError(
                f"the conversion at {path} was made from {recorded}, not {expected}; delete "
                "that folder to convert the corpus again"
            )
        return str(path)
    index = registry.open_index(data_config, corpus, split, progress=progress)
    workers = int(num_workers or data_config.get("index_threads", 16))
    builder = ConvertedCorpus(
        config=config,
        data_dir=converted_dir(data_config),
        index=index,
        sample_rate=int(data_config.sample_rate),
        num_workers=workers,
    )
    settings = registry.corpus_settings(data_config, corpus)
    download_config = tfds.download.DownloadConfig(
        manual_dir=str(settings.get("root")), try_download_gcs=False
    )
    # TFDS makes a downloads folder even when nothing is downloaded: a temporary one.
    with (
        tempfile.TemporaryDirectory(prefix="fastvgs-convert-") as downloads,
        tfds_compat.reproducible_tfds_writes(),
    ):
        builder.download_and_prepare(
            file_format="array_record", download_dir=downloads, download_config=download_config
        )
    return str(path)
