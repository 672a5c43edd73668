"""The real-corpus readers on tiny copies of their published layouts, the checked index and
its bad-data policy, and the registry that opens them by role."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from fastvgs_jax.data.config import data_config
from fastvgs_jax.data.corpora import index as index_lib
from fastvgs_jax.data.corpora import registry
from tests.data import corpus_fixtures as fixtures


def read_json(path):
    return json.loads(pathlib.Path(path).read_text())


def real_data_config(tmp_path, **roots):
    config = data_config("tiny")
    config.data_dir = str(tmp_path / "data")
    config.index_threads = 2
    for corpus, paths in roots.items():
        for field, value in paths.items():
            config.corpora[corpus][field] = str(value)
    return config


@pytest.fixture
def coco(tmp_path):
    made = fixtures.make_spokencoco(str(tmp_path / "SpokenCOCO"), str(tmp_path / "coco"))
    config = real_data_config(
        tmp_path, spokencoco={"root": tmp_path / "SpokenCOCO", "image_root": tmp_path / "coco"}
    )
    config.audio_image.corpus = "spokencoco"
    config.audio_image.split = "test_karpathy"
    config.image.size = 32
    return config, made


def test_spokencoco_captions_come_with_their_coco_image_ids_and_decoded_audio(coco):
    config, made = coco
    source = registry.open_role(config, "audio_image")
    assert len(source) == 4
    by_id = {source[i]["utterance_id"]: source[i] for i in range(len(source))}
    assert set(by_id) == set(made["wavs"])
    for uttid, example in by_id.items():
        np.testing.assert_array_equal(example["audio"], made["wavs"][uttid])  # bitwise
        assert example["audio"].dtype == np.int16
        assert example["image"].shape == (32, 32, 3) and example["image"].dtype == np.uint8
        coco_number = int(uttid.split("_")[1])
        assert example["image_id"] == coco_number
        assert example["text"].startswith("A PICTURE NUMBER")


def test_spokencoco_unrolled_json_reads_one_caption_per_entry(tmp_path):
    made = fixtures.make_spokencoco(str(tmp_path / "S"), str(tmp_path / "coco"))
    data = read_json(made["json"])["data"]
    unrolled = [{"image": d["image"], "caption": c} for d in data for c in d["captions"]]
    with open(tmp_path / "S" / "SpokenCOCO_test_unrolled_karpathy.json", "w") as f:
        json.dump({"data": unrolled}, f)
    from fastvgs_jax.data.corpora import spokencoco

    rows = list(
        spokencoco.rows(str(tmp_path / "S"), str(tmp_path / "coco"), "test_unrolled_karpathy")
    )
    assert [r.utterance_id for r in rows] == [c["caption"]["uttid"] for c in unrolled]
    assert all(r.image.endswith(".jpg") and r.image_id in (42, 1042) for r in rows)


def test_librispeech_subsets_join_and_keep_speakers_and_transcripts(tmp_path):
    root = tmp_path / "LibriSpeech"
    a = fixtures.make_librispeech(str(root), "train-clean-100", speakers=(19,))
    b = fixtures.make_librispeech(str(root), "train-clean-360", speakers=(26,), utterances=2)
    config = real_data_config(tmp_path, librispeech={"root": root})
    config.audio_only.corpus = "librispeech"
    config.audio_only.split = "train-clean-100+train-clean-360"
    source = registry.open_role(config, "audio_only")
    assert len(source) == 5
    first = source[0]
    assert first["utterance_id"] == "19-198-0000" and first["speaker"] == "19"
    assert first["text"] == "WORDS OF UTTERANCE 0"
    np.testing.assert_array_equal(first["audio"], a["flacs"]["19-198-0000"])  # FLAC is lossless
    np.testing.assert_array_equal(source[4]["audio"], b["flacs"]["26-198-0001"])
    assert "image" not in first and "image_id" not in first
    lengths = source.num_samples()
    assert lengths.tolist() == [len(a["flacs"][u]) for u in sorted(a["flacs"])] + [
        len(b["flacs"][u]) for u in sorted(b["flacs"])
    ]


def test_a_missing_librispeech_subset_names_the_folder_and_what_is_there(tmp_path):
    root = tmp_path / "LibriSpeech"
    fixtures.make_librispeech(str(root), "dev-clean", speakers=(19,), utterances=1)
    config = real_data_config(tmp_path, librispeech={"root": root})
    config.audio_only.corpus = "librispeech"
    config.audio_only.split = "train-clean-100"
    with pytest.raises(index_lib.CorpusError, match=r"train-clean-100.*dev-clean"):
        registry.open_role(config, "audio_only")


def test_flickr8k_split_lists_choose_images_and_tokens_give_text(tmp_path):
    fixtures.make_flickr8k(
        str(tmp_path / "flickr_audio"), str(tmp_path / "img"), str(tmp_path / "txt")
    )
    config = real_data_config(
        tmp_path,
        flickr8k={
            "root": tmp_path / "flickr_audio",
            "image_root": tmp_path / "img",
            "text_root": tmp_path / "txt",
        },
    )
    config.retrieval.corpus, config.retrieval.split = "flickr8k", "test"
    config.image.size = 16
    source = registry.open_role(config, "retrieval")
    assert [source[i]["utterance_id"] for i in range(len(source))] == ["2000_b_0", "2000_b_1"]
    assert source[1]["speaker"] == "2" and source[0]["text"] == "A dog number 1 runs ."
    assert {int(source[i]["image_id"]) for i in range(2)} == {0}


def test_places_paths_replace_the_authors_base_paths(tmp_path):
    fixtures.make_places(str(tmp_path / "meta"), str(tmp_path / "audio"), str(tmp_path / "img"))
    config = real_data_config(
        tmp_path,
        places={
            "root": tmp_path / "meta",
            "audio_root": tmp_path / "audio",
            "image_root": tmp_path / "img",
        },
    )
    config.audio_image.corpus, config.audio_image.split = "places", "dev_seen_2020"
    config.image.size = 16
    source = registry.open_role(config, "audio_image")
    assert [source[i]["utterance_id"] for i in range(2)] == ["A0-GSUN0", "A1-GSUN1"]
    assert source[0]["text"] == "an abbey number 0" and source[0]["image"].shape == (16, 16, 3)
    assert source.index.entries[0].image_key == "a/abbey/gsun_0001"


def test_bad_files_fail_with_a_report_naming_them_and_nothing_is_written(coco, tmp_path):
    config, made = coco
    captions = read_json(made["json"])["data"][0]["captions"]
    missing, resampled = (str(tmp_path / "SpokenCOCO" / c["wav"]) for c in captions)
    os.remove(missing)
    fixtures.write_audio(resampled, np.ones(100, np.int16), rate=22_050)  # contract: 16 kHz
    with open(tmp_path / "coco" / "val2014" / "COCO_val2014_000000001042.jpg", "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(index_lib.CorpusError) as error:
        registry.open_role(config, "audio_image")
    message = str(error.value)
    assert "4 bad examples of 4" in message
    assert f"missing audio: 1 ({missing})" in message
    assert "wrong sample rate (22050 Hz): 1" in message
    assert "unreadable image: 2" in message and "COCO_val2014_000000001042.jpg" in message
    assert not os.path.exists(tmp_path / "data" / "indexes" / "spokencoco") or not any(
        name.endswith("entries.jsonl")
        for _, _, names in os.walk(tmp_path / "data" / "indexes")
        for name in names
    )


def test_skip_leaves_bad_files_out_and_counts_them_in_the_manifest(coco, tmp_path):
    config, made = coco
    first = sorted(made["wavs"])[0]
    os.remove(tmp_path / "SpokenCOCO" / "wavs" / "val" / "0" / f"{first}.wav")
    config.on_bad_examples = "skip"
    source = registry.open_role(config, "audio_image")
    assert len(source) == 3
    manifest = read_json(os.path.join(source.path, "manifest.json"))
    assert manifest["skipped"] == 1 and manifest["problems"]["missing audio"]["count"] == 1
    assert manifest["examples"] == 3 and manifest["images"] == 2


def test_empty_captions_and_malformed_entries_are_bad_examples(coco, tmp_path):
    config, made = coco
    manifest = read_json(made["json"])
    manifest["data"][0]["captions"][0]["text"] = "  "
    manifest["data"][1]["captions"][1] = {"text": "no wav key"}
    pathlib.Path(made["json"]).write_text(json.dumps(manifest))
    with pytest.raises(index_lib.CorpusError, match=r"empty caption: 1.*\n.*malformed"):
        registry.open_role(config, "audio_image")


def test_the_index_is_built_once_and_read_back(coco, monkeypatch):
    config, _ = coco
    first = registry.open_role(config, "audio_image")
    from fastvgs_jax.data.corpora import spokencoco

    monkeypatch.setattr(spokencoco, "rows", lambda *a: pytest.fail("walked the corpus twice"))
    again = registry.open_role(config, "audio_image")
    assert again.index.entries == first.index.entries and again.path == first.path


def test_an_unreadable_index_is_rebuilt(coco):
    config, _ = coco
    first = registry.open_role(config, "audio_image")
    with open(os.path.join(first.path, "entries.jsonl"), "w") as f:
        f.write('{"utterance_id": "truncated"')
    index_lib._read_index.cache_clear()  # as a new process would
    again = registry.open_role(config, "audio_image")
    assert again.index.entries == first.index.entries
    assert len(read_json(os.path.join(again.path, "manifest.json"))) > 0


def test_a_file_removed_after_indexing_is_named_at_read_time(coco, tmp_path):
    config, made = coco
    source = registry.open_role(config, "audio_image")
    os.remove(source.index.entries[0].audio)
    with pytest.raises(index_lib.CorpusError, match="missing file .*wav.*delete that folder"):
        source[0]


def test_an_unset_root_or_unknown_corpus_is_named(tmp_path):
    config = real_data_config(tmp_path)
    config.audio_image.corpus = "spokencoco"
    with pytest.raises(index_lib.CorpusError, match=r"data.corpora.spokencoco.root is empty"):
        registry.open_role(config, "audio_image")
    config.audio_image.corpus = "coco"
    with pytest.raises(index_lib.CorpusError, match=r"data.audio_image.corpus='coco'"):
        registry.open_role(config, "audio_image")
