"""Building spoken_scenes/tiny with TFDS: determinism, metadata, alignments, speakers, the ABX
item file, idempotence, and the --show / command-line paths (bad inputs:
test_build_errors.py)."""

from __future__ import annotations

import collections
import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io.wavfile

from fastvgs_jax.data import abx_items, sources
from fastvgs_jax.data.build import ensure_built, show_examples
from fastvgs_jax.data.spoken_scenes import builder as builder_lib
from fastvgs_jax.data.spoken_scenes import corpus, phones, speakers

PRESET = "tiny"
RATE = 16_000
SPEECH_FIELDS = ("audio", "phone_ids", "phone_starts", "phone_ends")


def version_dir(data_dir: str, seed: int = 0) -> str:
    return sources.version_dir(data_dir, PRESET, seed)


def record_files(data_dir: str, seed: int = 0) -> dict[str, str]:
    """File name -> path of every array_record file of a build."""
    paths = sorted(glob.glob(os.path.join(version_dir(data_dir, seed), "*.array_record-*")))
    return {os.path.basename(p): p for p in paths}


def read_split(data_dir: str, split: str, seed: int = 0) -> list[dict]:
    source = sources.open_split(data_dir, PRESET, split, seed)
    return [source[i] for i in range(len(source))]


def metadata(data_dir: str, seed: int = 0) -> dict:
    with open(os.path.join(version_dir(data_dir, seed), "metadata.json")) as f:
        return json.load(f)


def mtimes(data_dir: str) -> dict[str, int]:
    return {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(version_dir(data_dir), "*"))}


def speech_differences(dir_a: str, dir_b: str) -> list[str]:
    """Asserts two builds agree on all but speech; returns the splits whose speech differs."""
    differing = []
    for split in corpus.SPLITS:
        a, b = read_split(dir_a, split), read_split(dir_b, split)
        assert [x["utterance_id"] for x in a] == [y["utterance_id"] for y in b], split
        for x, y in zip(a, b, strict=True):
            assert set(x) == set(y)
            for field in set(x) - set(SPEECH_FIELDS):
                np.testing.assert_array_equal(x[field], y[field], err_msg=f"{split} {field}")
        if any(
            not np.array_equal(x[f], y[f]) for x, y in zip(a, b, strict=True) for f in SPEECH_FIELDS
        ):
            differing.append(split)
    return differing


def utterance_order(settings: corpus.CorpusSettings, split: str) -> list[str]:
    plan = corpus.plan_split(settings, split)
    if split in corpus.IMAGE_SPLITS:
        return [c.utterance_id for task in plan for c in task.captions]
    return [task.utterance_id for task in plan]


@pytest.fixture(scope="module")
def rebuilt_in_another_process(tiny_data_dir, tmp_path_factory) -> str:
    """tiny seed 0 built again from scratch by the command line, as a second user would."""
    data_dir = str(tmp_path_factory.mktemp("rebuilt"))
    command = [sys.executable, "-m", "fastvgs_jax.data.build", "--size", PRESET]
    done = subprocess.run(
        [*command, "--data_dir", data_dir], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return data_dir


# ---- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(tiny_data_dir, rebuilt_in_another_process):
    ours, theirs = record_files(tiny_data_dir), record_files(rebuilt_in_another_process)
    assert sorted(ours) == sorted(theirs) and len(ours) == len(corpus.SPLITS)
    for name, path in ours.items():
        with open(path, "rb") as a, open(theirs[name], "rb") as b:
            assert a.read() == b.read(), f"{name} differs"
    assert (
        metadata(tiny_data_dir)["content_hash"]
        == metadata(rebuilt_in_another_process)["content_hash"]
    )


def test_same_seed_gives_identical_examples(tiny_data_dir, rebuilt_in_another_process):
    assert speech_differences(tiny_data_dir, rebuilt_in_another_process) == []
    assert (
        metadata(tiny_data_dir)["content_hash"]
        == metadata(rebuilt_in_another_process)["content_hash"]
    )


def test_other_seed_gives_other_content(tiny_data_dir, tmp_path):
    builder = ensure_built(str(tmp_path), PRESET, seed=1)
    assert builder.builder_config.name == "tiny_seed1"
    other = metadata(str(tmp_path), seed=1)
    assert other["settings"]["seed"] == 1
    assert other["content_hash"] != metadata(tiny_data_dir)["content_hash"]
    texts = {x["text"] for x in read_split(str(tmp_path), "train", seed=1)}
    assert texts != {x["text"] for x in read_split(tiny_data_dir, "train")}


# ---- what a build holds ----------------------------------------------------------------------


def test_dataset_info_records_version_settings_and_content_hash(tiny_data_dir):
    builder = sources.open_builder(tiny_data_dir, PRESET)
    info = builder.info
    assert str(info.version) == builder_lib.VERSION
    settings = corpus.preset(PRESET)
    as_json = json.loads(json.dumps(dataclasses.asdict(settings)))  # tuples come back as lists
    assert dict(info.metadata["settings"]) == as_json
    assert info.metadata["preset"] == PRESET
    assert info.metadata["sample_rate"] == RATE
    assert list(info.metadata["phone_inventory"]) == list(phones.INVENTORY)
    assert re.fullmatch(r"[0-9a-f]{64}", info.metadata["content_hash"])
    assert set(info.metadata["split_hashes"]) == set(corpus.SPLITS)
    on_disk = metadata(tiny_data_dir)
    assert on_disk["content_hash"] == info.metadata["content_hash"]
    assert on_disk["settings"] == as_json
    with open(os.path.join(version_dir(tiny_data_dir), "dataset_info.json")) as f:
        assert json.load(f)["version"] == builder_lib.VERSION
    for split in corpus.SPLITS:
        assert info.splits[split].num_examples == settings.num_examples(split)


def test_tfds_data_source_reads_the_built_corpus_by_name(tiny_data_dir):
    import tensorflow_datasets as tfds

    train = tfds.data_source("spoken_scenes/tiny", split="train", data_dir=tiny_data_dir)
    ours = sources.open_split(tiny_data_dir, PRESET, "train")
    assert len(train) == len(ours) == corpus.preset(PRESET).num_examples("train")
    np.testing.assert_array_equal(train[3]["audio"], ours[3]["audio"])


def test_content_hash_is_the_hash_of_the_stored_examples(tiny_data_dir):
    """Recomputed from the records in plan order, as the builder hashed them while writing."""
    settings = corpus.preset(PRESET)
    split_hashes = {}
    for split in corpus.SPLITS:
        by_id = {
            sources.decode_text(x["utterance_id"]): x for x in read_split(tiny_data_dir, split)
        }
        digest = hashlib.sha256()
        for utterance_id in utterance_order(settings, split):
            example = {
                k: sources.decode_text(v) if isinstance(v, bytes) else v
                for k, v in by_id.pop(utterance_id).items()
            }
            example["image_id"] = int(example["image_id"])
            digest.update(corpus.example_digest(example))
        assert not by_id, f"records not in the plan: {sorted(by_id)}"
        split_hashes[split] = digest.hexdigest()
    stored = metadata(tiny_data_dir)
    assert split_hashes == stored["split_hashes"]
    combined = "".join(f"{s}:{split_hashes[s]};" for s in corpus.SPLITS)
    assert hashlib.sha256(combined.encode()).hexdigest() == stored["content_hash"]


@pytest.mark.parametrize("split", corpus.SPLITS)
def test_alignments_are_monotone_and_cover_the_audio(tiny_data_dir, split):
    examples = read_split(tiny_data_dir, split)
    assert examples
    for x in examples:
        audio, ids, starts, ends = (x[f] for f in SPEECH_FIELDS)
        name = sources.decode_text(x["utterance_id"])
        assert audio.dtype == np.int16 and 0.3 * RATE < len(audio) < 15 * RATE, name
        assert len(ids) == len(starts) == len(ends) > 3, name
        assert starts[0] == 0 and ends[-1] == len(audio), name
        np.testing.assert_array_equal(ends[:-1], starts[1:], err_msg=name)
        assert (ends > starts).all(), name
        assert ((ids >= 0) & (ids < len(phones.INVENTORY))).all(), name
        assert (ids != phones.PHONE_ID[phones.SILENCE]).sum() >= 3, name


def test_images_and_scenes_belong_to_image_splits_only(tiny_data_dir):
    for split in corpus.SPLITS:
        for x in read_split(tiny_data_dir, split):
            assert x["image"].shape == (64, 64, 3) and x["image"].dtype == np.uint8
            if split in corpus.IMAGE_SPLITS:
                assert x["image_id"] >= 0 and x["image"].std() > 5
                assert json.loads(sources.decode_text(x["scene"]))["objects"]
            else:
                assert x["image_id"] == -1 and not x["image"].any() and x["scene"] == b""


def test_heldout_speakers_are_only_in_test_and_abx(tiny_data_dir):
    s = corpus.preset(PRESET)
    groups = speakers.make_speakers(
        s.seed, s.num_train_speakers, s.num_heldout_speakers, s.num_pool_speakers
    )
    ids = {group: {sp.speaker_id for sp in members} for group, members in groups.items()}
    used = {
        split: {sources.decode_text(x["speaker"]) for x in read_split(tiny_data_dir, split)}
        for split in corpus.SPLITS
    }
    heldout = ids["heldout"]
    assert not heldout & (used["train"] | used["validation"] | used["audio_only"])
    assert used["train"] | used["validation"] <= ids["train"]
    assert used["test"] <= heldout and used["test"]
    assert used["abx"] == heldout
    assert used["audio_only"] <= ids["pool"]


def test_abx_item_file_is_well_formed_and_has_within_and_across_speaker_cells(tiny_data_dir):
    text = sources.read_item_file(tiny_data_dir, PRESET)
    assert text.splitlines()[0] == abx_items.HEADER
    rows = abx_items.parse_item_file(text)
    abx = {sources.decode_text(x["utterance_id"]): x for x in read_split(tiny_data_dir, "abx")}
    assert rows and {r[0] for r in rows} == set(abx)
    for file_id, onset, offset, phone, prev, nxt, speaker in rows:
        x = abx[file_id]
        assert sources.decode_text(x["speaker"]) == speaker
        assert 0 <= onset < offset <= len(x["audio"]) / RATE + 1e-4
        assert phone != phones.SILENCE
        assert {phone, prev, nxt} <= set(phones.INVENTORY)

    tokens = collections.Counter((r[4], r[5], r[6], r[3]) for r in rows)  # prev, next, spk, phone
    phones_of = collections.defaultdict(set)  # (context, speaker) -> centre phones
    speakers_of = collections.defaultdict(set)  # (context, phone) -> speakers
    for (prev, nxt, spk, phone), _ in tokens.items():
        phones_of[(prev, nxt), spk].add(phone)
        speakers_of[(prev, nxt), phone].add(spk)
    within = [
        (context, spk, a, b)
        for (context, spk), centre in phones_of.items()
        for a in centre
        for b in centre
        if a != b and tokens[(*context, spk, a)] >= 2
    ]
    across = [
        (context, a, b, spk, other)
        for (context, a), spks in speakers_of.items()
        for spk in spks
        for other in spks - {spk}
        for b in phones_of[context, spk] - {a}
    ]
    print(f"{len(rows)} items, {len(within)} within-speaker, {len(across)} across-speaker cells")
    assert len(within) > 0 and len(across) > 0


# ---- idempotence -----------------------------------------------------------------------------


def test_a_complete_build_is_reused_untouched(tiny_data_dir):
    before = mtimes(tiny_data_dir)
    assert len(record_files(tiny_data_dir)) == len(corpus.SPLITS)
    builder = ensure_built(tiny_data_dir, PRESET, 0)
    assert mtimes(tiny_data_dir) == before
    assert builder.info.metadata["content_hash"] == metadata(tiny_data_dir)["content_hash"]


def test_a_missing_item_file_is_rewritten_without_rebuilding(tiny_data_dir, tmp_path):
    data_dir = str(tmp_path / "data")
    shutil.copytree(tiny_data_dir, data_dir)
    item_path = os.path.join(version_dir(data_dir), sources.ITEM_FILE)
    os.remove(item_path)
    records = {p: os.stat(p).st_mtime_ns for p in record_files(data_dir).values()}
    ensure_built(data_dir, PRESET, 0)
    assert {p: os.stat(p).st_mtime_ns for p in records} == records
    assert sources.read_item_file(data_dir, PRESET) == sources.read_item_file(tiny_data_dir, PRESET)


def test_a_half_built_dir_is_rebuilt(tiny_data_dir, tmp_path):
    data_dir = str(tmp_path / "data")
    shutil.copytree(tiny_data_dir, data_dir)
    path = version_dir(data_dir)
    os.remove(os.path.join(path, "dataset_info.json"))
    interrupted = os.path.join(os.path.dirname(path), f"incomplete.XYZ123_{builder_lib.VERSION}")
    os.makedirs(interrupted)
    records = {p: os.stat(p).st_mtime_ns for p in record_files(data_dir).values()}
    with pytest.raises(sources.CorpusError, match="no built"):
        sources.open_split(data_dir, PRESET, "train")

    ensure_built(data_dir, PRESET, 0)
    assert os.path.exists(os.path.join(path, "dataset_info.json"))
    assert os.path.exists(os.path.join(path, sources.ITEM_FILE))
    assert not os.path.exists(interrupted)
    for p, mtime in records.items():
        assert os.stat(p).st_mtime_ns != mtime, f"{p} was not rewritten"
    assert speech_differences(tiny_data_dir, data_dir) == []
    assert metadata(data_dir)["content_hash"] == metadata(tiny_data_dir)["content_hash"]


# ---- looking at examples -----------------------------------------------------------------------


def test_show_writes_wav_png_caption_and_phone_timings(tiny_data_dir, tmp_path):
    out = str(tmp_path / "show")
    stems = show_examples(tiny_data_dir, PRESET, 0, 2, out)
    assert len(stems) == 2
    train = {sources.decode_text(x["utterance_id"]): x for x in read_split(tiny_data_dir, "train")}
    for stem in stems:
        x = train[stem]
        rate, audio = scipy.io.wavfile.read(os.path.join(out, stem + ".wav"))
        assert rate == RATE
        np.testing.assert_array_equal(audio, x["audio"])
        assert os.path.exists(os.path.join(out, f"img{int(x['image_id']):06d}.png"))
        with open(os.path.join(out, stem + ".txt")) as f:
            assert f.readline().strip() == sources.decode_text(x["text"])
        with open(os.path.join(out, stem + ".phones.tsv")) as f:
            lines = f.read().splitlines()
        assert lines[0] == "onset_s\toffset_s\tphone"
        rows = [line.split("\t") for line in lines[1:]]
        assert [r[2] for r in rows] == [phones.INVENTORY[i] for i in x["phone_ids"]]
        assert float(rows[-1][1]) == pytest.approx(len(x["audio"]) / RATE, abs=1e-4)


def test_command_line_reuses_the_build_and_shows_examples(tiny_data_dir, tmp_path):
    before = mtimes(tiny_data_dir)
    out = str(tmp_path / "examples")
    command = [sys.executable, "-m", "fastvgs_jax.data.build", "--size", PRESET]
    command += ["--data_dir", tiny_data_dir, "--show", "1", "--out", out]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"content hash {metadata(tiny_data_dir)['content_hash']}" in done.stdout
    assert mtimes(tiny_data_dir) == before
    written = os.listdir(out)
    for suffix in (".wav", ".png", ".txt", ".phones.tsv"):
        assert sum(name.endswith(suffix) for name in written) == 1, written


def test_splits_that_spill_to_disk_build_without_tensorflow_and_give_the_same_bytes(
    tiny_data_dir, tmp_path, monkeypatch
):
    from tensorflow_datasets.core import shuffle

    # Large presets exceed TFDS's 1 GB in-memory shuffle buffer; force that path on tiny.
    monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 10_000)
    ensure_built(str(tmp_path), PRESET, seed=0)
    ours, spilled = record_files(tiny_data_dir), record_files(str(tmp_path))
    assert sorted(ours) == sorted(spilled)
    for name, path in ours.items():
        with open(path, "rb") as a, open(spilled[name], "rb") as b:
            assert a.read() == b.read(), f"{name} differs"
