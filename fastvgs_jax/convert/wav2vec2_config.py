"""Our model config from a wav2vec 2.0 model's hyperparameters, and back: an HF
``Wav2Vec2Config`` (config.json) both ways, fairseq's ``args``/``cfg`` one way. Fields they do
not describe (the VGS branch, CLS, masking) come from a base config."""

from __future__ import annotations

import ast
from collections.abc import Mapping

import ml_collections

from fastvgs_jax.convert.mapping import ConversionError
from fastvgs_jax.models.config import model_config


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
