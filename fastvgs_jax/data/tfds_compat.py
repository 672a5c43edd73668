"""Lets TFDS prepare large splits on machines without TensorFlow.

TFDS shuffles examples in memory up to 1 GB per split, then spills to 1,000 temporary bucket
files that it opens through ``tf.io.gfile``. Without TensorFlow that spill fails. While a
dataset is prepared, this module gives TFDS's shuffler a stand-in ``tf`` whose ``io.gfile``
is backed by ``etils.epath`` (local paths and, with gcsfs, cloud buckets) and raises the
open-file limit so the buckets fit. Where TensorFlow is installed nothing is changed.
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


@contextlib.contextmanager
def shuffler_without_tensorflow():
    """Within the block, TFDS's shuffler spills to disk without TensorFlow."""
    if importlib.util.find_spec("tensorflow") is not None:
        yield
        return
    from tensorflow_datasets.core import shuffle

    _raise_open_file_limit()
    original = shuffle.tf
    shuffle.tf = _gfile_stand_in()
    try:
        yield
    finally:
        shuffle.tf = original
