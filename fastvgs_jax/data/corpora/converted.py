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
import json
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from fastvgs_jax.data import tfds_compat
from fastvgs_jax.data.corpora import decode, registry
from fastvgs_jax.data.corpora.index import CorpusError, CorpusIndex, Entry

VERSION = "1.0.0"
BUILDER_NAME = "real_corpus"
SUBDIR = "converted"  # under data.data_dir
NUM_SAMPLES_FILE = "num_samples.npy"
COMMAND = "python -m fastvgs_jax.data.corpora.convert"
_COMPLETE = ("dataset_info.json", "metadata.json", NUM_SAMPLES_FILE)


# ----------------------------------------------------------------------------------------------
# Names and places


def split_slug(split: str) -> str:
    """``split`` as a TFDS config-name part (``train-clean-100+train-clean-360`` stays)."""
    return re.sub(r"[^\w.+-]", "_", split)


def config_name(corpus: str, split: str) -> str:
    """``spokencoco-test_karpathy``, ``librispeech-dev-clean``."""
    return f"{corpus}-{split_slug(split)}"


def tfds_split(split: str) -> str:
    """The TFDS split inside the dataset (word characters only: ``+`` would mean a union)."""
    return re.sub(r"\W", "_", split)


def converted_dir(data_config: ml_collections.ConfigDict) -> str:
    """The TFDS data dir of conversions: ``<data.data_dir>/converted``."""
    return str(epath.Path(str(data_config.data_dir)) / SUBDIR)


def version_dir(data_config: ml_collections.ConfigDict, corpus: str, split: str) -> str:
    return str(
        epath.Path(converted_dir(data_config)) / BUILDER_NAME / config_name(corpus, split) / VERSION
    )


def is_converted(data_config: ml_collections.ConfigDict, corpus: str, split: str) -> bool:
    """Whether a complete conversion of ``corpus``/``split`` is under ``data.data_dir``."""
    root = epath.Path(version_dir(data_config, corpus, split))
    return all((root / name).exists() for name in _COMPLETE)


def command(data_config: ml_collections.ConfigDict, corpus: str, split: str) -> str:
    """The command line that converts ``corpus``/``split`` for this data config."""
    settings = (data_config.get("corpora") or {}).get(corpus) or {}
    paths = registry.CORPORA[corpus].paths if corpus in registry.CORPORA else ("root",)
    overrides = [
        f"--config.corpora.{corpus}.{p}={settings.get(p)}" for p in paths if settings.get(p)
    ]
    return " ".join(
        [
            COMMAND,
            "--config=configs/data.py",
            f"--corpus={corpus}",
            f"--split={split}",
            f"--config.data_dir={data_config.data_dir}",
            *overrides,
        ]
    )


# ----------------------------------------------------------------------------------------------
# Images from their file bytes


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
    if path.exists() and not all((path / name).exists() for name in _COMPLETE):
        logging.warning("removing a half-built conversion at %s", path)
        path.rmtree(missing_ok=True)


def index_settings(data_config: ml_collections.ConfigDict, corpus: str, split: str) -> dict:
    """What identifies the index of ``corpus``/``split`` (as ``registry.open_index`` keys it)."""
    settings = registry.corpus_settings(data_config, corpus)
    paths = registry.CORPORA[corpus].paths
    return {"corpus": corpus, "split": split, **{p: str(settings.get(p, "")) for p in paths}}


def read_metadata(path: str) -> dict:
    """The metadata of the conversion at ``path`` (a version folder): ``index`` is the index
    manifest (``examples``, ``skipped``, ``problems``, ``settings``, …)."""
    return json.loads((epath.Path(path) / "metadata.json").read_text())


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


# ----------------------------------------------------------------------------------------------
# Reading


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
