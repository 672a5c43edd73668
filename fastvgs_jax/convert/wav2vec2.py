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

import ast
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
from fastvgs_jax.models import fastvgs
from fastvgs_jax.models.config import model_config

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


def model_config_from_hf(
    hf: Mapping, base: ml_collections.ConfigDict | None = None
) -> ml_collections.ConfigDict:
    """Our model config for an HF ``Wav2Vec2Config`` (as its config.json dict).

    Fields HF does not describe (the VGS branch, CLS, masking) come from ``base``
    (default: configs/model.py "base"); ``use_cls`` is turned off, as HF has no CLS.
    """
    if hf.get("do_stable_layer_norm", False):
        raise ConversionError(
            "this HF wav2vec2 uses the pre-LN ('stable layer norm', large/lv60) layout; "
            "only the post-LN base layout maps onto our encoder"
        )
    for field in ("feat_extract_activation", "hidden_act"):
        if hf.get(field, "gelu") != "gelu":
            raise ConversionError(f"HF config {field}={hf[field]!r}; only gelu is supported")
    if hf.get("feat_extract_norm", "group") not in ("group", "layer"):
        raise ConversionError(f"unknown feat_extract_norm {hf['feat_extract_norm']!r}")
    c = _base_config(base)
    c.frontend = "cnn"
    c.cnn.channels = tuple(hf["conv_dim"])
    c.cnn.kernels = tuple(hf["conv_kernel"])
    c.cnn.strides = tuple(hf["conv_stride"])
    c.cnn.norm = hf.get("feat_extract_norm", "group")
    c.cnn.bias = bool(hf.get("conv_bias", False))
    c.hidden_dim = hf["hidden_size"]
    c.num_layers = hf["num_hidden_layers"]
    c.num_heads = hf["num_attention_heads"]
    c.mlp_dim = hf["intermediate_size"]
    c.layer_norm_eps = hf.get("layer_norm_eps", 1e-5)
    c.dropout = hf.get("hidden_dropout", c.dropout)
    c.attention_dropout = hf.get("attention_dropout", c.attention_dropout)
    c.activation_dropout = hf.get("activation_dropout", c.activation_dropout)
    c.feature_dropout = hf.get("feat_proj_dropout", c.feature_dropout)
    c.pos_conv_kernel = hf["num_conv_pos_embeddings"]
    c.pos_conv_groups = hf["num_conv_pos_embedding_groups"]
    c.quantizer.groups = hf.get("num_codevector_groups", 2)
    c.quantizer.entries = hf.get("num_codevectors_per_group", 320)
    c.quantizer.codevector_dim = hf.get("codevector_dim", 256)
    c.quantizer.final_dim = hf.get("proj_codevector_dim", 256)
    c.num_negatives = hf.get("num_negatives", 100)
    c.diversity_weight = hf.get("diversity_loss_weight", 0.1)
    c.use_cls = False
    _fit_vgs_branch(c)
    return c


def hf_config_from_model(config: ml_collections.ConfigDict) -> dict:
    """An HF ``Wav2Vec2Config`` dict for our speech encoder + SSL head."""
    if config.frontend != "cnn":
        raise ConversionError("only the wav2vec2 CNN frontend can be exported")
    return {
        "model_type": "wav2vec2",
        "architectures": ["Wav2Vec2ForPreTraining"],
        "conv_dim": list(config.cnn.channels),
        "conv_kernel": list(config.cnn.kernels),
        "conv_stride": list(config.cnn.strides),
        "num_feat_extract_layers": len(config.cnn.channels),
        "feat_extract_norm": config.cnn.norm,
        "conv_bias": bool(config.cnn.bias),
        "feat_extract_activation": "gelu",
        "hidden_act": "gelu",
        "hidden_size": config.hidden_dim,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.mlp_dim,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_dropout": config.dropout,
        "attention_dropout": config.attention_dropout,
        "activation_dropout": config.activation_dropout,
        "feat_proj_dropout": config.feature_dropout,
        "num_conv_pos_embeddings": config.pos_conv_kernel,
        "num_conv_pos_embedding_groups": config.pos_conv_groups,
        "do_stable_layer_norm": False,
        "num_codevector_groups": config.quantizer.groups,
        "num_codevectors_per_group": config.quantizer.entries,
        "codevector_dim": config.quantizer.codevector_dim,
        "proj_codevector_dim": config.quantizer.final_dim,
        "num_negatives": config.num_negatives,
        "diversity_loss_weight": config.diversity_weight,
        "mask_time_prob": config.masking.prob,
        "mask_time_length": config.masking.span,
        "mask_time_min_masks": config.masking.min_spans,
    }


def _base_config(base):
    if base is not None:
        return ml_collections.ConfigDict(base.to_dict())
    return model_config("base")


def _fit_vgs_branch(c: ml_collections.ConfigDict) -> None:
    """Keep the VGS branch consistent with an imported encoder's width and depth."""
    widths = list(c.audio_pool.widths)
    widths[-1] = c.hidden_dim
    c.audio_pool.widths = tuple(widths)
    c.vgs_layer = min(c.vgs_layer, c.num_layers)
    if c.hidden_dim % c.audio_pool.num_heads:
        c.audio_pool.num_heads = c.num_heads
    if c.hidden_dim % c.image.num_heads:
        c.image.num_heads = c.num_heads


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


def model_config_from_fairseq(
    args: Mapping, base: ml_collections.ConfigDict | None = None
) -> ml_collections.ConfigDict:
    """Our model config for fairseq wav2vec2 hyperparameters (missing ones: wav2vec2-base)."""
    if args.get("layer_norm_first", False):
        raise ConversionError(
            "this fairseq wav2vec2 uses layer_norm_first=True (pre-LN, large models); only the "
            "post-LN base layout maps onto our encoder"
        )
    c = _base_config(base)
    c.frontend = "cnn"
    spec = args.get("conv_feature_layers")
    if spec:
        # A Python literal list of (dim, kernel, stride) tuples, e.g. "[(512, 10, 5)] * 2".
        layers = _literal_conv_layers(spec)
        c.cnn.channels = tuple(d for d, _, _ in layers)
        c.cnn.kernels = tuple(k for _, k, _ in layers)
        c.cnn.strides = tuple(s for _, _, s in layers)
    c.cnn.norm = "layer" if args.get("extractor_mode", "default") == "layer_norm" else "group"
    c.cnn.bias = bool(args.get("conv_bias", False))
    c.hidden_dim = args.get("encoder_embed_dim", c.hidden_dim)
    c.num_layers = args.get("encoder_layers", c.num_layers)
    c.num_heads = args.get("encoder_attention_heads", c.num_heads)
    c.mlp_dim = args.get("encoder_ffn_embed_dim", c.mlp_dim)
    c.pos_conv_kernel = args.get("conv_pos", c.pos_conv_kernel)
    c.pos_conv_groups = args.get("conv_pos_groups", c.pos_conv_groups)
    c.quantizer.groups = args.get("latent_groups", c.quantizer.groups)
    c.quantizer.entries = args.get("latent_vars", c.quantizer.entries)
    final_dim = args.get("final_dim", c.quantizer.final_dim) or c.hidden_dim
    c.quantizer.final_dim = final_dim
    c.quantizer.codevector_dim = args.get("latent_dim", 0) or final_dim
    c.num_negatives = args.get("num_negatives", c.num_negatives)
    c.logit_temperature = args.get("logit_temp", c.logit_temperature)
    c.use_cls = False
    _fit_vgs_branch(c)
    return c


def _literal_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """Evaluate fairseq's conv spec ("[(512,10,5)] + [(512,3,2)] * 4") without eval()."""

    def value(node):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left) + value(node.right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            return value(node.left) * value(node.right)
        return ast.literal_eval(node)

    try:
        layers = value(ast.parse(spec, mode="eval").body)
        return [tuple(int(v) for v in layer) for layer in layers]
    except (ValueError, TypeError, SyntaxError) as e:
        raise ConversionError(f"unreadable conv_feature_layers {spec!r}: {e}") from e


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
