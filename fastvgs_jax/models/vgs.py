"""The visually grounded branch: audio pooling (ResDAVEnet-style) and the image towers."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from fastvgs_jax.models import layers


def _conv(features: int, kernel: int, stride: int, dtype, name: str) -> nn.Conv:
    return nn.Conv(
        features,
        (kernel,),
        (stride,),
        padding=[(kernel // 2, kernel // 2)],
        use_bias=False,
        dtype=dtype,
        kernel_init=layers.partitioned(nn.initializers.he_normal(), (None, "conv_in", "conv_out")),
        name=name,
    )


def _batch_norm(name: str, deterministic: bool) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=deterministic,
        momentum=0.9,
        epsilon=1e-5,
        dtype=jnp.float32,
        scale_init=layers.partitioned(nn.initializers.ones, ("conv_out",)),
        bias_init=layers.partitioned(nn.initializers.zeros, ("conv_out",)),
        name=name,
    )


def bert_layer_settings(config: ml_collections.ConfigDict) -> dict:
    """The BERT-style layers of the VGS branch: one dropout everywhere, LayerNorm eps 1e-12."""
    return dict(
        num_heads=config.num_heads,
        mlp_dim=config.mlp_dim,
        dropout=config.dropout,
        attention_dropout=config.dropout,
        activation_dropout=0.0,
        layer_norm_eps=1e-12,
    )


def downsampled_mask(mask: jax.Array) -> jax.Array:
    """[batch, frames] → [batch, ceil(frames / 2)]: the mask after a stride-2 'same' conv."""
    return mask[:, ::2]


def masked_frame_mean(frames: jax.Array, frame_mask: jax.Array) -> jax.Array:
    """[batch, frames, dim], [batch, frames] bool → [batch, dim], the mean of the real frames
    (zero for a row without any)."""
    weight = frame_mask[..., None].astype(frames.dtype)
    return jnp.sum(frames * weight, 1) / jnp.maximum(jnp.sum(weight, 1), 1.0)


class ResidualBlock(nn.Module):
    """Two kernel-k convs over time with BatchNorm; a 1×1 conv shortcut when the shape changes."""

    features: int
    stride: int
    kernel: int = 9
    dtype: layers.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool):
        """x: [batch, frames, c], mask [batch, frames] → (y [batch, frames/stride, out], mask)."""
        out_mask = downsampled_mask(mask) if self.stride == 2 else mask
        bn_mask = out_mask[..., None]
        h = _conv(self.features, self.kernel, self.stride, self.dtype, "conv1")(x)
        h = nn.relu(_batch_norm("bn1", deterministic)(h, mask=bn_mask))
        h = jnp.where(bn_mask, h, 0).astype(self.dtype)
        h = _conv(self.features, self.kernel, 1, self.dtype, "conv2")(h)
        h = _batch_norm("bn2", deterministic)(h, mask=bn_mask)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = _conv(self.features, 1, self.stride, self.dtype, "shortcut")(x)
            shortcut = _batch_norm("shortcut_bn", deterministic)(shortcut, mask=bn_mask)
        y = nn.relu(h + shortcut)
        return jnp.where(bn_mask, y, 0).astype(self.dtype), out_mask


class AudioPooler(nn.Module):
    """Layer-``vgs_layer`` frames → one audio embedding (FaST-VGS's coarse audio branch).

    frames ─Linear→BN→ReLU→ residual stages (stride 2 each) → [B, T/16, D];
    CLS ─MLP→ prepended; one post-LN transformer layer (no positions); Linear of position 0.
    """

    config: ml_collections.ConfigDict  # the model config's ``audio_pool`` section
    dtype: layers.Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, frames: jax.Array, cls: jax.Array, frame_mask: jax.Array, deterministic: bool
    ) -> jax.Array:
        """frames: [batch, frames, embed], cls: [batch, embed], frame_mask [batch, frames]
        → audio embedding [batch, embed]."""
        c = self.config
        embed = frames.shape[-1]
        widths = tuple(c.widths)
        mask = frame_mask
        x = jnp.where(mask[..., None], frames, 0).astype(self.dtype)
        x = layers.dense(widths[0], ("embed", "conv_out"), self.dtype, "input_projection")(x)
        x = nn.relu(_batch_norm("input_bn", deterministic)(x, mask=mask[..., None]))
        x = jnp.where(mask[..., None], x, 0).astype(self.dtype)
        for stage, width in enumerate(widths):
            for block in range(c.blocks_per_stage):
                stride = 2 if block == 0 else 1
                x, mask = ResidualBlock(
                    width, stride, c.kernel, self.dtype, name=f"stage_{stage}_block_{block}"
                )(x, mask, deterministic)
        if x.shape[-1] != embed:
            raise ValueError(f"last audio_pool width {x.shape[-1]} must equal embed dim {embed}")
        head = layers.ClsMlp(self.dtype, name="cls_mlp")(cls.astype(self.dtype))
        x = jnp.concatenate([head[:, None, :], x], axis=1)
        mask = jnp.pad(mask, ((0, 0), (1, 0)), constant_values=True)
        x = layers.TransformerLayer(**bert_layer_settings(c), dtype=self.dtype, name="transformer")(
            x, mask, deterministic
        )
        return layers.dense(embed, ("embed", "embed_out"), self.dtype, "projection")(x[:, 0])


class MeanAudioPooler(nn.Module):
    """Layer-``vgs_layer`` frames → their masked mean → Linear (``audio_pool.kind="mean"``).

    Not the paper's branch: a minimal pooler for from-scratch runs. On the CPU demo, VGS alone
    at lr 3e-4 for 500 steps reached test S→I R@10 21.2 % with it against 16.4 % with the
    ResDAVEnet branch; at lr 1e-3 it stayed at chance, and so did VGS+ with it in every
    setting tried: it relies on the shared encoder for VGS features (docs/demo_design.md).
    """

    config: ml_collections.ConfigDict  # the model config's ``audio_pool`` section
    dtype: layers.Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, frames: jax.Array, cls: jax.Array, frame_mask: jax.Array, deterministic: bool
    ) -> jax.Array:
        """frames: [batch, frames, embed], frame_mask [batch, frames] → [batch, embed]."""
        del cls, deterministic
        mean = masked_frame_mean(frames.astype(jnp.float32), frame_mask)
        return layers.dense(frames.shape[-1], ("embed", "embed_out"), self.dtype, "projection")(
            mean.astype(self.dtype)
        )


class ConvImageTower(nn.Module):
    """Pixels → embedding with strided 3×3 convs (LayerNorm, GELU), a global mean and a Linear.

    No transformer: on a CPU demo trained from scratch it leaves chance within ~100 steps,
    where a from-scratch ViT kept the coarse loss at chance (docs/demo_design.md).
    """

    widths: tuple[int, ...]
    embed_dim: int
    dtype: layers.Dtype = jnp.float32
    frozen: bool = False  # a pretrained tower: gradients stop before the projection

    @nn.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        """image: [batch, H, W, 3] → [batch, embed]; each conv halves H and W."""
        x = image.astype(self.dtype)
        for k, width in enumerate(self.widths):
            x = nn.Conv(
                width,
                (3, 3),
                (2, 2),
                padding="SAME",
                dtype=self.dtype,
                kernel_init=layers.partitioned(
                    nn.initializers.lecun_normal(), (None, None, None, "conv_out")
                ),
                bias_init=layers.partitioned(nn.initializers.zeros, ("conv_out",)),
                name=f"conv_{k}",
            )(x)
            x = layers.gelu(layers.layer_norm(1e-6, f"norm_{k}", "conv_out")(x).astype(self.dtype))
        features = x.mean(axis=(1, 2))
        if self.frozen:  # no backward pass through convs that are never updated
            features = jax.lax.stop_gradient(features)
        return layers.dense(self.embed_dim, ("conv_out", "embed"), self.dtype, "projection")(
            features
        )


class ImageEncoder(nn.Module):
    """Image → embedding: region features + boxes, or ViT patches; then BERT layers on a CLS.

    ``kind="cnn"`` (pixels) is the small conv tower above instead, for from-scratch CPU runs.

    ``kind="regions"`` (FaST-VGS, detector features): LN(Linear(features)) and LN(Linear(boxes))
    averaged. ``kind="vit"`` (pixels): a patch-embedding conv plus learned positions.
    A learned CLS is prepended; the CLS output goes through the MLP head.
    """

    config: ml_collections.ConfigDict  # the model config's ``image`` section
    embed_dim: int
    dtype: layers.Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        image: jax.Array | None = None,
        regions: jax.Array | None = None,
        boxes: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        """image: [batch, H, W, 3], or regions [batch, R, feat] with boxes [batch, R, 4] (x1, y1,
        x2, y2 divided by the image size) → image embedding [batch, embed]."""
        c = self.config
        d = self.embed_dim
        if c.kind == "cnn":
            if image is None:
                raise ValueError("image.kind='cnn' needs pixels [batch, H, W, 3]")
            frozen = bool(c.get("cnn_frozen", False))
            return ConvImageTower(tuple(c.cnn_widths), d, self.dtype, frozen, name="cnn")(image)
        if c.kind == "regions":
            if regions is None or boxes is None:
                raise ValueError("image.kind='regions' needs region features and boxes")
            f = layers.dense(d, ("region", "embed"), self.dtype, "region_projection")(regions)
            b = layers.dense(d, (None, "embed"), self.dtype, "box_projection")(boxes)
            f = layers.layer_norm(1e-12, "region_norm")(f)
            b = layers.layer_norm(1e-12, "box_norm")(b)
            x = ((f + b) / 2).astype(self.dtype)
        elif c.kind == "vit":
            if image is None:
                raise ValueError("image.kind='vit' needs pixels [batch, H, W, 3]")
            if image.shape[1] % c.patch_size or image.shape[2] % c.patch_size:
                raise ValueError(
                    f"image {image.shape[1]}x{image.shape[2]} is not a multiple of "
                    f"patch_size {c.patch_size}"
                )
            p = c.patch_size
            x = nn.Conv(
                d,
                (p, p),
                (p, p),
                padding="VALID",
                dtype=self.dtype,
                kernel_init=layers.partitioned(layers.LINEAR_INIT, (None, None, None, "embed")),
                bias_init=layers.partitioned(nn.initializers.zeros, ("embed",)),
                name="patch_embedding",
            )(image.astype(self.dtype))
            x = x.reshape(x.shape[0], -1, d)
            positions = self.param(
                "positions",
                layers.partitioned(layers.LINEAR_INIT, (None, "embed")),
                (x.shape[1], d),
            )
            x = layers.layer_norm(1e-12, "patch_norm")(x + positions).astype(self.dtype)
        else:
            raise ValueError(
                f"unknown image encoder {c.kind!r}; expected 'regions', 'vit' or 'cnn'"
            )
        x = nn.Dropout(c.dropout)(x, deterministic=deterministic)
        cls = self.param("cls", layers.partitioned(layers.LINEAR_INIT, ("embed",)), (d,))
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, d)), x], 1)
        hidden = layers.TransformerStack(
            c.num_layers, **bert_layer_settings(c), dtype=self.dtype, name="transformer"
        )(x, None, deterministic)
        return layers.ClsMlp(self.dtype, name="cls_mlp")(hidden[-1][:, 0])
