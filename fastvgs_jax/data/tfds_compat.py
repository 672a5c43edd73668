"""Makes TFDS writes work without TensorFlow and byte-reproducible.

1. TFDS shuffles examples in memory up to 1 GB per split, then spills to 1,000 temporary bucket
files that it opens through ``tf.io.gfile``. Without TensorFlow that spill fails. While a
dataset is prepared, this module gives TFDS's shuffler a stand-in ``tf`` whose ``io.gfile``
is backed by ``etils.epath`` (local paths and, with gcsfs, cloud buckets) and raises the
open-file limit so the buckets fit. Where TensorFlow is installed this part is skipped.

2. TFDS serialises each record with ``SerializeToString()``, whose map-field order may differ
from one process to the next (the upb protobuf backend), so identical examples gave different
record bytes. While writing, records are serialised with ``deterministic=True``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import resource
import types

from etils import epath


class _ResourceExhaustedError(OSError):
    """Never raised by the stand-in; TFDS only catches it."""


def _gfile_stand_in() -> types.SimpleNamespace:
    gfile = types.SimpleNamespace(
        GFile=lambda path, mode="r": epath.Path(path).open(mode),
        exists=lambda path: epath.Path(path).exists(),
        remove=lambda path: epath.Path(path).unlink(),
    )
    return types.SimpleNamespace(
        io=types.SimpleNamespace(gfile=gfile),
        errors=types.SimpleNamespace(ResourceExhaustedError=_ResourceExhaustedError),
    )


def _raise_open_file_limit(wanted: int = 4096) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _serialize_deterministically(self, example) -> bytes:
    return self.get_tf_example(example).SerializeToString(deterministic=True)


@contextlib.contextmanager
def reproducible_tfds_writes():
    """Within the block, TFDS writes identical bytes for identical examples, and its shuffler
    spills to disk without TensorFlow."""
    from tensorflow_datasets.core import example_serializer, shuffle

    serializer = example_serializer.ExampleSerializer
    original_serialize = serializer.serialize_example
    original_tf = shuffle.tf
    serializer.serialize_example = _serialize_deterministically
    if importlib.util.find_spec("tensorflow") is None:
        _raise_open_file_limit()
        shuffle.tf = _gfile_stand_in()
    try:
        yield
    finally:
        serializer.serialize_example = original_serialize
        shuffle.tf = original_tf
