"""The released FaST-VGS+ checkpoint (``best_bundle.pth``) → our variables.

The bundle is ``{"dual_encoder": state_dict, "cross_encoder": ..., "optimizer": ...}``; we
read the dual encoder (the coarse model the study uses) with ``torch_reader`` (no pickled
code runs, torch not needed). Key names follow the public FaST-VGS-Family code:

    conv1_trm1_trm3.*              speech encoder (fairseq wav2vec2 names) + cls_token
    conv2.*                        ResDAVEnet audio pooling (Conv2d (1, 9) kernels, BatchNorm2d)
    audio_cls_token_proj_pre.{0,2} CLS MLP       trm2.* one BERT layer    trm2_proj  projection
    visn_fc.*                      region + box projections and their LayerNorms
    visual_cls_token, trm.{i}.*, visual_cls_token_proj_coarse.{0,2}       image tower

``audio_cls_token_proj_coarse`` is computed but overwritten in the reference forward pass, so
it is reported as unused. The reference has detector-region images: ``image.kind`` must be
"regions".
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import jax
import ml_collections

from fastvgs_jax.convert import wav2vec2
from fastvgs_jax.convert.mapping import ConversionError, ImportReport, Rule, import_weights
from fastvgs_jax.models import fastvgs
from fastvgs_jax.models.config import model_config

SPEECH_PREFIX = "conv1_trm1_trm3."


def _linear(ours, theirs):
    return [
        Rule((*ours, "kernel"), f"{theirs}.weight", "linear"),
        Rule((*ours, "bias"), f"{theirs}.bias"),
    ]


def _norm(ours, theirs):
    return [Rule((*ours, "scale"), f"{theirs}.weight"), Rule((*ours, "bias"), f"{theirs}.bias")]


def _batch_norm(ours: tuple[str, ...], theirs: str) -> list[Rule]:
    stats = ("batch_stats", *ours[1:])
    return [
        *_norm(ours, theirs),
        Rule((*stats, "mean"), f"{theirs}.running_mean"),
        Rule((*stats, "var"), f"{theirs}.running_var"),
    ]


def _bert_layer(ours: tuple[str, ...], theirs: str) -> list[Rule]:
    rules = []
    for name in ("query", "key", "value"):
        attention = f"{theirs}.attention.self.{name}"
        rules.append(Rule((*ours, "attention", name, "kernel"), f"{attention}.weight", "heads_in"))
        rules.append(Rule((*ours, "attention", name, "bias"), f"{attention}.bias", "reshape_flat"))
    out = f"{theirs}.attention.output.dense"
    rules.append(Rule((*ours, "attention", "out", "kernel"), f"{out}.weight", "heads_out"))
    rules.append(Rule((*ours, "attention", "out", "bias"), f"{out}.bias"))
    rules += _norm((*ours, "attention_norm"), f"{theirs}.attention.output.LayerNorm")
    rules += _linear((*ours, "mlp_in"), f"{theirs}.intermediate.dense")
    rules += _linear((*ours, "mlp_out"), f"{theirs}.output.dense")
    rules += _norm((*ours, "output_norm"), f"{theirs}.output.LayerNorm")
    return rules


def release_rules(config: ml_collections.ConfigDict) -> list[Rule]:
    """Every tensor of the dual encoder, ours ↔ the release's key names."""
    rules = wav2vec2.speech_encoder_rules(config, "fairseq", SPEECH_PREFIX)
    rules.append(
        Rule(("params", "speech_encoder", "cls"), f"{SPEECH_PREFIX}cls_token", "reshape_111")
    )
    pool = ("params", "audio_pooler")
    rules += _linear((*pool, "input_projection"), "conv2.linear")
    rules += _batch_norm((*pool, "input_bn"), "conv2.bn1")
    for stage in range(len(config.audio_pool.widths)):
        for block in range(config.audio_pool.blocks_per_stage):
            ours = (*pool, f"stage_{stage}_block_{block}")
            theirs = f"conv2.layer{stage + 1}.{block}"
            for conv in ("conv1", "conv2"):
                rules.append(Rule((*ours, conv, "kernel"), f"{theirs}.{conv}.weight", "conv_1xk"))
            rules += _batch_norm((*ours, "bn1"), f"{theirs}.bn1")
            rules += _batch_norm((*ours, "bn2"), f"{theirs}.bn2")
            if block == 0:
                rules.append(
                    Rule((*ours, "shortcut", "kernel"), f"{theirs}.downsample.0.weight", "conv_1xk")
                )
                rules += _batch_norm((*ours, "shortcut_bn"), f"{theirs}.downsample.1")
    rules += _linear((*pool, "cls_mlp", "fc1"), "audio_cls_token_proj_pre.0")
    rules += _linear((*pool, "cls_mlp", "fc2"), "audio_cls_token_proj_pre.2")
    rules += _bert_layer((*pool, "transformer"), "trm2")
    rules += _linear((*pool, "projection"), "trm2_proj")
    image = ("params", "image_encoder")
    rules += _linear((*image, "region_projection"), "visn_fc.visn_fc")
    rules += _norm((*image, "region_norm"), "visn_fc.visn_layer_norm")
    rules += _linear((*image, "box_projection"), "visn_fc.box_fc")
    rules += _norm((*image, "box_norm"), "visn_fc.box_layer_norm")
    rules.append(Rule((*image, "cls"), "visual_cls_token", "reshape_111"))
    for i in range(config.image.num_layers):
        rules += _bert_layer((*image, "transformer", f"layer_{i}"), f"trm.{i}")
    rules += _linear((*image, "cls_mlp", "fc1"), "visual_cls_token_proj_coarse.0")
    rules += _linear((*image, "cls_mlp", "fc2"), "visual_cls_token_proj_coarse.2")
    return rules


def model_config_from_release(
    state: Mapping, base: ml_collections.ConfigDict | None = None
) -> ml_collections.ConfigDict:
    """The FaST-VGS+ base config, with depths read off the checkpoint's keys.

    Head counts are not stored in weights; they come from ``base`` (default: the paper's 12).
    """
    c = ml_collections.ConfigDict((base or model_config("base")).to_dict())
    c.frontend = "cnn"
    c.use_cls = True
    c.image.kind = "regions"

    def count(pattern):
        found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
        return max(found) + 1 if found else 0

    c.num_layers = count(re.escape(SPEECH_PREFIX) + r"encoder\.layers\.(\d+)\.")
    c.image.num_layers = count(r"trm\.(\d+)\.")
    c.vgs_layer = min(c.vgs_layer, c.num_layers)
    stages = count(r"conv2\.layer(\d+)\.") - 1  # layer1..layerN
    c.audio_pool.widths = tuple(
        state[f"conv2.layer{k}.0.conv1.weight"].shape[0] for k in range(1, stages + 1)
    )
    c.audio_pool.blocks_per_stage = count(r"conv2\.layer1\.(\d+)\.")
    c.audio_pool.kernel = state["conv2.layer1.0.conv1.weight"].shape[-1]
    hidden = state[f"{SPEECH_PREFIX}post_extract_proj.weight"].shape[0]
    c.hidden_dim = hidden
    c.image.region_dim = state["visn_fc.visn_fc.weight"].shape[1]
    return c


def load_release(
    path: str | os.PathLike,
    base: ml_collections.ConfigDict | None = None,
    seed: int = 0,
) -> tuple[ml_collections.ConfigDict, dict, ImportReport]:
    """``best_bundle.pth`` (or a bare dual-encoder state dict) → (config, variables, report)."""
    from fastvgs_jax.convert import torch_reader  # noqa: PLC0415

    bundle = torch_reader.read_checkpoint(path)
    state = bundle.get("dual_encoder", bundle) if isinstance(bundle, Mapping) else None
    if not isinstance(state, Mapping) or f"{SPEECH_PREFIX}cls_token" not in state:
        raise ConversionError(
            f"{path}: not a FaST-VGS+ bundle (no dual_encoder with {SPEECH_PREFIX}cls_token); "
            "for a plain wav2vec2 checkpoint use convert.wav2vec2.load_fairseq"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    config = model_config_from_release(state, base)
    variables = fastvgs.init_variables(config, jax.random.key(seed))
    return (config, *import_weights(state, release_rules(config), variables, f"FaST-VGS+ {path}"))
