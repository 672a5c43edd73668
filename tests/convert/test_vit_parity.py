"""Our pretrained ViT tower against HF transformers' ViTModel and CLIPVisionModel, same weights."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity_support import require

from fastvgs_jax.convert import vit as convert
from fastvgs_jax.convert.mapping import ConversionError
from fastvgs_jax.models import pretrained_vit
from fastvgs_jax.models.pretrained_vit import PretrainedViT

torch = require("torch")
transformers = require("transformers")

TOL = 1e-5
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=48,
    image_size=32,
    patch_size=8,
)


def _perturbed(model, seed: int):
    """Every tensor (norm scales, biases, CLS too) moved off its init: a swapped or skipped
    parameter cannot hide behind ones or zeros."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _vit_config():
    return transformers.ViTConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _clip_config():
    return transformers.CLIPVisionConfig(**TINY, attention_dropout=0.0)


def _save(model, tmp_path_factory, name):
    path = tmp_path_factory.mktemp(name)
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    hf = _perturbed(transformers.ViTModel(_vit_config(), add_pooling_layer=False), 0)
    return hf, _save(hf, tmp_path_factory, "vit")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    hf = _perturbed(transformers.CLIPVisionModel(_clip_config()), 1)
    return hf, _save(hf, tmp_path_factory, "clip")


def _pixels(n=3, seed=2):
    """Normalised-looking float pixels [n, 32, 32, 3] (channels last, ours)."""
    return np.random.default_rng(seed).standard_normal((n, 32, 32, 3)).astype(np.float32)


def _hf_outputs(hf, pixels: np.ndarray):
    with torch.no_grad():
        out = hf(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()))
    return out


def _ours(settings, variables, pixels):
    model = PretrainedViT(settings)
    return jax.jit(model.apply)(variables, jnp.asarray(pixels))


def _assert_close(ours, theirs, what):
    err = np.abs(np.asarray(ours) - theirs).max()
    assert err <= TOL, f"{what}: max |ours − HF| = {err:.2e}"


def test_vit_tokens_and_cls_embedding_match_hf_vit_model(vit_dir):
    hf, path = vit_dir
    settings, variables, report = convert.load_hf_vit(path)
    assert settings.kind == "vit" and settings.activation == "gelu"
    assert settings.layer_norm_eps == 1e-12 and settings.image_mean == pretrained_vit.IMAGENET_MEAN
    assert report.unused_keys == [] and report.kept_initial == []
    pixels = _pixels()
    out = _ours(settings, variables, pixels)
    theirs = _hf_outputs(hf, pixels).last_hidden_state.numpy()
    assert out.tokens.shape == (3, 1 + 16, 32) and out.pooled.shape == (3, 32)
    _assert_close(out.tokens, theirs, "tokens")
    _assert_close(out.pooled, theirs[:, 0], "pooled (CLS)")


def test_vit_without_qkv_bias_matches_and_reports_the_zero_biases_kept(tmp_path):
    config = _vit_config()
    config.qkv_bias = False
    hf = _perturbed(transformers.ViTModel(config, add_pooling_layer=False), 7)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    settings, variables, report = convert.load_hf_vit(tmp_path)
    assert not settings.qkv_bias and report.unused_keys == []
    assert len(report.kept_initial) == 3 * 2  # q, k, v biases of 2 layers, at zero
    assert all(p.endswith("/bias") and "/attention/" in p for p in report.kept_initial)
    pixels = _pixels(2)
    out = _ours(settings, variables, pixels)
    _assert_close(out.tokens, _hf_outputs(hf, pixels).last_hidden_state.numpy(), "tokens")


def test_clip_tokens_and_pooled_output_match_hf_clip_vision_model(clip_dir):
    hf, path = clip_dir
    settings, variables, report = convert.load_hf_vit(path)
    assert settings.kind == "clip" and settings.activation == "quick_gelu"
    assert settings.image_std == pretrained_vit.CLIP_STD
    assert report.unused_keys == [] and report.kept_initial == []
    pixels = _pixels()
    out = _ours(settings, variables, pixels)
    theirs = _hf_outputs(hf, pixels)
    _assert_close(out.tokens, theirs.last_hidden_state.numpy(), "tokens")
    _assert_close(out.pooled, theirs.pooler_output.numpy(), "pooled (post_layernorm CLS)")


def test_full_clip_model_gives_its_vision_tower_and_reports_the_rest_unused(tmp_path):
    config = transformers.CLIPConfig(
        text_config=dict(
            hidden_size=16,
            intermediate_size=24,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=50,
            max_position_embeddings=8,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(**TINY, attention_dropout=0.0),
        projection_dim=8,
    )
    hf = _perturbed(transformers.CLIPModel(config), 3)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    settings, variables, report = convert.load_hf_vit(tmp_path)
    assert settings.kind == "clip" and settings.hidden_size == 32
    assert report.kept_initial == []
    assert report.unused_keys and all(
        k.startswith(("text_model.", "text_projection", "visual_projection", "logit_scale"))
        for k in report.unused_keys
    )
    pixels = _pixels(2)
    with torch.no_grad():
        theirs = hf.vision_model(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2)))
    out = _ours(settings, variables, pixels)
    _assert_close(out.pooled, theirs.pooler_output.numpy(), "pooled")
    _assert_close(out.tokens, theirs.last_hidden_state.numpy(), "tokens")


def test_vit_head_model_weights_under_vit_prefix_load_and_the_head_is_unused(tmp_path):
    hf = _perturbed(transformers.ViTForImageClassification(_vit_config()), 4)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    settings, variables, report = convert.load_hf_vit(tmp_path)
    assert sorted(report.unused_keys) == ["classifier.bias", "classifier.weight"]
    pixels = _pixels(2)
    with torch.no_grad():
        theirs = hf.vit(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2)))
    out = _ours(settings, variables, pixels)
    _assert_close(out.tokens, theirs.last_hidden_state.numpy(), "tokens")


def test_vit_state_dict_with_in_memory_names_loads_too(vit_dir, tmp_path):
    """transformers 5 renames ViT's modules in memory (q_proj, layers.N); a state_dict()
    dumped without save_pretrained's renaming back still imports, to the same outputs."""
    from safetensors.numpy import save_file

    hf, path = vit_dir
    state = {k: v.numpy() for k, v in hf.state_dict().items()}
    assert any(".q_proj." in k for k in state)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    _, variables, report = convert.load_hf_vit(tmp_path)
    assert report.unused_keys == [] and report.kept_initial == []
    _, reference, _ = convert.load_hf_vit(path)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(a, b)


def test_preprocessor_config_mean_std_override_the_kind_default(vit_dir, tmp_path):
    _, path = vit_dir
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((path / name).read_bytes())
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})
    )
    settings, _, _ = convert.load_hf_vit(tmp_path)
    assert settings.image_mean == (0.5, 0.5, 0.5) and settings.image_std == (0.5, 0.5, 0.5)


def test_normalize_images_matches_the_hf_image_processor():
    images = np.random.default_rng(5).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    dino = dict(image_mean=pretrained_vit.IMAGENET_MEAN, image_std=pretrained_vit.IMAGENET_STD)
    for kind, processor in (
        ("vit", transformers.ViTImageProcessor(**dino)),  # DINO's preprocessor_config.json
        ("clip", transformers.CLIPImageProcessor()),
    ):
        settings = pretrained_vit.default_settings(kind, image_size=32, patch_size=8)
        theirs = processor(
            list(images), do_resize=False, do_center_crop=False, return_tensors="np"
        )["pixel_values"].transpose(0, 2, 3, 1)
        ours = np.asarray(pretrained_vit.normalize_images(images, settings))
        np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=kind)


def test_embed_images_pads_the_last_batch_and_compiles_once(clip_dir):
    _, path = clip_dir
    settings, variables, _ = convert.load_hf_vit(path)
    images = np.random.default_rng(6).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    batched = convert.embed_images(settings, variables, images, batch_size=2)  # 2 + 2 + 1(+1)
    assert batched.shape == (5, 32) and batched.dtype == np.float32
    pixels = pretrained_vit.normalize_images(images, settings)
    unbatched = np.asarray(_ours(settings, variables, pixels).pooled)
    np.testing.assert_allclose(batched, unbatched, atol=1e-6)
    again = convert.embed_images(settings, variables, images[:3], batch_size=2)
    np.testing.assert_allclose(again, unbatched[:3], atol=1e-6)
    assert convert._embed_fn(settings)._cache_size() == 1  # one trace for every batch
    assert convert.embed_images(settings, variables, images[:0], batch_size=2).shape == (0, 32)


def test_frozen_tower_passes_no_gradient_to_its_parameters(clip_dir):
    _, path = clip_dir
    settings, variables, _ = convert.load_hf_vit(path)
    model = PretrainedViT(settings)
    grads = jax.jit(jax.grad(lambda v: model.apply(v, jnp.asarray(_pixels(1))).pooled.sum()))(
        variables
    )
    assert all(not np.any(g) for g in jax.tree.leaves(grads))


# --- errors -------------------------------------------------------------------------------


def _copy(path, tmp_path, names=("config.json", "model.safetensors")):
    for name in names:
        (tmp_path / name).write_bytes((path / name).read_bytes())
    return tmp_path


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ConversionError, match="no such directory"):
        convert.load_hf_vit(tmp_path / "absent")


def test_missing_files_are_named(vit_dir, tmp_path):
    _, path = vit_dir
    with pytest.raises(ConversionError, match="missing config.json"):
        convert.load_hf_vit(tmp_path)
    _copy(path, tmp_path, ("config.json",))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ConversionError, match="missing model.safetensors.*pickled"):
        convert.load_hf_vit(tmp_path)


def test_unsupported_model_type_is_refused(vit_dir, tmp_path):
    _, path = vit_dir
    _copy(path, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "dinov2"}))
    with pytest.raises(ConversionError, match="model_type 'dinov2' is not supported"):
        convert.load_hf_vit(tmp_path)


def test_a_config_that_does_not_fit_the_weights_names_key_and_shapes(vit_dir, tmp_path):
    _, path = vit_dir
    _copy(path, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "image_size": 40}))
    with pytest.raises(ConversionError, match=r"position_embeddings.*\(1, 17, 32\).*\(1, 26, 32\)"):
        convert.load_hf_vit(tmp_path)


def test_weights_of_the_other_family_are_refused(clip_dir, tmp_path):
    _, path = clip_dir
    _copy(path, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "vit"}))
    with pytest.raises(ConversionError, match="no vit patch embedding"):
        convert.load_hf_vit(tmp_path)


def test_another_image_size_is_refused_rather_than_interpolated(clip_dir):
    _, path = clip_dir
    settings, variables, _ = convert.load_hf_vit(path)
    with pytest.raises(ValueError, match="does not match the model's 32x32"):
        PretrainedViT(settings).apply(variables, jnp.zeros((1, 48, 48, 3)))
    with pytest.raises(ValueError, match=r"uint8 \[N, 32, 32, 3\]"):
        convert.embed_images(settings, variables, np.zeros((1, 48, 48, 3), np.uint8), 2)
