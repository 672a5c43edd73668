"""A few training steps and an evaluation, end to end, on tiny copies of SpokenCOCO (captions
of photographs) and LibriSpeech (the audio-only pool, and Libri-light ABX over dev-clean)."""

from __future__ import annotations

import json
import math
import os

import pytest

from fastvgs_jax.eval import evaluate
from fastvgs_jax.train import config as run_config
from fastvgs_jax.train import loop
from tests.data import corpus_fixtures as fixtures
from tests.train.conftest import tiny_run_config


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    coco, images = str(root / "SpokenCOCO"), str(root / "coco")
    fixtures.make_spokencoco(coco, images, "train_karpathy", images=4, captions=2)
    fixtures.make_spokencoco(coco, images, "test_karpathy", images=2, captions=2)
    libri = str(root / "LibriSpeech")
    fixtures.make_librispeech(libri, "train-clean-100", speakers=(19, 26), utterances=3)
    dev = fixtures.make_librispeech(libri, "dev-clean", speakers=(84, 174), utterances=3)
    item_file = str(root / "dev-clean.item")
    fixtures.write_item_file(item_file, dev["phones"], lambda u: u.split("-")[0])
    return {"coco": coco, "images": images, "libri": libri, "item_file": item_file}


def real_corpora_config(corpora, data_dir):
    config = tiny_run_config(str(data_dir))
    # Peng's FaST-VGS+ phase: SpokenCOCO and LibriSpeech batches alternate.
    mix = {"audio_image": 0.5, "audio_only": 0.5}
    config.phases = [run_config.phase("fastvgs_plus", 3, 0.5, mix=mix)]
    data = config.data
    data.corpora.spokencoco.root = corpora["coco"]
    data.corpora.spokencoco.image_root = corpora["images"]
    data.corpora.librispeech.root = corpora["libri"]
    data.audio_image.corpus, data.audio_image.split = "spokencoco", "train_karpathy"
    data.audio_only.corpus, data.audio_only.split = "librispeech", "train-clean-100"
    data.validation.corpus, data.validation.split = "spokencoco", "test_karpathy"
    data.retrieval.corpus, data.retrieval.split = "spokencoco", "test_karpathy"
    data.abx.corpus, data.abx.split = "librispeech", "dev-clean"
    data.abx.item_file = corpora["item_file"]
    data.image.size = 32
    data.index_threads = 2
    for stream in ("audio_image", "audio_only"):
        data[stream].batch_size = 8  # the test session simulates 8 devices
    return config


def test_training_and_evaluation_run_on_spokencoco_and_librispeech(corpora, tmp_path):
    config = real_corpora_config(corpora, tmp_path / "data")
    workdir = str(tmp_path / "run")
    state = loop.train(config, workdir)
    assert int(state.step) == 3
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert "coarse" in lines[0] and "coarse" not in lines[1]  # a LibriSpeech batch: SSL only
    assert not os.path.exists(tmp_path / "data" / "spoken_scenes")  # nothing embedded built

    results = evaluate.evaluate_run(
        workdir, tasks=("retrieval", "abx"), layers="frontend,2", baselines=False, progress=False
    )
    retrieval = results["retrieval"]
    assert retrieval["corpus"] == "spokencoco" and retrieval["split"] == "test_karpathy"
    assert (retrieval["num_images"], retrieval["num_captions"]) == (2, 4)
    assert 0 <= retrieval["speech_to_image"]["r1"] <= 100
    abx = results["abx"]
    assert abx["corpus"] == "librispeech" and abx["utterances"] == 6
    with open(corpora["item_file"]) as f:
        assert abx["num_items"] == len(f.readlines()) - 1  # every row of the item file
    assert all(math.isfinite(v) for row in abx["trained"].values() for v in row.values())


def test_a_model_that_cannot_read_the_image_side_is_named_before_training(corpora, tmp_path):
    config = real_corpora_config(corpora, tmp_path / "data")
    config.data.image.kind = "regions"
    config.data.image.regions = "features.h5"
    with pytest.raises(ValueError, match=r"data.image.kind='regions'.*model.image.kind"):
        loop.train(config, str(tmp_path / "never"))
    assert not os.path.exists(tmp_path / "never")
