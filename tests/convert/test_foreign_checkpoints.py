"""fairseq and FaST-VGS+ release checkpoints → our tree, and clear errors for bad ones."""

from __future__ import annotations

import argparse
import json
import re

import jax
import numpy as np
import pytest
from parity_support import (
    audio_batch,
    hf_hidden_states,
    our_hidden_states,
    random_hf_model,
    require,
)

from fastvgs_jax.convert import fastvgs_release, mapping
from fastvgs_jax.convert import wav2vec2 as convert
from fastvgs_jax.models import fastvgs
from fastvgs_jax.models.config import model_config

torch = require("torch")

# transformers' fairseq→HF converter table (convert_wav2vec2_original_pytorch_checkpoint_
# to_pytorch.py), written out here as an independent statement of the fairseq key names.
FAIRSEQ_TO_HF = {
    "post_extract_proj": "feature_projection.projection",
    "encoder.pos_conv.0": "encoder.pos_conv_embed.conv",
    "self_attn.k_proj": "encoder.layers.*.attention.k_proj",
    "self_attn.v_proj": "encoder.layers.*.attention.v_proj",
    "self_attn.q_proj": "encoder.layers.*.attention.q_proj",
    "self_attn.out_proj": "encoder.layers.*.attention.out_proj",
    "self_attn_layer_norm": "encoder.layers.*.layer_norm",
    "fc1": "encoder.layers.*.feed_forward.intermediate_dense",
    "fc2": "encoder.layers.*.feed_forward.output_dense",
    "final_layer_norm": "encoder.layers.*.final_layer_norm",
    "encoder.layer_norm": "encoder.layer_norm",
    "layer_norm": "feature_projection.layer_norm",
    "quantizer.weight_proj": "quantizer.weight_proj",
    "quantizer.vars": "quantizer.codevectors",
    "project_q": "project_q",
    "final_proj": "project_hid",
    "mask_emb": "masked_spec_embed",
}
HF_TO_FAIRSEQ = {hf: fairseq for fairseq, hf in FAIRSEQ_TO_HF.items()}


def _fairseq_key(hf_key: str) -> str:
    key = hf_key.replace("parametrizations.weight.original0", "weight_g")
    key = key.replace("parametrizations.weight.original1", "weight_v")
    key = key.removeprefix("wav2vec2.")
    # conv_layers.{i}.conv.weight → conv_layers.{i}.0.weight; layer 0's GroupNorm → .0.2.*
    key = re.sub(r"conv_layers\.(\d+)\.conv\.", r"conv_layers.\1.0.", key)
    key = key.replace("conv_layers.0.layer_norm.", "conv_layers.0.2.")
    if key.startswith("feature_extractor."):
        return key
    layer = re.match(r"(encoder\.layers\.\d+\.)(.+)\.(weight|bias)$", key)
    if layer:
        hf_name = f"encoder.layers.*.{layer.group(2)}"
        return layer.group(1) + HF_TO_FAIRSEQ[hf_name] + "." + layer.group(3)
    name, _, leaf = key.rpartition(".")
    if key in HF_TO_FAIRSEQ:  # unsuffixed parameters
        return HF_TO_FAIRSEQ[key]
    return HF_TO_FAIRSEQ[name] + "." + leaf


def _fairseq_state_from_hf(hf_state: dict) -> dict:
    return {_fairseq_key(k): v for k, v in hf_state.items()}


def test_fairseq_checkpoint_with_args_gives_hf_hidden_states(tmp_path):
    hf = random_hf_model(seed=4).eval()
    hf_state = {k: v.detach().clone() for k, v in hf.state_dict().items()}
    state = _fairseq_state_from_hf(hf_state)
    assert "feature_extractor.conv_layers.0.2.weight" in state
    assert "encoder.layers.2.self_attn.q_proj.weight" in state
    assert "quantizer.vars" in state and "encoder.pos_conv.0.weight_g" in state
    args = argparse.Namespace(
        conv_feature_layers="[(24, 10, 5)] + [(24, 3, 2)] * 2 + [(24, 2, 2)]",
        encoder_layers=3,
        encoder_embed_dim=32,
        encoder_attention_heads=4,
        encoder_ffn_embed_dim=48,
        conv_pos=16,
        conv_pos_groups=4,
        latent_groups=2,
        latent_vars=12,
        latent_dim=16,
        final_dim=8,
        extractor_mode="default",
        layer_norm_first=False,
    )
    path = tmp_path / "wav2vec_small.pt"
    torch.save({"model": state, "args": args, "optimizer_history": []}, path)
    config, variables, report = convert.load_fairseq(path)
    assert report.unused_keys == []
    assert (config.num_layers, config.hidden_dim, config.quantizer.entries) == (3, 32, 12)

    audio, attention = audio_batch()
    theirs, _, frame_mask = hf_hidden_states(hf, audio, attention)
    ours = our_hidden_states(config, variables, audio, frame_mask)
    for a, b in zip(ours.hidden_states, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(a)[frame_mask], b[frame_mask], atol=1e-4)


def _release_config():
    config = model_config("tiny")
    config.image.kind = "regions"
    config.audio_pool.blocks_per_stage = 2
    config.num_layers = 2
    config.vgs_layer = 2
    config.image.num_layers = 2
    return config


def test_release_rules_use_the_published_key_names():
    config = _release_config()
    variables = fastvgs.init_variables(config, jax.random.key(0))
    names = set(mapping.export_weights(variables, fastvgs_release.release_rules(config)))
    published = {
        "conv1_trm1_trm3.cls_token",
        "conv1_trm1_trm3.feature_extractor.conv_layers.0.0.weight",
        "conv1_trm1_trm3.feature_extractor.conv_layers.0.2.weight",
        "conv1_trm1_trm3.layer_norm.bias",
        "conv1_trm1_trm3.post_extract_proj.weight",
        "conv1_trm1_trm3.mask_emb",
        "conv1_trm1_trm3.encoder.pos_conv.0.parametrizations.weight.original0",
        "conv1_trm1_trm3.encoder.layers.1.self_attn.out_proj.weight",
        "conv1_trm1_trm3.encoder.layers.1.final_layer_norm.weight",
        "conv1_trm1_trm3.quantizer.vars",
        "conv1_trm1_trm3.final_proj.weight",
        "conv2.linear.weight",
        "conv2.bn1.running_var",
        "conv2.layer1.0.conv1.weight",
        "conv2.layer4.0.downsample.0.weight",
        "conv2.layer4.1.bn2.running_mean",
        "audio_cls_token_proj_pre.2.weight",
        "trm2.attention.self.query.weight",
        "trm2.attention.output.LayerNorm.weight",
        "trm2.intermediate.dense.weight",
        "trm2_proj.weight",
        "visn_fc.visn_fc.weight",
        "visn_fc.box_layer_norm.bias",
        "visual_cls_token",
        "trm.1.output.LayerNorm.bias",
        "visual_cls_token_proj_coarse.0.weight",
    }
    assert published <= names, sorted(published - names)
    assert not any("downsample" in n for n in names if ".1.downsample" in n)


def test_release_bundle_round_trips_through_torch_save(tmp_path):
    config = _release_config()
    variables = fastvgs.init_variables(config, jax.random.key(5))
    state = mapping.export_weights(variables, fastvgs_release.release_rules(config))
    # What the reference computes and then overwrites: present in bundles, unused by us.
    state["audio_cls_token_proj_coarse.0.weight"] = np.zeros((64, 32), np.float32)
    # fairseq-era exports name the positional conv's weight norm weight_g / weight_v.
    for old, new in (("original0", "weight_g"), ("original1", "weight_v")):
        key = f"conv1_trm1_trm3.encoder.pos_conv.0.parametrizations.weight.{old}"
        state[key.replace(f"parametrizations.weight.{old}", new)] = state.pop(key)
    bundle = {
        "dual_encoder": {k: torch.from_numpy(np.array(v)) for k, v in state.items()},
        "cross_encoder": {"fc.0.weight": torch.zeros(2, 2)},
        "optimizer": {"state": {}},
        "indices": [1, 2, 3],
    }
    torch.save(bundle, tmp_path / "best_bundle.pth")
    base = model_config("tiny")
    loaded_config, loaded, report = fastvgs_release.load_release(tmp_path / "best_bundle.pth", base)
    assert report.unused_keys == ["audio_cls_token_proj_coarse.0.weight"]
    assert report.kept_initial == []
    assert (loaded_config.num_layers, loaded_config.image.num_layers) == (2, 2)
    for (path, a), (_, b) in zip(
        jax.tree_util.tree_leaves_with_path(variables),
        jax.tree_util.tree_leaves_with_path(loaded),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))


def _zeros(config):
    """A variables tree of zeros (abstract shapes only: no initialiser is compiled)."""
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), fastvgs.abstract_variables(config))


def test_missing_key_names_the_key(tmp_path):
    hf = random_hf_model()
    state = {k: v for k, v in hf.state_dict().items() if "layers.1.final_layer_norm.bias" not in k}
    config = convert.model_config_from_hf(hf.config.to_dict())
    with pytest.raises(mapping.ConversionError, match=r"missing key .*layers\.1\.final_layer_norm"):
        convert.from_hf({k: v.numpy() for k, v in state.items()}, config, _zeros(config))


def test_shape_mismatch_names_the_key_and_both_shapes():
    hf = random_hf_model()
    config = convert.model_config_from_hf(hf.config.to_dict())
    config.mlp_dim = 40
    state = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    with pytest.raises(
        mapping.ConversionError, match=r"intermediate_dense.weight.*\(48, 32\).*\(40, 32\)"
    ):
        convert.from_hf(state, config, _zeros(config))


def test_other_architectures_are_refused(tmp_path):
    hf_dir = tmp_path / "large"
    random_hf_model(do_stable_layer_norm=True).save_pretrained(hf_dir)
    with pytest.raises(mapping.ConversionError, match="pre-LN"):
        convert.load_hf(hf_dir)
    bert_dir = tmp_path / "bert"
    bert_dir.mkdir()
    (bert_dir / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (bert_dir / "model.safetensors").write_bytes(b"")
    with pytest.raises(mapping.ConversionError, match="not wav2vec2"):
        convert.load_hf(bert_dir)
    torch.save({"model": {"decoder.weight": torch.zeros(2)}}, tmp_path / "lm.pt")
    with pytest.raises(mapping.ConversionError, match="not a fairseq wav2vec2"):
        convert.load_fairseq(tmp_path / "lm.pt")
    with pytest.raises(mapping.ConversionError, match="not a FaST-VGS"):
        fastvgs_release.load_release(tmp_path / "lm.pt")
    args = argparse.Namespace(layer_norm_first=True)
    torch.save(
        {"model": {"feature_extractor.conv_layers.0.0.weight": torch.zeros(1)}, "args": args},
        tmp_path / "big.pt",
    )
    with pytest.raises(mapping.ConversionError, match="layer_norm_first"):
        convert.load_fairseq(tmp_path / "big.pt")
