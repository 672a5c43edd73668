"""A spoken_scenes build given bad inputs: an unknown preset, an unwritable data dir, truncated
or corrupt record files (the build itself: test_build.py)."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from fastvgs_jax.data import sources
from fastvgs_jax.data.build import ensure_built
from tests.data.test_build import PRESET, read_split, record_files, version_dir

# ---- bad inputs --------------------------------------------------------------------------------


def test_unknown_preset_fails_before_touching_the_disk(tmp_path):
    missing = tmp_path / "never"
    with pytest.raises(ValueError, match="nope"):
        ensure_built(str(missing), "nope")
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="tiny"):
        ensure_built(str(empty), "nope")
    assert list(empty.iterdir()) == []


def test_unwritable_data_dir_raises_permission_error_naming_it(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        target = locked / "data"
        if os.access(locked, os.W_OK):  # root writes anyway: a path under a regular file
            not_a_dir = tmp_path / "a_file"
            not_a_dir.write_text("")
            target = not_a_dir / "data"
        with pytest.raises(PermissionError, match=re.escape(str(target))):
            ensure_built(str(target), PRESET)
    finally:
        locked.chmod(0o700)


def _damaged_copy(tiny_data_dir: str, tmp_path, damage) -> str:
    data_dir = str(tmp_path / "data")
    shutil.copytree(tiny_data_dir, data_dir)
    damage(record_files(data_dir)["spoken_scenes-train.array_record-00000-of-00001"])
    return data_dir


def test_truncated_record_file_raises_corpus_error_naming_the_path(tiny_data_dir, tmp_path):
    def truncate(path):
        os.truncate(path, os.path.getsize(path) // 2)

    data_dir = _damaged_copy(tiny_data_dir, tmp_path, truncate)
    with pytest.raises(sources.CorpusError, match=re.escape(version_dir(data_dir))):
        read_split(data_dir, "train")


def test_corrupt_record_raises_corpus_error_when_read(tiny_data_dir, tmp_path):
    def flip_middle_bytes(path):
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            chunk = f.read(64)
            f.seek(-len(chunk), os.SEEK_CUR)
            f.write(bytes(b ^ 0xFF for b in chunk))

    data_dir = _damaged_copy(tiny_data_dir, tmp_path, flip_middle_bytes)
    source = sources.open_split(data_dir, PRESET, "train")
    with pytest.raises(sources.CorpusError, match="corrupt") as error:
        for i in range(len(source)):
            source[i]
    assert version_dir(data_dir) in str(error.value)
    assert len(read_split(data_dir, "validation")) == 20  # other splits stay readable
