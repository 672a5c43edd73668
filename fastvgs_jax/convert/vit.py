"""Pretrained vision transformers from HF directories: DINO ``ViTModel``s and CLIP towers.

    from fastvgs_jax.convert import vit
    settings, variables, report = vit.load_hf_vit("path/to/clip-vit-base-patch16")
    print(report.summary())
    embeddings = vit.embed_images(settings, variables, images_uint8, batch_size=64)

The directory is what ``save_pretrained`` writes (or a hub snapshot): config.json and
model.safetensors (or a sharded model.safetensors.index.json). Nothing is downloaded, and
weights are read with ``safetensors.numpy`` only (no pickles, torch not needed).

Accepted checkpoints (``config.json``'s model_type):
- "vit": ``ViTModel`` (keys ``embeddings.*``) or a ``ViTFor*`` head model (``vit.*``); any
  pooler or classifier weights are reported unused.
- "clip_vision_model": ``CLIPVisionModel`` (keys ``embeddings.*`` or ``vision_model.*``).
- "clip": a full ``CLIPModel``: its ``vision_config`` and ``vision_model.*`` weights; the
  text tower and both projections are reported unused.
Everything else (DINOv2, DeiT, SigLIP, ...) is refused with a ConversionError: their blocks
or tokens differ, and a silent near-match would give wrong embeddings.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fastvgs_jax.convert.mapping import ConversionError, ImportReport, Rule, import_weights
from fastvgs_jax.models import pretrained_vit
from fastvgs_jax.models.pretrained_vit import PretrainedViT, ViTSettings

# HF activation names → ours. gelu_new, gelu_fast and gelu_pytorch_tanh are the same tanh form.
_ACTIVATIONS = {
    "gelu": "gelu",
    "quick_gelu": "quick_gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
}

# What ViTConfig / CLIPVisionConfig default to when config.json leaves a field out (CLIPModel
# configs often list only what differs from the defaults).
_HF_DEFAULTS = {
    "vit": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        image_size=224,
        patch_size=16,
        num_channels=3,
        qkv_bias=True,
    ),
    "clip": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        image_size=224,
        patch_size=32,
        num_channels=3,
    ),
}


# --- config -----------------------------------------------------------------------------


def _square(value, name: str, path: str) -> int:
    """An int, or an [h, w] pair with h == w (ViTConfig allows pairs; we need squares)."""
    if isinstance(value, list | tuple):
        if len(value) != 2 or value[0] != value[1]:
            raise ConversionError(
                f"{path}: {name} {value} is not square; only squares are supported"
            )
        value = value[0]
    return int(value)


def _kind_and_vision_config(hf: Mapping, path: str) -> tuple[str, dict]:
    model_type = hf.get("model_type")
    if model_type == "vit":
        return "vit", dict(hf)
    if model_type == "clip_vision_model":
        return "clip", dict(hf)
    if model_type == "clip":
        return "clip", dict(hf.get("vision_config") or {})
    raise ConversionError(
        f"{path}: model_type {model_type!r} is not supported; expected 'vit' (ViTModel, e.g. "
        "DINO), 'clip_vision_model' (CLIPVisionModel) or 'clip' (CLIPModel)"
    )


def _preprocessor_mean_std(path: str) -> dict:
    """image_mean / image_std from the directory's preprocessor_config.json, when it has them."""
    pre_path = os.path.join(path, "preprocessor_config.json")
    if not os.path.exists(pre_path):
        return {}
    with open(pre_path) as f:
        pre = json.load(f)
    mean, std = pre.get("image_mean"), pre.get("image_std")
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3):
        return {}
    return dict(image_mean=tuple(float(m) for m in mean), image_std=tuple(float(s) for s in std))


def settings_from_hf(hf: Mapping, path: str = "config.json") -> ViTSettings:
    """An HF config.json (dict) → our ``ViTSettings`` (mean/std: the kind's convention)."""
    kind, vision = _kind_and_vision_config(hf, path)
    c = {**_HF_DEFAULTS[kind], **vision}
    if int(c["num_channels"]) != 3:
        raise ConversionError(f"{path}: num_channels {c['num_channels']} (only RGB is supported)")
    act = c["hidden_act"]
    if act not in _ACTIVATIONS:
        raise ConversionError(f"{path}: hidden_act {act!r} is not one of {sorted(_ACTIVATIONS)}")
    try:
        return pretrained_vit.default_settings(
            kind,
            hidden_size=int(c["hidden_size"]),
            num_layers=int(c["num_hidden_layers"]),
            num_heads=int(c["num_attention_heads"]),
            mlp_dim=int(c["intermediate_size"]),
            patch_size=_square(c["patch_size"], "patch_size", path),
            image_size=_square(c["image_size"], "image_size", path),
            layer_norm_eps=float(c["layer_norm_eps"]),
            activation=_ACTIVATIONS[act],
            qkv_bias=bool(c.get("qkv_bias", True)),
        )
    except ValueError as e:  # ViTSettings' own checks
        raise ConversionError(f"{path}: {e}") from e


# --- weights ----------------------------------------------------------------------------


def _norm(ours: tuple[str, ...], theirs: str) -> list[Rule]:
    return [Rule((*ours, "scale"), f"{theirs}.weight"), Rule((*ours, "bias"), f"{theirs}.bias")]


def _rule(ours: tuple[str, ...], names: tuple[str, ...], suffix: str, layout="copy") -> Rule:
    """A rule for ``names[0].suffix``, the other names being aliases of the same tensor."""
    theirs = [f"{n}.{suffix}" for n in names]
    return Rule(ours, theirs[0], layout, aliases=tuple(theirs[1:]))


def vit_rules(settings: ViTSettings, prefix: str = "") -> list[Rule]:
    """One rule per tensor of the tower, in the checkpoint naming of ``settings.kind``.

    ``prefix``: "vit." (ViTFor* heads) or "vision_model." (CLIPModel, older CLIPVisionModel).
    ViT rules also accept transformers 5's in-memory names (``layers.N.attention.q_proj``,
    what ``model.state_dict()`` gives) as aliases of the saved ones.
    """
    p = prefix
    vit = settings.kind == "vit"
    patch = ("params", "patch_embedding")
    if vit:
        emb = f"{p}embeddings"
        rules = [
            Rule((*patch, "kernel"), f"{emb}.patch_embeddings.projection.weight", "conv2d"),
            Rule((*patch, "bias"), f"{emb}.patch_embeddings.projection.bias"),
            Rule(("params", "cls"), f"{emb}.cls_token", "reshape_111"),
            Rule(("params", "position_embedding"), f"{emb}.position_embeddings", "drop_leading_1"),
        ]
    else:
        emb = f"{p}embeddings"
        rules = [
            Rule((*patch, "kernel"), f"{emb}.patch_embedding.weight", "conv2d"),
            Rule(("params", "cls"), f"{emb}.class_embedding"),
            Rule(("params", "position_embedding"), f"{emb}.position_embedding.weight"),
            *_norm(("params", "pre_norm"), f"{p}pre_layrnorm"),
        ]
    for i in range(settings.num_layers):
        ours = ("params", f"layer_{i}")
        if vit:
            layer, new = f"{p}encoder.layer.{i}", f"{p}layers.{i}"
            attn = {
                "query": (f"{layer}.attention.attention.query", f"{new}.attention.q_proj"),
                "key": (f"{layer}.attention.attention.key", f"{new}.attention.k_proj"),
                "value": (f"{layer}.attention.attention.value", f"{new}.attention.v_proj"),
                "out": (f"{layer}.attention.output.dense", f"{new}.attention.o_proj"),
            }
            norms = {
                "attention_norm": (f"{layer}.layernorm_before", f"{new}.layernorm_before"),
                "mlp_norm": (f"{layer}.layernorm_after", f"{new}.layernorm_after"),
            }
            mlp = {
                "mlp_in": (f"{layer}.intermediate.dense", f"{new}.mlp.fc1"),
                "mlp_out": (f"{layer}.output.dense", f"{new}.mlp.fc2"),
            }
        else:
            layer = f"{p}encoder.layers.{i}"
            attn = {
                "query": (f"{layer}.self_attn.q_proj",),
                "key": (f"{layer}.self_attn.k_proj",),
                "value": (f"{layer}.self_attn.v_proj",),
                "out": (f"{layer}.self_attn.out_proj",),
            }
            norms = {
                "attention_norm": (f"{layer}.layer_norm1",),
                "mlp_norm": (f"{layer}.layer_norm2",),
            }
            mlp = {"mlp_in": (f"{layer}.mlp.fc1",), "mlp_out": (f"{layer}.mlp.fc2",)}

        for name, names in attn.items():
            here = (*ours, "attention", name)
            if name == "out":
                rules.append(_rule((*here, "kernel"), names, "weight", "heads_out"))
                rules.append(_rule((*here, "bias"), names, "bias"))
                continue
            rules.append(_rule((*here, "kernel"), names, "weight", "heads_in"))
            # qkv_bias=False: no bias to read; ours stays at its zero start, the same function.
            if not vit or settings.qkv_bias:
                rules.append(_rule((*here, "bias"), names, "bias", "reshape_flat"))
        for name, names in norms.items():
            rules.append(_rule((*ours, name, "scale"), names, "weight"))
            rules.append(_rule((*ours, name, "bias"), names, "bias"))
        for name, names in mlp.items():
            rules.append(_rule((*ours, name, "kernel"), names, "weight", "linear"))
            rules.append(_rule((*ours, name, "bias"), names, "bias"))
    if vit:
        rules += _norm(("params", "final_norm"), f"{p}layernorm")
    else:
        rules += _norm(("params", "pooled_norm"), f"{p}post_layernorm")
    return rules


def _state_prefix(state: Mapping[str, np.ndarray], settings: ViTSettings, path: str) -> str:
    """Where the tower's keys start: "", "vit." or "vision_model."."""
    if settings.kind == "vit":
        probe, prefixes = "embeddings.patch_embeddings.projection.weight", ("", "vit.")
    else:
        probe, prefixes = "embeddings.patch_embedding.weight", ("", "vision_model.")
    for prefix in prefixes:
        if prefix + probe in state:
            return prefix
    raise ConversionError(
        f"{path}: no {settings.kind} patch embedding among the weights (looked for "
        f"{', '.join(repr(p + probe) for p in prefixes)}); is it a checkpoint of this model?"
    )


def zero_variables(settings: ViTSettings) -> dict:
    """The tower's variable tree filled with zeros (shapes only: no random init of ~86 M)."""
    model = PretrainedViT(settings)
    pixels = jax.ShapeDtypeStruct((1, settings.image_size, settings.image_size, 3), jnp.float32)
    # Unboxed: the loader returns plain arrays, not logical-partitioning boxes.
    abstract = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), pixels))
    return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)


def from_hf_state(
    state: Mapping[str, np.ndarray], settings: ViTSettings, source: str = "HF ViT"
) -> tuple[dict, ImportReport]:
    """An HF state dict (numpy) → our variables for ``PretrainedViT(settings)``, and a report."""
    rules = vit_rules(settings, _state_prefix(state, settings, source))
    return import_weights(state, rules, zero_variables(settings), source)


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    """model.safetensors, or every shard a model.safetensors.index.json names."""
    from safetensors.numpy import load_file  # noqa: PLC0415

    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(single):
        files = [single]
    elif os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f).get("weight_map", {}).values()))
        files = [os.path.join(path, s) for s in shards]
        for shard in files:
            if not os.path.exists(shard):
                raise ConversionError(f"{path}: missing shard {os.path.basename(shard)}")
    else:
        hint = ""
        if any(os.path.exists(os.path.join(path, n)) for n in ("pytorch_model.bin", "model.pt")):
            hint = " (pickled torch weights are not read: re-save with safe_serialization=True)"
        raise ConversionError(f"{path}: missing model.safetensors{hint}")
    state: dict[str, np.ndarray] = {}
    for file in files:
        try:
            state.update(load_file(file))
        except KeyError as e:  # safetensors.numpy has no bfloat16
            raise ConversionError(
                f"{file}: tensor dtype {e} is not readable with numpy; save a float32 copy"
            ) from e
    return state


def load_hf_vit(directory: str | os.PathLike) -> tuple[ViTSettings, dict, ImportReport]:
    """An HF directory (config.json + safetensors) → (settings, variables, report).

    ``variables`` is ``{"params": ...}`` of numpy float32 arrays for ``PretrainedViT``;
    ``report`` lists restored tensors, ours left at their (zero) start, and checkpoint keys
    not used (poolers, classifiers, a CLIP text tower). Mean/std come from the directory's
    preprocessor_config.json when present, else the kind's convention.

    Raises:
      ConversionError (a ValueError): no such directory, a missing file, an unsupported
        model_type or setting, a missing tensor, or a shape that does not fit the config.
    """
    path = os.fspath(directory)
    if not os.path.isdir(path):
        raise ConversionError(f"{path}: no such directory (expected an HF model directory)")
    config_path = os.path.join(path, "config.json")
    if not os.path.exists(config_path):
        raise ConversionError(f"{path}: missing config.json")
    with open(config_path) as f:
        hf = json.load(f)
    settings = settings_from_hf(hf, config_path)
    mean_std = _preprocessor_mean_std(path)
    if mean_std:
        settings = dataclasses.replace(settings, **mean_std)
    variables, report = from_hf_state(
        _read_safetensors(path), settings, f"HF {settings.kind} {path}"
    )
    return settings, variables, report


# --- batch embedding ----------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _embed_fn(settings: ViTSettings):
    """One jitted uint8 batch → pooled embedding per settings (a fixed batch compiles once)."""
    model = PretrainedViT(settings)

    @jax.jit
    def embed(variables, images_uint8):
        pixels = pretrained_vit.normalize_images(images_uint8, settings)
        return model.apply(variables, pixels).pooled

    return embed


def embed_images(
    settings: ViTSettings, variables: Mapping, images_uint8: np.ndarray, batch_size: int
) -> np.ndarray:
    """Pooled embeddings of uint8 RGB images [N, S, S, 3] → float32 [N, hidden].

    For precomputing a corpus's image side once. Every batch has ``batch_size`` rows (the
    last is padded with zeros and the padding dropped), so one compiled function serves any
    N. Batches are dispatched without waiting; results are read back once at the end.
    """
    images = np.asarray(images_uint8)
    s = settings.image_size
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (s, s, 3):
        raise ValueError(
            f"images must be uint8 [N, {s}, {s}, 3] (resized to the model's size); got "
            f"{images.dtype} {images.shape}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = images.shape[0]
    if n == 0:
        return np.zeros((0, settings.hidden_size), np.float32)
    embed = _embed_fn(settings)
    variables = jax.device_put(variables)  # once, not per batch
    outputs = []
    for start in range(0, n, batch_size):
        batch = images[start : start + batch_size]
        if len(batch) < batch_size:
            pad = np.zeros((batch_size - len(batch), *batch.shape[1:]), np.uint8)
            batch = np.concatenate([batch, pad])
        outputs.append(embed(variables, jax.device_put(batch)))
    return np.concatenate(jax.device_get(outputs))[:n].astype(np.float32)
