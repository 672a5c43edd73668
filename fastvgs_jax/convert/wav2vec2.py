"""wav2vec 2.0 weights: HF transformers (safetensors + config.json) and fairseq checkpoints.

    from fastvgs_jax.convert import wav2vec2
    config, variables, report = wav2vec2.load_hf("path/to/hf_dir")   # or load_fairseq("x.pt")
    wav2vec2.save_hf(variables, config, "out_dir")          # loadable by transformers

Only post-LN ("base"-style, ``do_stable_layer_norm=False`` / ``layer_norm_first=False``)
models map onto our encoder; others are refused with a ConversionError. Weights our model
has and the checkpoint lacks (the CLS, the VGS branch) keep their initial values and are
listed in the returned report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import jax
import ml_collections
import numpy as np

from fastvgs_jax.convert.mapping import (
    ConversionError,
    ImportReport,
    Rule,
    export_weights,
    import_weights,
)
from fastvgs_jax.convert.wav2vec2_config import (  # noqa: F401 - callers read them here too
    hf_config_from_model,
    model_config_from_fairseq,
    model_config_from_hf,
)
from fastvgs_jax.models import fastvgs

_ENC = ("params", "speech_encoder")


def _linear_rules(ours: tuple[str, ...], theirs: str, optional=False) -> list[Rule]:
    return [
        Rule((*ours, "kernel"), f"{theirs}.weight", "linear", optional=optional),
        Rule((*ours, "bias"), f"{theirs}.bias", optional=optional),
    ]


def _norm_rules(ours: tuple[str, ...], theirs: str) -> list[Rule]:
    return [Rule((*ours, "scale"), f"{theirs}.weight"), Rule((*ours, "bias"), f"{theirs}.bias")]


def speech_encoder_rules(
    config: ml_collections.ConfigDict, scheme: str, prefix: str = ""
) -> list[Rule]:
    """Rules for the speech encoder + SSL head under ``scheme`` "hf" or "fairseq".

    ``prefix`` is prepended to every encoder key (HF: "wav2vec2." in pretraining models).
    """
    if config.frontend != "cnn":
        raise ConversionError("only the wav2vec2 CNN frontend has foreign weights")
    hf = scheme == "hf"
    if scheme not in ("hf", "fairseq"):
        raise ValueError(f"unknown scheme {scheme!r}")
    p = prefix
    rules: list[Rule] = []
    front = (*_ENC, "frontend")
    for i in range(len(config.cnn.channels)):
        conv = f"{p}feature_extractor.conv_layers.{i}." + ("conv" if hf else "0")
        rules.append(Rule((*front, f"conv_{i}", "kernel"), f"{conv}.weight", "conv"))
        if config.cnn.bias:
            rules.append(Rule((*front, f"conv_{i}", "bias"), f"{conv}.bias"))
        if (config.cnn.norm == "group" and i == 0) or config.cnn.norm == "layer":
            if hf:
                norm = f"{p}feature_extractor.conv_layers.{i}.layer_norm"
            else:
                norm = f"{p}feature_extractor.conv_layers.{i}." + (
                    "2" if config.cnn.norm == "group" else "2.1"
                )
            rules += _norm_rules((*front, f"norm_{i}"), norm)
    rules += _norm_rules(
        (*_ENC, "feature_norm"), f"{p}feature_projection.layer_norm" if hf else f"{p}layer_norm"
    )
    rules += _linear_rules(
        (*_ENC, "feature_projection"),
        f"{p}feature_projection.projection" if hf else f"{p}post_extract_proj",
    )
    rules.append(
        Rule(
            (*_ENC, "mask_embedding"),
            f"{p}masked_spec_embed" if hf else f"{p}mask_emb",
            optional=True,  # fine-tuned HF exports without masking drop it
        )
    )
    pos = f"{p}encoder.pos_conv_embed.conv" if hf else f"{p}encoder.pos_conv.0"
    parametrized = f"{pos}.parametrizations.weight"
    rules += [
        Rule(
            (*_ENC, "positional_conv", "weight_g"),
            f"{parametrized}.original0",
            "reshape_111",
            aliases=(f"{pos}.weight_g",),
        ),
        Rule(
            (*_ENC, "positional_conv", "weight_v"),
            f"{parametrized}.original1",
            "conv",
            aliases=(f"{pos}.weight_v",),
        ),
        Rule((*_ENC, "positional_conv", "bias"), f"{pos}.bias"),
    ]
    rules += _norm_rules((*_ENC, "encoder_norm"), f"{p}encoder.layer_norm")
    for i in range(config.num_layers):
        ours = (*_ENC, "transformer", f"layer_{i}")
        layer = f"{p}encoder.layers.{i}"
        attention = f"{layer}.attention" if hf else f"{layer}.self_attn"
        for name, proj in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
            rules.append(
                Rule((*ours, "attention", name, "kernel"), f"{attention}.{proj}.weight", "heads_in")
            )
            rules.append(
                Rule((*ours, "attention", name, "bias"), f"{attention}.{proj}.bias", "reshape_flat")
            )
        rules.append(
            Rule((*ours, "attention", "out", "kernel"), f"{attention}.out_proj.weight", "heads_out")
        )
        rules.append(Rule((*ours, "attention", "out", "bias"), f"{attention}.out_proj.bias"))
        rules += _norm_rules(
            (*ours, "attention_norm"),
            f"{layer}.layer_norm" if hf else f"{layer}.self_attn_layer_norm",
        )
        rules += _linear_rules(
            (*ours, "mlp_in"), f"{layer}.feed_forward.intermediate_dense" if hf else f"{layer}.fc1"
        )
        rules += _linear_rules(
            (*ours, "mlp_out"), f"{layer}.feed_forward.output_dense" if hf else f"{layer}.fc2"
        )
        rules += _norm_rules((*ours, "output_norm"), f"{layer}.final_layer_norm")
    # SSL head: absent from bare encoders (Wav2Vec2Model, fine-tuned checkpoints).
    q = ("params", "quantizer")
    head = "" if hf else p
    rules += [
        Rule(
            (*q, "codebook"),
            f"{head}quantizer.codevectors" if hf else f"{head}quantizer.vars",
            "codebook",
            optional=True,
        ),
        *_linear_rules((*q, "weight_proj"), f"{head}quantizer.weight_proj", optional=True),
        *_linear_rules(("params", "target_projection"), f"{head}project_q", optional=True),
        *_linear_rules(
            ("params", "context_projection"),
            f"{head}project_hid" if hf else f"{head}final_proj",
            optional=True,
        ),
    ]
    return rules


# --- HF transformers ---------------------------------------------------------------------


def _hf_prefix(state: Mapping[str, np.ndarray]) -> str:
    if any(k.startswith("wav2vec2.") for k in state):
        return "wav2vec2."
    if any(k.startswith("feature_extractor.conv_layers.") for k in state):
        return ""
    raise ConversionError("not an HF wav2vec2 state dict (no feature_extractor.conv_layers keys)")


def from_hf(
    state: Mapping[str, np.ndarray],
    config: ml_collections.ConfigDict,
    variables: Mapping | None = None,
    seed: int = 0,
) -> tuple[dict, ImportReport]:
    """HF state dict → our variables (starting from ``variables`` or a fresh init)."""
    if variables is None:
        variables = fastvgs.init_variables(config, jax.random.key(seed))
    rules = speech_encoder_rules(config, "hf", _hf_prefix(state))
    return import_weights(state, rules, variables, "HF wav2vec2")


def to_hf(variables: Mapping, config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """Our variables → an HF ``Wav2Vec2ForPreTraining`` state dict."""
    return export_weights(variables, speech_encoder_rules(config, "hf", "wav2vec2."))


def load_hf(
    path: str | os.PathLike, base: ml_collections.ConfigDict | None = None, seed: int = 0
) -> tuple[ml_collections.ConfigDict, dict, ImportReport]:
    """Read an HF directory (config.json + model.safetensors) into (config, variables, report)."""
    from safetensors.numpy import load_file  # noqa: PLC0415

    path = os.fspath(path)
    config_path = os.path.join(path, "config.json")
    weights_path = os.path.join(path, "model.safetensors")
    for needed in (config_path, weights_path):
        if not os.path.exists(needed):
            raise ConversionError(f"{path}: missing {os.path.basename(needed)}")
    with open(config_path) as f:
        hf = json.load(f)
    if hf.get("model_type") != "wav2vec2":
        raise ConversionError(f"{path}: model_type {hf.get('model_type')!r} is not wav2vec2")
    config = model_config_from_hf(hf, base)
    variables, report = from_hf(load_file(weights_path), config, seed=seed)
    return config, variables, report


def save_hf(variables: Mapping, config: ml_collections.ConfigDict, path: str | os.PathLike):
    """Write config.json + model.safetensors that transformers' from_pretrained loads."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    save_file(to_hf(variables, config), os.path.join(path, "model.safetensors"), {"format": "pt"})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hf_config_from_model(config), f, indent=2)


# --- fairseq -------------------------------------------------------------------------------


def _fairseq_model_args(checkpoint: Mapping) -> dict:
    """The model hyperparameters of a fairseq checkpoint (old ``args`` or new ``cfg``)."""
    from fastvgs_jax.convert import torch_reader  # noqa: PLC0415

    cfg = checkpoint.get("cfg")
    if cfg is not None:
        plain = torch_reader.opaque_to_plain(cfg)
        if isinstance(plain, Mapping) and isinstance(plain.get("model"), Mapping):
            return dict(plain["model"])
    args = checkpoint.get("args")
    if args is not None:
        plain = torch_reader.opaque_to_plain(args)
        if isinstance(plain, Mapping):
            return dict(plain)
    return {}


def load_fairseq(
    path: str | os.PathLike, base: ml_collections.ConfigDict | None = None, seed: int = 0
) -> tuple[ml_collections.ConfigDict, dict, ImportReport]:
    """A fairseq wav2vec2 pretraining checkpoint (.pt) → (config, variables, report).

    Read with ``torch_reader`` (no pickled code runs, torch not needed).
    """
    from fastvgs_jax.convert import torch_reader  # noqa: PLC0415

    checkpoint = torch_reader.read_checkpoint(path)
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint:
        raise ConversionError(f"{path}: not a fairseq checkpoint (no 'model' entry)")
    state = dict(checkpoint["model"])
    prefix = "w2v_encoder.w2v_model." if any(k.startswith("w2v_encoder.") for k in state) else ""
    if f"{prefix}feature_extractor.conv_layers.0.0.weight" not in state:
        raise ConversionError(f"{path}: not a fairseq wav2vec2 model (no conv feature extractor)")
    config = model_config_from_fairseq(_fairseq_model_args(checkpoint), base)
    variables = fastvgs.init_variables(config, jax.random.key(seed))
    rules = speech_encoder_rules(config, "fairseq", prefix)
    variables, report = import_weights(state, rules, variables, f"fairseq checkpoint {path}")
    return config, variables, report
