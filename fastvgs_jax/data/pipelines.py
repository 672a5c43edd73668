"""Grain input pipelines: audio-image batches, audio-only batches, and their interleave.

Each stream is shuffled, repeated forever, transformed per example, then batched to a fixed
shape and tagged with its kind; the mixed pipeline interleaves the batched streams (their
structures differ, so batches are mixed, never examples). Streams are keyed by name, so an
iterator state saved under one mix restores into another: at a phase switch the streams that
remain resume exactly and new ones start fresh.

Batch layouts (``B`` batch, ``L`` samples, ``F`` frames):
  audio_image: audio [B, L] f32, audio_mask [B, L] bool, frame_mask [B, F] bool,
               image [B, H, W, 3] f32 (or regions [B, R, D] f32 and boxes [B, R, 4] f32 from
               detector features), image_id [B] int64, kind "audio_image"
  audio_only:  audio [B, L] f32, audio_mask [B, L] bool, frame_mask [B, F] bool,
               kind "audio_only"
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping

import grain
import numpy as np

from fastvgs_jax.data import audio as audio_lib
from fastvgs_jax.data import sources as sources_lib
from fastvgs_jax.data.corpora import registry

AUDIO_IMAGE = "audio_image"
AUDIO_ONLY = "audio_only"
KINDS = (AUDIO_IMAGE, AUDIO_ONLY)


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """How one stream turns examples into batches."""

    batch_size: int
    crop_seconds: float
    min_seconds: float = 0.0  # shorter utterances are dropped (the reference drops < 2 s)
    sample_rate: int = 16_000
    geometry: audio_lib.FrameGeometry = audio_lib.FrameGeometry()

    @property
    def crop_samples(self) -> int:
        return round(self.crop_seconds * self.sample_rate)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.crop_seconds <= 0:
            raise ValueError(f"crop_seconds must be > 0, got {self.crop_seconds}")
        if self.geometry.num_frames(self.crop_samples) < 1:
            raise ValueError(f"a {self.crop_seconds} s crop is shorter than one frame")


@dataclasses.dataclass(frozen=True)
class Shard:
    """Which slice of every source this process reads (one per JAX process)."""

    index: int = 0
    count: int = 1

    @classmethod
    def from_jax(cls) -> Shard:
        import jax

        return cls(jax.process_index(), jax.process_count())


def _prepare_audio(example: dict, spec: StreamSpec, rng: np.random.Generator | None) -> dict:
    name = sources_lib.decode_text(example.get("utterance_id", b"utterance"))
    waveform = audio_lib.normalize_waveform(np.asarray(example["audio"]), name)
    cropped, sample_mask = audio_lib.crop_or_pad(waveform, spec.crop_samples, rng)
    return {
        "audio": cropped,
        "audio_mask": sample_mask,
        "frame_mask": spec.geometry.frame_mask(int(sample_mask.sum()), spec.crop_samples),
    }


def _audio_image_example(example: dict, rng: np.random.Generator, spec: StreamSpec) -> dict:
    out = _prepare_audio(example, spec, rng)
    if "regions" in example:  # detector features: already numbers, nothing to normalise
        out["regions"] = np.asarray(example["regions"], np.float32)
        out["boxes"] = np.asarray(example["boxes"], np.float32)
    else:
        out["image"] = audio_lib.normalize_image(np.asarray(example["image"]))
    out["image_id"] = np.int64(example["image_id"])
    return out


def _audio_only_example(example: dict, rng: np.random.Generator, spec: StreamSpec) -> dict:
    return _prepare_audio(example, spec, rng)


def long_enough_indices(source, spec: StreamSpec) -> np.ndarray:
    """Indices of the examples at least ``spec.min_seconds`` long (reads every example once).

    Raises:
      ValueError: no example is long enough (an endless stream would otherwise hang).
    """
    min_samples = spec.min_seconds * spec.sample_rate
    if hasattr(source, "num_samples"):  # real corpora: lengths from the index, no decoding
        keep = np.flatnonzero(source.num_samples() >= min_samples).astype(np.int64)
    else:
        keep = np.array(
            [i for i in range(len(source)) if source[i]["audio"].shape[0] >= min_samples],
            np.int64,
        )
    if keep.size == 0:
        raise ValueError(
            f"min_seconds={spec.min_seconds} filters out every one of the {len(source)} "
            f"examples of {source!r}"
        )
    return keep


class _ProcessRows(grain.MapDataset):
    """This process's rows of every global batch: position ``j`` of the local stream is
    position ``(j // L) * G + index * L + j % L`` of the global one (``G`` global, ``L``
    local batch size), so the global batches do not depend on the number of processes."""

    def __init__(self, parent: grain.MapDataset, global_batch: int, shard: Shard):
        super().__init__(parent)
        self._global = global_batch
        self._local = global_batch // shard.count
        self._offset = shard.index * self._local

    def __len__(self) -> int:
        return len(self._parent) // self._global * self._local

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        batch, row = divmod(index, self._local)
        return self._parent[batch * self._global + self._offset + row]

    def __str__(self) -> str:
        return f"ProcessRows(global_batch={self._global}, rows {self._offset}+{self._local})"


def _tag(kind: str):
    def tag(batch: dict) -> dict:
        return {**batch, "kind": kind}

    return tag


def training_stream(
    source,
    kind: str,
    spec: StreamSpec,
    seed: int,
    shard: Shard = Shard(),
    read_options: grain.ReadOptions | None = None,
    keep: np.ndarray | None = None,
) -> grain.IterDataset:
    """An endless, shuffled (reshuffled every epoch), randomly cropped stream of batches.

    ``spec.batch_size`` is the GLOBAL batch: every process shuffles the same global order
    and reads only its ``batch_size / shard.count`` rows of each global batch, and crops are
    seeded by global position, so a run's global batches are the same on any number of
    processes. ``keep`` (default: computed when ``spec.min_seconds`` > 0) lists the examples
    long enough to use. Batches have fixed shapes; the stream never ends.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown batch kind {kind!r}; expected one of {KINDS}")
    if spec.batch_size % shard.count:
        raise ValueError(
            f"batch_size {spec.batch_size} does not split evenly over {shard.count} processes"
        )
    per_example = _audio_image_example if kind == AUDIO_IMAGE else _audio_only_example
    if keep is None and spec.min_seconds > 0:
        keep = long_enough_indices(source, spec)
    ds = grain.MapDataset.source(source)
    if keep is not None:
        ds = grain.MapDataset.range(len(keep)).map(lambda i: source[int(keep[i])])
    ds = ds.shuffle(seed=seed).repeat(None)
    ds = ds.random_map(lambda ex, rng: per_example(ex, rng, spec), seed=seed + 1)
    if shard.count > 1:
        ds = _ProcessRows(ds, spec.batch_size, shard)
    options = read_options or grain.ReadOptions(num_threads=2, prefetch_buffer_size=64)
    local_batch = spec.batch_size // shard.count
    stream = ds.to_iter_dataset(options)
    return stream.batch(local_batch, drop_remainder=True).map(_tag(kind))


def mixed_stream(
    streams: Mapping[str, grain.IterDataset], weights: Mapping[str, float]
) -> grain.IterDataset:
    """Interleaves batched streams in proportion to ``weights`` (deterministic order).

    Streams with weight 0 are left out. Keyed by name so that a saved iterator state restores
    into a different mix (a phase switch): shared streams resume, new ones start fresh.
    """
    unknown = set(weights) - set(streams)
    if unknown:
        raise ValueError(f"weights for unknown streams {sorted(unknown)}; have {sorted(streams)}")
    if any(w < 0 for w in weights.values()):
        raise ValueError(f"mix weights must be >= 0, got {dict(weights)}")
    active = {name: streams[name] for name in streams if weights.get(name, 0.0) > 0}
    if not active:
        raise ValueError(f"all mix weights are zero: {dict(weights)}")
    # A keyed mix even for one stream, so the state layout never depends on the weights.
    return grain.IterDataset.mix(active, {name: float(weights[name]) for name in active})


def evaluation_batches(source, kind: str, spec: StreamSpec) -> grain.IterDataset:
    """One ordered pass (no shuffle, crops from the start), padded to full batches.

    Padded batches carry ``example_mask`` [B] (False on filler rows) so shapes stay fixed.
    """
    per_example = _audio_image_example if kind == AUDIO_IMAGE else _audio_only_example
    ds = grain.MapDataset.source(source).map(lambda ex: per_example(ex, None, spec))

    def stack(examples):
        count = len(examples)
        filler = [examples[-1]] * (spec.batch_size - count)
        batch = {k: np.stack([e[k] for e in examples + filler]) for k in examples[0]}
        batch["example_mask"] = np.arange(spec.batch_size) < count
        return batch

    return (
        ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=64))
        .batch(spec.batch_size, batch_fn=stack)
        .map(_tag(kind))
    )


def stream_spec(data_config, kind: str) -> StreamSpec:
    """The ``StreamSpec`` of one stream from a data config (see configs/data.py)."""
    stream = data_config[kind]
    return StreamSpec(
        batch_size=int(stream.batch_size),
        crop_seconds=float(stream.crop_seconds),
        min_seconds=float(stream.min_seconds),
        sample_rate=int(data_config.sample_rate),
        geometry=audio_lib.FrameGeometry(
            tuple(data_config.frame_kernels), tuple(data_config.frame_strides)
        ),
    )


def mixed_stream_from_config(
    data_config, weights: Mapping[str, float] | None = None, shard: Shard | None = None
) -> grain.IterDataset:
    """The mixed training pipeline a data config describes (``weights`` overrides its mix).

    Only streams with a positive weight are opened, so a VGS-free phase needs no images.
    """
    weights = dict(data_config.mix if weights is None else weights)
    shard = shard or Shard.from_jax()
    streams = {}
    for offset, kind in enumerate(KINDS):
        if weights.get(kind, 0.0) <= 0:
            continue
        source = open_stream_source(data_config, kind)
        spec = stream_spec(data_config, kind)
        streams[kind] = training_stream(
            source,
            kind,
            spec,
            # Distinct seeds per stream: equal seeds would shuffle both streams alike.
            seed=int(data_config.seed) * len(KINDS) * 2 + 2 * offset,
            shard=shard,
            read_options=grain.ReadOptions(
                num_threads=int(data_config.read_threads), prefetch_buffer_size=64
            ),
            keep=_stream_keep(data_config, kind),
        )
    return mixed_stream(streams, weights)


def open_stream_source(data_config, kind: str):
    """The random-access source that stream ``kind`` of a data config reads (its corpus and
    split from ``data.<kind>``, through the corpus registry)."""
    return registry.open_role(data_config, kind)


def _stream_keep(data_config, kind: str) -> np.ndarray | None:
    """The examples stream ``kind`` reads (None: all of its split): those at least
    ``min_seconds`` long, then its ``fraction`` of them."""
    spec = stream_spec(data_config, kind)
    keep = None
    if spec.min_seconds > 0:
        corpus, split = registry.role_config(data_config, kind)
        if corpus != registry.EMBEDDED:
            keep = long_enough_indices(open_stream_source(data_config, kind), spec)
        else:
            keep = _long_enough_in_split(
                data_config.data_dir, data_config.preset, split, int(data_config.corpus_seed), spec
            )
    fraction = float(data_config[kind].get("fraction", 1.0))
    if fraction != 1.0:
        if keep is None:
            keep = np.arange(len(open_stream_source(data_config, kind)), dtype=np.int64)
        keep = fraction_subset(keep, fraction)
    return keep


def fraction_subset(indices: np.ndarray, fraction: float) -> np.ndarray:
    """``ceil(fraction · n)`` of the ``n`` indices (at least one), in their order: the first
    ones of a fixed permutation, so that a smaller fraction's examples are among a larger
    one's, and the subset does not change with the run's seed."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data fraction {fraction}: expected a share in (0, 1]")
    indices = np.asarray(indices, np.int64)
    count = max(1, math.ceil(fraction * len(indices)))
    chosen = np.random.default_rng(0).permutation(len(indices))[:count]
    return indices[np.sort(chosen)]


def stream_size(data_config, kind: str) -> int:
    """Examples stream ``kind`` draws from: its split, after the minimum-length filter."""
    keep = _stream_keep(data_config, kind)
    return len(open_stream_source(data_config, kind)) if keep is None else len(keep)


@functools.lru_cache(maxsize=8)
def _long_enough_in_split(
    data_dir: str, preset: str, split: str, corpus_seed: int, spec: StreamSpec
) -> np.ndarray:
    """``long_enough_indices`` once per built split and threshold (a run reopens its
    streams at every phase; the scan reads the whole split)."""
    source = sources_lib.open_split(
        data_dir, preset, split, seed=corpus_seed, expected_sample_rate=spec.sample_rate
    )
    return long_enough_indices(source, spec)
