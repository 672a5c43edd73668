"""The pretrained image tower: its labels, its training, its file, and a run that reads it
frozen."""

from __future__ import annotations

import dataclasses

import flax
import jax
import numpy as np
import pytest

from fastvgs_jax.data.spoken_scenes import scenes
from fastvgs_jax.models import fastvgs, vgs
from fastvgs_jax.train import image_tower, loop
from tests.train.conftest import tiny_run_config

WIDTHS = (8, 16, 16, 16)
TINY = image_tower.TowerSettings(
    corpus_preset="small", widths=WIDTHS, steps=3, batch_size=8, num_scenes=16
)


def _random_tower(path, widths=WIDTHS) -> dict:
    model = vgs.ConvImageTower(widths, 5)
    params = model.init(jax.random.key(3), np.zeros((1, 64, 64, 3), np.float32))["params"]
    params = jax.tree.map(np.asarray, flax.linen.meta.unbox(params))
    image_tower.save(str(path), params, dataclasses.replace(TINY, widths=widths), {})
    return params


def test_attribute_targets_mark_each_objects_shape_colour_and_size():
    vocabulary = scenes.SceneVocabulary(
        shapes=("circle", "square"), colours=("red", "blue"), sizes=("small", "big")
    )
    scene = scenes.Scene(
        (
            scenes.SceneObject("square", "red", "big", "plain", 0.3, 0.3),
            scenes.SceneObject("circle", "blue", "small", "plain", 0.7, 0.7),
        ),
        (160, 160, 160),
    )
    names = scenes.attribute_names(vocabulary)
    on = [n for n, v in zip(names, scenes.attribute_targets(scene, vocabulary), strict=True) if v]
    assert on == ["blue circle", "red square", "circle", "square", "red", "blue"] + [
        "small circle",
        "big square",
    ]


def test_attribute_scores_count_present_attributes_and_whole_scenes():
    targets = np.array([[1, 0, 0, 1], [0, 1, 0, 0]], np.float32)
    logits = np.array([[2.0, -1.0, -1.0, -3.0], [-1.0, 1.0, -2.0, -1.0]])
    scores = image_tower.attribute_scores(logits, targets)
    # 2 hits, 2 predicted, 3 present: F1 = 2·2 / (2 + 3); only scene 2 is wholly right.
    assert scores == pytest.approx({"attribute_f1": 80.0, "scene_exact_match": 50.0})


def test_pretraining_sees_more_than_the_attributes_base_rates():
    settings = dataclasses.replace(
        TINY, steps=300, batch_size=32, num_scenes=512, learning_rate=1e-2
    )
    _, metrics = image_tower.pretrain(settings)
    # Measured: 0.258 against the prior's 0.292, F1 20 % (the prior alone predicts nothing).
    assert metrics["heldout_loss"] < 0.95 * metrics["heldout_prior_loss"]
    assert metrics["attribute_f1"] > 10.0


def test_a_kept_tower_is_reused_and_one_with_other_settings_is_named(tmp_path, monkeypatch):
    path = str(tmp_path / "tower.msgpack")
    first = image_tower.ensure_pretrained(path, TINY)

    def pretrain(settings):
        raise AssertionError("a kept tower was retrained")

    monkeypatch.setattr(image_tower, "pretrain", pretrain)
    again = image_tower.ensure_pretrained(path, TINY)
    assert list(again.items()) == list(first.items())  # same values, same order: same report
    with pytest.raises(image_tower.ImageTowerError, match="steps differ"):
        image_tower.ensure_pretrained(path, dataclasses.replace(TINY, steps=4))


def test_a_frozen_tower_passes_no_gradient_to_its_convs():
    """Zeroed updates alone would keep the convs fixed, but their gradients would still
    count in the clipped global norm and so change every other parameter's update."""
    image = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    tower = vgs.ConvImageTower(WIDTHS, 4, frozen=True)
    params = flax.linen.meta.unbox(tower.init(jax.random.key(0), image)["params"])
    grads = jax.grad(lambda p: tower.apply({"params": p}, image).sum())(params)
    for name, grad in grads.items():
        norms = [float(np.abs(g).sum()) for g in jax.tree.leaves(grad)]
        assert (max(norms) > 0) == (name == "projection"), name


def test_a_corrupt_or_missing_tower_is_named(tmp_path):
    path = tmp_path / "tower.msgpack"
    with pytest.raises(image_tower.ImageTowerError, match="no such file"):
        image_tower.load(str(path))
    path.write_bytes(b"\x00not msgpack")
    with pytest.raises(image_tower.ImageTowerError, match="corrupt"):
        image_tower.load(str(path))


def _cnn_run(data_dir, tower_path, widths=WIDTHS):
    config = tiny_run_config(data_dir, objectives="vgs", steps=3)
    config.model.image.kind = "cnn"
    config.model.image.cnn_widths = widths
    config.model.image.cnn_frozen = True
    config.image_tower_init = str(tower_path)
    config.snapshot_every = 100
    return config


def test_a_run_starts_from_the_towers_convs_and_never_changes_them(tiny_data_dir, tmp_path):
    tower = _random_tower(tmp_path / "tower.msgpack")
    config = _cnn_run(tiny_data_dir, tmp_path / "tower.msgpack")
    assert config.optimizer.weight_decay > 0  # so a frozen conv would shrink if updated
    end = jax.device_get(loop.train(config, str(tmp_path / "run")).params)
    outer, inner = fastvgs.IMAGE_TOWER_PATH
    trained = end[outer][inner]
    for name in tower:
        same = jax.tree.leaves(jax.tree.map(np.array_equal, trained[name], tower[name]))
        if name == "projection":  # the tower's classifier is not taken; the run's trains
            assert np.shape(trained[name]["kernel"]) != np.shape(tower[name]["kernel"])
        else:
            assert all(same), name


@pytest.mark.parametrize(
    "widths, message", [((8, 16, 16, 32), "conv_3's shapes differ"), ((8, 16, 16), "conv_3")]
)
def test_a_tower_of_other_widths_is_refused_before_training(
    tiny_data_dir, tmp_path, widths, message
):
    _random_tower(tmp_path / "tower.msgpack", widths=widths)
    config = _cnn_run(tiny_data_dir, tmp_path / "tower.msgpack")
    with pytest.raises(image_tower.ImageTowerError, match=message):
        loop.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_missing_tower_is_named_before_anything_is_written(tiny_data_dir, tmp_path):
    config = _cnn_run(tiny_data_dir, tmp_path / "absent.msgpack")
    with pytest.raises(image_tower.ImageTowerError, match="absent.msgpack: no such file"):
        loop.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_tower_for_a_model_without_a_conv_image_tower_is_refused(tiny_data_dir, tmp_path):
    config = tiny_run_config(tiny_data_dir, objectives="vgs", steps=3)  # a ViT image side
    config.image_tower_init = str(tmp_path / "tower.msgpack")
    with pytest.raises(ValueError, match="needs model.image.kind='cnn'"):
        loop.train(config, str(tmp_path / "run"))
