"""A corpus's images embedded once by a frozen HF ViT and cached as region features."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from fastvgs_jax.convert import vit
from fastvgs_jax.data.config import data_config
from fastvgs_jax.data.corpora import decode, image_embeddings, registry
from fastvgs_jax.data.corpora.index import CorpusError
from fastvgs_jax.data.corpora.source import LayoutSource
from fastvgs_jax.models import pretrained_vit
from tests.convert.parity_support import require
from tests.data import corpus_fixtures as fixtures

torch = require("torch")
transformers = require("transformers")

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=48,
    image_size=32,
    patch_size=8,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


@pytest.fixture(scope="module")
def vit_model(tmp_path_factory):
    """A tiny random HF ViTModel (every tensor moved off its init), saved as safetensors."""
    torch.manual_seed(0)
    hf = transformers.ViTModel(transformers.ViTConfig(**TINY), add_pooling_layer=False)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("vit")
    hf.eval().save_pretrained(path, safe_serialization=True)
    return hf, str(path)


@pytest.fixture
def coco(tmp_path, vit_model):
    fixtures.make_spokencoco(
        str(tmp_path / "SpokenCOCO"), str(tmp_path / "coco"), images=3, captions=2
    )
    config = data_config("tiny")
    config.data_dir = str(tmp_path / "data")
    config.index_threads = 2
    config.corpora.spokencoco.root = str(tmp_path / "SpokenCOCO")
    config.corpora.spokencoco.image_root = str(tmp_path / "coco")
    config.image.vit_dir = vit_model[1]
    config.image.vit_tokens = "pooled"
    return config


def _index(config):
    return registry.open_index(config, "spokencoco", "test_karpathy", progress=False)


def _decoded_images(config):
    """(sorted unique image keys, their images decoded to the ViT's 32 px)."""
    paths = dict(sorted({e.image_key: e.image for e in _index(config).entries}.items()))
    return list(paths), np.stack([decode.read_image(p, 32) for p in paths.values()])


def _ensure(config, **kwargs):
    return image_embeddings.ensure_cached(
        config, "spokencoco", "test_karpathy", progress=False, **kwargs
    )


def _files(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_pooled_cache_holds_each_images_vit_embedding_once_keyed_by_image_key(coco):
    path = _ensure(coco)
    assert os.path.dirname(path) == os.path.join(coco.data_dir, "image_embeddings", "spokencoco")
    assert os.path.basename(path).startswith("test_karpathy-") and path.endswith(".h5")
    keys, images = _decoded_images(coco)
    assert keys == ["1042", "2042", "42"]  # three images, each once, though captioned twice
    settings, variables, _ = vit.load_hf_vit(coco.image.vit_dir)
    expected = vit.embed_images(settings, variables, images, batch_size=64)
    with h5py.File(path, "r") as f:
        assert list(f["image_ids"].asstr()[:]) == keys
        assert f["features"].shape == (3, 1, 32)
        np.testing.assert_allclose(f["features"][:, 0], expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(f["boxes"][:], np.tile([[[0, 0, 1, 1]]], (3, 1, 1)))
        assert f["num_boxes"][:].tolist() == [1, 1, 1]
        assert f.attrs["tokens"] == "pooled" and f.attrs["vit_kind"] == "vit"
        assert f.attrs["images"] == 3 and f.attrs["seconds"] > 0

    features = image_embeddings.open_cached(coco, "spokencoco", "test_karpathy", progress=False)
    assert features.num_regions == 1 and features.feature_dim == 32
    source = LayoutSource(_index(coco), regions=features)
    for i, entry in enumerate(source.index.entries):
        regions, boxes = source[i]["regions"], source[i]["boxes"]
        np.testing.assert_array_equal(regions, features.lookup(entry.image_key)[0])
        np.testing.assert_allclose(regions[0], expected[keys.index(entry.image_key)], atol=1e-6)
        np.testing.assert_array_equal(boxes, [[0, 0, 1, 1]])
    assert image_embeddings.embedding_shape(coco) == (1, 32)


def test_all_tokens_are_hf_last_hidden_state_with_each_patchs_box(coco, vit_model):
    coco.image.vit_tokens = "all"
    path = _ensure(coco, batch_size=2)  # 3 images: the last batch is padded
    keys, images = _decoded_images(coco)
    mean = np.array(pretrained_vit.IMAGENET_MEAN)
    std = np.array(pretrained_vit.IMAGENET_STD)
    pixels = ((images / 255.0 - mean) / std).astype(np.float32).transpose(0, 3, 1, 2)
    with torch.no_grad():
        theirs = vit_model[0](pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    features = image_embeddings.open_cached(coco, "spokencoco", "test_karpathy", progress=False)
    assert features.num_regions == 17 and image_embeddings.embedding_shape(coco) == (17, 32)
    for i, key in enumerate(keys):
        tokens, boxes = features.lookup(key)
        np.testing.assert_allclose(tokens, theirs[i], atol=1e-5)
        np.testing.assert_array_equal(boxes[0], [0, 0, 1, 1])  # CLS: the whole crop
        np.testing.assert_array_equal(boxes[1], [0, 0, 0.25, 0.25])  # row 0, column 0
        np.testing.assert_array_equal(boxes[2], [0.25, 0, 0.5, 0.25])  # row 0, column 1
        np.testing.assert_array_equal(boxes[5], [0, 0.25, 0.25, 0.5])  # row 1, column 0
        np.testing.assert_array_equal(boxes[16], [0.75, 0.75, 1, 1])
    with h5py.File(path, "r") as f:
        assert f["image_hw"][0].tolist() == [32, 32] and f.attrs["tokens"] == "all"
    coco.image.vit_tokens = "pooled"
    assert image_embeddings.cache_path(coco, "spokencoco", "test_karpathy") != path


def test_a_second_call_reuses_the_file_and_a_new_checkpoint_embeds_again(coco, monkeypatch):
    path = _ensure(coco)
    written = os.stat(path).st_mtime_ns

    def fail(*args, **kwargs):
        pytest.fail("embedded again")

    with monkeypatch.context() as patch:
        patch.setattr(image_embeddings, "_embedder", fail)
        patch.setattr(vit, "load_hf_vit", fail)
        assert _ensure(coco) == path
        assert image_embeddings.open_cached(coco, "spokencoco", "test_karpathy").ids()
    assert os.stat(path).st_mtime_ns == written
    weights = os.path.join(coco.image.vit_dir, "model.safetensors")
    os.utime(weights, ns=(written, written + 1))  # as if the checkpoint were re-saved
    assert image_embeddings.cache_path(coco, "spokencoco", "test_karpathy") != path


def test_an_interrupted_build_leaves_no_file_and_the_next_one_completes(coco, monkeypatch):
    real = image_embeddings._embedder
    calls = []

    def interrupted(*args):
        embed = real(*args)

        def once_then_interrupt(images):
            calls.append(len(images))
            if len(calls) == 2:
                raise KeyboardInterrupt
            return embed(images)

        return once_then_interrupt

    folder = os.path.join(coco.data_dir, "image_embeddings", "spokencoco")
    with monkeypatch.context() as patch:
        patch.setattr(image_embeddings, "_embedder", interrupted)
        with pytest.raises(KeyboardInterrupt):
            _ensure(coco, batch_size=1)
    assert calls == [1, 1] and _files(folder) == []
    path = _ensure(coco, batch_size=1)
    assert _files(folder) == [os.path.basename(path)]
    assert image_embeddings.is_complete(path)


def test_an_empty_vit_dir_is_named(coco):
    coco.image.vit_dir = ""
    for call in (_ensure, lambda c: image_embeddings.cache_path(c, "spokencoco", "test_karpathy")):
        with pytest.raises(CorpusError, match=r"data\.image\.vit_dir is empty"):
            call(coco)
    coco.image.vit_dir = coco.data_dir  # a folder, but no HF model
    with pytest.raises(CorpusError, match=r"data\.image\.vit_dir=.* holds no config\.json"):
        _ensure(coco)


def test_a_vit_image_side_reaches_the_pipeline_as_regions_the_model_must_match(coco):
    from fastvgs_jax.train import config as run_config
    from fastvgs_jax.train import loop

    coco.image.kind = "vit"
    coco.retrieval.corpus, coco.retrieval.split = "spokencoco", "test_karpathy"
    example = registry.open_role(coco, "retrieval")[0]
    assert "image" not in example
    assert example["regions"].shape == (1, 32) and example["boxes"].shape == (1, 4)

    config = run_config.base_config("tiny", "tiny")
    config.data = coco
    config.data.audio_image.corpus = "spokencoco"
    config.model.image.kind = "regions"
    with pytest.raises(ValueError, match=r"model.image.num_regions=1 and .*region_dim=32"):
        loop.align_image_side(config)
    config.model.image.num_regions, config.model.image.region_dim = 1, 32
    loop.align_image_side(config)
