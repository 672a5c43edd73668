"""A real corpus converted to ArrayRecord reads back exactly as its layout does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from PIL import Image

from fastvgs_jax.data.config import data_config as make_data_config
from fastvgs_jax.data.corpora import converted, decode, registry
from fastvgs_jax.data.corpora.index import CorpusError
from fastvgs_jax.data.corpora.source import LayoutSource

RATE = 16_000
IMAGE_SIZE = 16
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _noise(seed: int, samples: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-20_000, 20_000, samples, dtype=np.int16)


def _write_audio(path, seed: int, samples: int, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), _noise(seed, samples), RATE, subtype="PCM_16", format=fmt)


def _write_jpeg(path, seed: int, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def make_spokencoco(base) -> tuple[str, str]:
    """SpokenCOCO_test_karpathy.json: 2 images x 2 captions; MSCOCO's val2014 file naming."""
    root, images = base / "SpokenCOCO", base / "mscoco"
    data = []
    for n, (number, size) in enumerate([(42, (40, 30)), (73, (24, 50))]):
        name = f"val2014/COCO_val2014_{number:012d}.jpg"
        _write_jpeg(images / name, seed=number, width=size[0], height=size[1])
        captions = []
        for c in range(2):
            uttid = f"U{number}_{c}"
            wav = f"wavs/val/0/{uttid}.wav"
            _write_audio(root / wav, seed=10 * n + c, samples=1_600 + 400 * c + 50 * n, fmt="WAV")
            captions.append(
                {"text": f"A CAPTION {n} {c}", "speaker": f"S{c}", "uttid": uttid, "wav": wav}
            )
        data.append({"image": name, "captions": captions})
    root.mkdir(parents=True, exist_ok=True)
    (root / "SpokenCOCO_test_karpathy.json").write_text(json.dumps({"data": data}))
    return str(root), str(images)


def make_librispeech(base) -> str:
    """dev-clean with one speaker, one chapter, two FLAC files and their transcripts."""
    root = base / "LibriSpeech"
    chapter = root / "dev-clean" / "19" / "198"
    lines = []
    for u in range(2):
        uttid = f"19-198-{u:04d}"
        _write_audio(chapter / f"{uttid}.flac", seed=100 + u, samples=2_000 + 300 * u, fmt="FLAC")
        lines.append(f"{uttid} WORDS OF UTTERANCE {u}")
    (chapter / "19-198.trans.txt").write_text("\n".join(lines) + "\n")
    return str(root)


@pytest.fixture
def config(tmp_path):
    coco_root, coco_images = make_spokencoco(tmp_path / "corpora")
    cfg = make_data_config("tiny")
    cfg.data_dir = str(tmp_path / "data")
    cfg.corpora.spokencoco.root = coco_root
    cfg.corpora.spokencoco.image_root = coco_images
    cfg.corpora.librispeech.root = make_librispeech(tmp_path / "corpora")
    cfg.image.size = IMAGE_SIZE
    cfg.index_threads = 2
    return cfg


def _layout(cfg, corpus, split) -> LayoutSource:
    captioned = registry.CORPORA[corpus].captioned
    return LayoutSource(
        registry.open_index(cfg, corpus, split, progress=False),
        image_size=IMAGE_SIZE if captioned else None,
        sample_rate=RATE,
    )


def _assert_same_examples(layout, source) -> None:
    assert len(source) == len(layout)
    np.testing.assert_array_equal(source.num_samples(), layout.num_samples())
    for i in range(len(layout)):
        want, got = layout[i], source[i]
        assert sorted(got) == sorted(want)
        assert got["audio"].dtype == np.int16
        assert got["audio"].tobytes() == want["audio"].tobytes()  # bitwise
        for key in ("text", "speaker", "utterance_id"):
            assert isinstance(got[key], str)
            assert got[key] == want[key]
        if "image_id" in want:
            assert got["image_id"] == want["image_id"]
            assert got["image"].dtype == np.uint8
            assert got["image"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
            np.testing.assert_array_equal(got["image"], want["image"])


@pytest.mark.parametrize(
    ("corpus", "split", "examples"),
    [("spokencoco", "test_karpathy", 4), ("librispeech", "dev-clean", 2)],
)
def test_converted_split_reads_back_exactly_as_its_layout(config, corpus, split, examples):
    path = converted.convert(config, corpus, split, progress=False)
    assert path == converted.version_dir(config, corpus, split)
    assert path.startswith(os.path.join(config.data_dir, "converted", "real_corpus"))
    files = sorted(os.listdir(path))
    assert {"dataset_info.json", "metadata.json", "num_samples.npy"} <= set(files)
    assert any(".array_record-" in name for name in files)
    metadata = converted.read_metadata(path)
    assert metadata["index"]["examples"] == examples
    assert metadata["index"]["skipped"] == 0
    assert metadata["index"]["problems"] == {}

    source = converted.open_converted(config, corpus, split)
    _assert_same_examples(_layout(config, corpus, split), source)
    config.corpora[corpus].format = "array_record"
    role = "audio_image" if registry.CORPORA[corpus].captioned else "audio_only"
    config[role].corpus, config[role].split = corpus, split
    through_registry = registry.open_role(config, role)
    assert isinstance(through_registry, converted.ConvertedSource)
    assert len(through_registry) == examples


def test_converted_images_stay_as_their_original_file_bytes(config):
    assert not converted.is_converted(config, "spokencoco", "test_karpathy")
    path = converted.convert(config, "spokencoco", "test_karpathy", progress=False)
    source = converted.open_converted(config, "spokencoco", "test_karpathy")
    record = source._source[0]  # noqa: SLF001 - the stored record, before decoding
    entry = registry.open_index(config, "spokencoco", "test_karpathy", progress=False).entries[0]
    with open(entry.image, "rb") as f:
        assert record["image"].tobytes() == f.read()
    assert converted.read_metadata(path)["sample_rate"] == RATE


def test_region_features_are_looked_up_by_the_image_key(config):
    class Regions:
        def lookup(self, key):
            value = float(key)
            return np.full((3, 4), value, np.float32), np.full((3, 4), -value, np.float32)

    converted.convert(config, "spokencoco", "test_karpathy", progress=False)
    source = converted.open_converted(config, "spokencoco", "test_karpathy", regions=Regions())
    layout = LayoutSource(
        registry.open_index(config, "spokencoco", "test_karpathy", progress=False),
        image_size=IMAGE_SIZE,
        regions=Regions(),
    )
    for i in range(len(layout)):
        got, want = source[i], layout[i]
        assert "image" not in got
        assert sorted(got) == sorted(want)
        np.testing.assert_array_equal(got["regions"], want["regions"])
        np.testing.assert_array_equal(got["boxes"], want["boxes"])
    assert source[0]["regions"][0, 0] == 42.0


def test_a_second_convert_reuses_the_build_without_reading_the_corpus(config, monkeypatch):
    path = converted.convert(config, "librispeech", "dev-clean", progress=False)
    info = os.path.join(path, "dataset_info.json")
    stamp = os.stat(info).st_mtime_ns

    def no_index(*args, **kwargs):
        raise AssertionError("a complete conversion must be reused")

    monkeypatch.setattr(registry, "open_index", no_index)
    assert converted.convert(config, "librispeech", "dev-clean", progress=False) == path
    assert os.stat(info).st_mtime_ns == stamp


def test_a_conversion_from_other_corpus_paths_is_not_reused(config, tmp_path):
    converted.convert(config, "librispeech", "dev-clean", progress=False)
    config.corpora.librispeech.root = make_librispeech(tmp_path / "moved")
    with pytest.raises(CorpusError, match="delete that folder"):
        converted.convert(config, "librispeech", "dev-clean", progress=False)


def test_an_interrupted_conversion_leaves_nothing_and_its_leftovers_are_removed(
    config, monkeypatch
):
    path = converted.version_dir(config, "spokencoco", "test_karpathy")
    config_dir = os.path.dirname(path)
    read_audio, calls = decode.read_audio, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise decode.DecodeError("unreadable audio (simulated)")
        return read_audio(*args, **kwargs)

    monkeypatch.setattr(decode, "read_audio", failing)
    with pytest.raises(CorpusError, match="simulated"):
        converted.convert(config, "spokencoco", "test_karpathy", num_workers=1, progress=False)
    assert not os.path.exists(path)
    monkeypatch.setattr(decode, "read_audio", read_audio)

    # What a killed process leaves: TFDS's temporary folder and a version folder without its
    # dataset_info.json (a copy to a bucket cut short).
    leftover = os.path.join(config_dir, f"incomplete.AB12CD_{converted.VERSION}")
    os.makedirs(leftover)
    with open(os.path.join(leftover, "junk.array_record-00000-of-00001"), "wb") as f:
        f.write(b"half")
    os.makedirs(path)
    with open(os.path.join(path, "metadata.json"), "w") as f:
        f.write("{}")
    with pytest.raises(CorpusError, match="no conversion"):
        converted.open_converted(config, "spokencoco", "test_karpathy")

    assert converted.convert(config, "spokencoco", "test_karpathy", progress=False) == path
    assert not os.path.exists(leftover)
    assert sorted(os.listdir(config_dir)) == [converted.VERSION]
    assert len(converted.open_converted(config, "spokencoco", "test_karpathy")) == 4


def test_a_missing_conversion_names_the_command_that_makes_it(config):
    config.corpora.spokencoco.format = "array_record"
    config.retrieval.corpus, config.retrieval.split = "spokencoco", "test_karpathy"
    with pytest.raises(CorpusError) as raised:
        registry.open_role(config, "retrieval")
    message = str(raised.value)
    assert "python -m fastvgs_jax.data.corpora.convert" in message
    assert "--corpus=spokencoco --split=test_karpathy" in message
    assert f"--config.corpora.spokencoco.root={config.corpora.spokencoco.root}" in message


def test_an_unreadable_record_names_the_conversion(config):
    path = converted.convert(config, "librispeech", "dev-clean", progress=False)
    (shard,) = [name for name in os.listdir(path) if ".array_record-" in name]
    with open(os.path.join(path, shard), "r+b") as f:
        f.truncate(64)
    with pytest.raises(CorpusError, match=path):
        source = converted.open_converted(config, "librispeech", "dev-clean")
        source[1]


def test_the_command_line_converts_and_prints_one_line(config):
    root = config.corpora.librispeech.root
    args = [
        sys.executable,
        "-m",
        "fastvgs_jax.data.corpora.convert",
        "--config=configs/data.py:tiny",
        "--corpus=librispeech",
        "--split=dev-clean",
        f"--config.data_dir={config.data_dir}",
        f"--config.corpora.librispeech.root={root}",
    ]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.strip().splitlines()[-1:]
    path = converted.version_dir(config, "librispeech", "dev-clean")
    assert line.startswith("librispeech/dev-clean: 2 examples, 0 skipped")
    assert "examples/s" in line and line.endswith(f"-> {path}")

    missing = [*args[:-1], f"--config.corpora.librispeech.root={root}-missing"]
    missing[6] = f"--config.data_dir={config.data_dir}-other"
    failed = subprocess.run(missing, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2
    (error,) = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert "no LibriSpeech subset folder" in error
