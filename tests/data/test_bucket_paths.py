"""Corpora in a bucket: ``gs://`` roots read through etils.epath's fsspec layer give the same
examples as the local copy (an in-memory filesystem stands in for Cloud Storage)."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from fastvgs_jax.data.config import data_config
from fastvgs_jax.data.corpora import registry
from tests.data import corpus_fixtures as fixtures


class FakeBucket(MemoryFileSystem):
    """gcsfs's path conventions (no root marker, bucket-relative paths) over memory."""

    protocol = ("gs", "gcs")
    root_marker = ""
    store: dict = {}
    pseudo_dirs = [""]

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        for prefix in ("gs://", "gcs://"):
            path = path.removeprefix(prefix)
        return super()._strip_protocol(path)

    def glob(self, path, **kwargs):
        found = super().glob(self._strip_protocol(path), **kwargs)
        return [p.lstrip("/") for p in found]  # bucket-relative, as gcsfs answers


@pytest.fixture
def bucket(monkeypatch):
    implementations = importlib.import_module("fsspec.registry")._registry
    for name in FakeBucket.protocol:  # undone after the test: real gs:// needs gcsfs
        monkeypatch.setitem(implementations, name, FakeBucket)
    FakeBucket.store.clear()
    fs = FakeBucket()
    yield fs
    FakeBucket.store.clear()


def upload(fs: FakeBucket, local: str, remote: str) -> None:
    for folder, _, names in os.walk(local):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                fs.pipe(remote + "/" + os.path.relpath(path, local), f.read())


def test_spokencoco_and_librispeech_read_from_gs_paths_as_from_disk(bucket, tmp_path):
    fixtures.make_spokencoco(str(tmp_path / "SpokenCOCO"), str(tmp_path / "coco"))
    fixtures.make_librispeech(str(tmp_path / "LibriSpeech"), "dev-clean", utterances=2)
    for name in ("SpokenCOCO", "coco", "LibriSpeech"):
        upload(bucket, str(tmp_path / name), f"bucket/{name}")

    def config(root: str, index_dir: str):
        c = data_config("tiny")
        c.data_dir, c.index_dir, c.index_threads, c.image.size = str(tmp_path), index_dir, 2, 16
        c.corpora.spokencoco.root = f"{root}/SpokenCOCO"
        c.corpora.spokencoco.image_root = f"{root}/coco"
        c.corpora.librispeech.root = f"{root}/LibriSpeech"
        c.audio_image.corpus, c.audio_image.split = "spokencoco", "test_karpathy"
        c.audio_only.corpus, c.audio_only.split = "librispeech", "dev-clean"
        return c

    local = config(str(tmp_path), str(tmp_path / "local_indexes"))
    remote = config("gs://bucket", "gs://bucket/indexes")
    for role in ("audio_image", "audio_only"):
        here, there = registry.open_role(local, role), registry.open_role(remote, role)
        assert there.path.startswith("gs://bucket/indexes/") and len(there) == len(here) > 0
        assert there.index.entries[0].audio.startswith("gs://bucket/")
        for i in range(len(here)):
            a, b = here[i], there[i]
            assert a.keys() == b.keys() and a["utterance_id"] == b["utterance_id"]
            np.testing.assert_array_equal(a["audio"], b["audio"])
            if "image" in a:
                np.testing.assert_array_equal(a["image"], b["image"])
