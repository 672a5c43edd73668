"""A frozen, pretrained vision transformer: the image side of VGS on photographs.

    from fastvgs_jax.convert import vit
    settings, variables, report = vit.load_hf_vit("path/to/facebook-dino-vitb16")
    model = PretrainedViT(settings)
    out = model.apply(variables, normalize_images(images_uint8, settings))
    out.pooled  # [batch, hidden]          out.tokens  # [batch, 1 + patches, hidden]

One module computes what HF transformers computes for two families (same weights, same
numbers up to float rounding):

- ``kind="vit"``: ``ViTModel(add_pooling_layer=False)``, e.g. DINO ViT-B/16
  (facebook/dino-vitb16). Patch conv (with bias) → prepend CLS → + learned positions →
  pre-LN blocks (exact erf GELU) → final LayerNorm on every token. ``tokens`` is HF's
  ``last_hidden_state``; ``pooled`` is its CLS row (DINO's image embedding; HF's optional
  tanh pooler is a fine-tuning head that DINO never trained, so it is not computed).
- ``kind="clip"``: ``CLIPVisionModel``, e.g. openai/clip-vit-base-patch16. Patch conv (no
  bias) → prepend ``class_embedding`` → + positions → ``pre_layrnorm`` → pre-LN blocks
  (quick_gelu) → ``post_layernorm`` on the CLS only. ``tokens`` is HF's ``last_hidden_state``
  (no norm after the last block, as in HF); ``pooled`` is HF's ``pooler_output`` (before the
  CLIPModel's ``visual_projection``, which a VGS model replaces with its own).

Pixels come in channels-last, already normalised with the model's preprocessing mean/std
(``normalize_images`` does it from uint8; resizing to ``image_size`` is the caller's job):

- "vit" (DINO): ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), as in
  facebook/dino-vit*'s preprocessor_config.json. (Google's ViT checkpoints use 0.5/0.5; the
  loader reads the directory's preprocessor_config.json when there is one.)
- "clip": OpenAI CLIP mean (0.48145466, 0.4578275, 0.40821073), std (0.26862954,
  0.26130258, 0.27577711).

Only the configured image size is accepted: HF interpolates position embeddings with torch's
bicubic (a = -0.75, align_corners=False), which ``jax.image.resize`` (a = -0.5) does not
reproduce, so another size would silently give different embeddings than the reference.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fastvgs_jax.models import layers

KINDS = ("vit", "clip")
ACTIVATIONS = ("gelu", "quick_gelu", "gelu_tanh")

# Preprocessing conventions (transformers.utils.constants: IMAGENET_DEFAULT_*, OPENAI_CLIP_*).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Per kind, what HF's config classes default to where the two families differ.
_KIND_DEFAULTS = {
    "vit": dict(
        layer_norm_eps=1e-12, activation="gelu", image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    ),
    "clip": dict(
        layer_norm_eps=1e-5, activation="quick_gelu", image_mean=CLIP_MEAN, image_std=CLIP_STD
    ),
}


@dataclasses.dataclass(frozen=True)
class ViTSettings:
    """What fixes a pretrained ViT's architecture and input convention (hashable: a jit key).

    Defaults are ViT-B/16 at 224 px; ``default_settings(kind)`` fills the kind's norm eps,
    activation and mean/std.
    """

    kind: str  # "vit" (HF ViTModel, e.g. DINO) or "clip" (HF CLIPVisionModel)
    hidden_size: int = 768  # token width D
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072  # HF intermediate_size
    patch_size: int = 16  # square patches, stride = patch size
    image_size: int = 224  # square input; the only size accepted (see module docstring)
    layer_norm_eps: float = 1e-12  # ViTConfig: 1e-12, CLIPVisionConfig: 1e-5
    activation: str = "gelu"  # "gelu" (erf), "quick_gelu" (x·σ(1.702x)), "gelu_tanh"
    qkv_bias: bool = True  # ViTConfig.qkv_bias; CLIP always has q/k/v biases
    image_mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB, for pixels scaled to [0, 1]
    image_std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {KINDS}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} not divisible by {self.num_heads}")
        if self.image_size % self.patch_size:
            # torch's strided conv would drop the remainder pixels; no checkpoint does this.
            raise ValueError(f"image_size {self.image_size} not a multiple of {self.patch_size}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need one value per RGB channel")

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """CLS + patches: the length of ``tokens`` and of the position table."""
        return 1 + self.grid**2


def default_settings(kind: str, **overrides) -> ViTSettings:
    """ViT-B/16-224 settings of ``kind`` with that family's eps, activation and mean/std."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    return ViTSettings(kind=kind, **{**_KIND_DEFAULTS[kind], **overrides})


def normalize_images(images: np.ndarray | jax.Array, settings: ViTSettings) -> jax.Array:
    """uint8 RGB [batch, H, W, 3] → float32 [batch, H, W, 3] as the model's processor makes it.

    (x / 255 − mean) / std, the processor's rescale then normalise (no resize, no crop).
    """
    if images.shape[-1] != 3:
        raise ValueError(f"images must be RGB [..., H, W, 3]; got shape {tuple(images.shape)}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0..255); got {images.dtype}")
    mean = jnp.asarray(settings.image_mean, jnp.float32)
    std = jnp.asarray(settings.image_std, jnp.float32)
    return (jnp.asarray(images).astype(jnp.float32) / 255.0 - mean) / std


def _activation(name: str, x: jax.Array) -> jax.Array:
    if name == "gelu":
        return layers.gelu(x)
    if name == "quick_gelu":  # CLIP's sigmoid approximation: x·σ(1.702x)
        return x * jax.nn.sigmoid(1.702 * x)
    return jax.nn.gelu(x, approximate=True)  # HF gelu_new / gelu_pytorch_tanh


class ViTOutput(NamedTuple):
    pooled: jax.Array  # [batch, hidden]: the image embedding (see module docstring per kind)
    tokens: jax.Array  # [batch, 1 + patches, hidden]: HF's last_hidden_state, CLS first


class PreLNBlock(nn.Module):
    """x + Attention(LN(x)), then x + MLP(LN(x)): HF ViTLayer and CLIPEncoderLayer alike."""

    settings: ViTSettings
    dtype: layers.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [batch, tokens, hidden] → [batch, tokens, hidden]."""
        s = self.settings
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        h = layers.layer_norm(s.layer_norm_eps, "attention_norm")(x).astype(self.dtype)
        # No padding among image tokens: no mask. A bias-less checkpoint (qkv_bias=False)
        # leaves the q/k/v biases at zero, which computes exactly the same.
        x = x + layers.SelfAttention(s.num_heads, 0.0, self.dtype, name="attention")(h, None, True)
        h = layers.layer_norm(s.layer_norm_eps, "mlp_norm")(x).astype(self.dtype)
        h = layers.dense(s.mlp_dim, ("embed", "mlp"), self.dtype, "mlp_in")(h)
        h = _activation(s.activation, h)
        return x + layers.dense(s.hidden_size, ("mlp", "embed"), self.dtype, "mlp_out")(h)


class PretrainedViT(nn.Module):
    """Normalised pixels [batch, S, S, 3] → ``ViTOutput`` (pooled [batch, D], tokens).

    ``S`` must equal ``settings.image_size``. With ``frozen`` (the default) both outputs stop
    gradients, so a training step never runs a backward pass through the tower's ~86 M
    parameters; the optimizer must still leave them alone (e.g. a zero-update mask).
    """

    settings: ViTSettings
    dtype: layers.Dtype = jnp.float32  # activation dtype; norms and softmax stay fp32
    frozen: bool = True

    @nn.compact
    def __call__(self, pixels: jax.Array) -> ViTOutput:
        s = self.settings
        if pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise ValueError(f"pixels must be [batch, H, W, 3]; got shape {pixels.shape}")
        if pixels.shape[1:3] != (s.image_size, s.image_size):
            raise ValueError(
                f"image size {pixels.shape[1]}x{pixels.shape[2]} does not match the model's "
                f"{s.image_size}x{s.image_size}: resize (and crop) the images to that size "
                "first; position embeddings are not interpolated (torch's bicubic is not "
                "reproducible exactly here)"
            )
        batch = pixels.shape[0]
        # Non-overlapping p×p patches, each linearly projected: HF's Conv2d(stride=p).
        patches = nn.Conv(
            s.hidden_size,
            (s.patch_size, s.patch_size),
            strides=(s.patch_size, s.patch_size),
            padding="VALID",
            use_bias=s.kind == "vit",  # CLIP's patch_embedding has bias=False
            dtype=self.dtype,
            kernel_init=layers.partitioned(layers.LINEAR_INIT, (None, None, None, "embed")),
            bias_init=layers.partitioned(nn.initializers.zeros, ("embed",)),
            name="patch_embedding",
        )(pixels.astype(self.dtype))
        # [batch, grid, grid, D] → [batch, grid², D], row-major like torch's flatten(2).
        patches = patches.reshape(batch, s.grid**2, s.hidden_size)
        cls = self.param(
            "cls", layers.partitioned(layers.LINEAR_INIT, ("embed",)), (s.hidden_size,)
        )
        positions = self.param(
            "position_embedding",
            layers.partitioned(layers.LINEAR_INIT, ("length", "embed")),
            (s.num_tokens, s.hidden_size),
        )
        cls = jnp.broadcast_to(cls.astype(self.dtype), (batch, 1, s.hidden_size))
        x = jnp.concatenate([cls, patches], axis=1) + positions.astype(self.dtype)
        if s.kind == "clip":
            x = layers.layer_norm(s.layer_norm_eps, "pre_norm")(x).astype(self.dtype)
        for i in range(s.num_layers):
            x = PreLNBlock(s, self.dtype, name=f"layer_{i}")(x)
        if s.kind == "vit":
            tokens = layers.layer_norm(s.layer_norm_eps, "final_norm")(x)
            pooled = tokens[:, 0]
        else:
            tokens = x
            pooled = layers.layer_norm(s.layer_norm_eps, "pooled_norm")(x[:, 0])
        out = ViTOutput(pooled.astype(jnp.float32), tokens.astype(jnp.float32))
        if self.frozen:
            out = jax.tree.map(jax.lax.stop_gradient, out)
        return out
