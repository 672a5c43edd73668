"""FaST-VGS+ (coarse): one speech encoder, a wav2vec 2.0 head and a dual-encoder VGS head.

One masked forward pass of the speech encoder feeds both objectives: its last layer the SSL
head, its layer ``vgs_layer`` the audio pooler (as in the reference, the VGS branch sees the
masked input during joint training). Losses live in ``fastvgs_jax.losses``.
"""

from __future__ import annotations

import functools
import json
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fastvgs_jax.models import layers, quantizer, speech, vgs


class SslOutputs(NamedTuple):
    context: jax.Array  # [batch, frames, final_dim] last layer, projected (CLS removed)
    targets: jax.Array  # [batch, frames, final_dim] projected quantized frontend features
    codes: jax.Array  # [batch, frames, groups] int32
    soft_probs: jax.Array  # [batch, frames, groups, entries]


class ModelOutputs(NamedTuple):
    encoder: speech.EncoderOutput
    ssl: SslOutputs | None
    audio_embedding: jax.Array | None  # [batch, embed]
    image_embedding: jax.Array | None  # [batch, embed]


def check_model_config(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the field for inconsistent sizes (before anything compiles)."""
    if config.hidden_dim % config.num_heads:
        raise ValueError(f"model.hidden_dim {config.hidden_dim} % num_heads {config.num_heads}")
    if not 1 <= config.vgs_layer <= config.num_layers:
        raise ValueError(f"model.vgs_layer={config.vgs_layer} outside [1, {config.num_layers}]")
    if config.hidden_dim % config.pos_conv_groups:
        raise ValueError("model.hidden_dim must be divisible by model.pos_conv_groups")
    q = config.quantizer
    if q.codevector_dim % q.groups:
        raise ValueError("model.quantizer.codevector_dim must be divisible by quantizer.groups")
    if config.audio_pool.widths[-1] != config.hidden_dim:
        raise ValueError("model.audio_pool.widths[-1] must equal model.hidden_dim")
    if config.image.kind not in ("vit", "regions", "cnn"):
        raise ValueError(
            f"model.image.kind={config.image.kind!r}; expected 'vit', 'regions' or 'cnn'"
        )
    if config.coarse.loss not in ("margin", "clip"):
        raise ValueError(f"model.coarse.loss={config.coarse.loss!r}; expected 'margin' or 'clip'")
    speech.frame_geometry(config)  # validates the frontend name


# Top-level parameter subtrees that only the coarse (VGS) loss trains: the image tower, the
# audio pooler and the CLIP scale. Adam normalises each parameter's update by its own
# gradient scale, so a loss weight cannot slow them; ``vgs_branch_lr_scale`` can.
VGS_BRANCH = ("audio_pooler", "image_encoder", "log_scale")
# Where the frontend's parameters live; ``frontend_grad_scale`` = 0 freezes this subtree.
FRONTEND_PATH = ("speech_encoder", "frontend")
# Where the conv image tower lives (image.kind="cnn"); its convs freeze at image.cnn_frozen.
IMAGE_TOWER_PATH = ("image_encoder", "cnn")


def frozen_prefixes(config: ml_collections.ConfigDict) -> tuple[tuple[str, ...], ...]:
    """Parameter-path prefixes that training never changes: the frontend when
    ``frontend_grad_scale`` is 0, a pretrained conv image tower's convs (not its projection)
    when ``image.cnn_frozen``."""
    prefixes = [FRONTEND_PATH] if config.frontend_grad_scale == 0 else []
    if config.image.kind == "cnn" and config.image.get("cnn_frozen", False):
        for k in range(len(config.image.cnn_widths)):
            prefixes += [(*IMAGE_TOWER_PATH, f"conv_{k}"), (*IMAGE_TOWER_PATH, f"norm_{k}")]
    return tuple(prefixes)


class FaSTVGSPlus(nn.Module):
    """The model of the study (FaST-VGS+ without the fine cross-encoder, as the study drops it)."""

    config: ml_collections.ConfigDict  # the run config's ``model`` section
    dtype: layers.Dtype = jnp.float32

    def setup(self):
        c = self.config
        check_model_config(c)
        self.speech_encoder = speech.SpeechEncoder(c, self.dtype)
        q = c.quantizer
        self.quantizer = quantizer.GumbelQuantizer(
            q.groups, q.entries, q.codevector_dim, q.projection_init_std
        )
        self.target_projection = layers.dense(
            q.final_dim, ("codevector", "final"), jnp.float32, "target_projection"
        )
        self.context_projection = layers.dense(
            q.final_dim, ("embed", "final"), jnp.float32, "context_projection"
        )
        pooler = {"resdavenet": vgs.AudioPooler, "mean": vgs.MeanAudioPooler}
        kind = c.audio_pool.get("kind", "resdavenet")
        if kind not in pooler:
            raise ValueError(f"audio_pool.kind={kind!r}; expected one of {sorted(pooler)}")
        self.audio_pooler = pooler[kind](c.audio_pool, self.dtype)
        self.image_encoder = vgs.ImageEncoder(c.image, c.hidden_dim, self.dtype)
        if c.coarse.loss == "clip":
            self.log_scale = self.param(
                "log_scale", nn.initializers.constant(c.coarse.init_log_scale), ()
            )

    def __call__(
        self,
        audio: jax.Array,
        frame_mask: jax.Array,
        image: jax.Array | None = None,
        regions: jax.Array | None = None,
        boxes: jax.Array | None = None,
        *,
        mask_positions: jax.Array | None = None,
        temperature: jax.Array | float = 2.0,
        deterministic: bool = True,
        ssl: bool = True,
        vgs: bool = True,
        gumbel_noise: jax.Array | None = None,
    ) -> ModelOutputs:
        """The outputs both objectives need, from one speech-encoder pass.

        Args:
          audio: [batch, samples]; frame_mask: [batch, frames] bool.
          image / regions + boxes: the image input of the configured image encoder.
          mask_positions: [batch, frames] bool frames replaced by the mask embedding.
          temperature: Gumbel softmax temperature (``quantizer.gumbel_temperature``).
          ssl / vgs: which heads to run; the encoder stops at ``vgs_layer`` without SSL.
          gumbel_noise: optional fixed noise for the quantizer (parity tests).
        """
        c = self.config
        depth = c.num_layers if ssl else c.vgs_layer
        encoded = self.speech_encoder(
            audio,
            frame_mask,
            mask_positions,
            deterministic=deterministic,
            num_layers=depth,
        )
        ssl_out = None
        if ssl:
            q = self.quantizer(encoded.features, temperature, deterministic, gumbel_noise)
            last = speech.frames_of(encoded.hidden_states[c.num_layers], encoded.has_cls)
            ssl_out = SslOutputs(
                self.context_projection(last.astype(jnp.float32)),
                self.target_projection(q.quantized),
                q.codes,
                q.soft_probs,
            )
        audio_embedding = image_embedding = None
        if vgs:
            audio_embedding = self.pool_audio(encoded, deterministic, mask_positions)
            image_embedding = self.image_encoder(image, regions, boxes, deterministic=deterministic)
        return ModelOutputs(encoded, ssl_out, audio_embedding, image_embedding)

    def pool_audio(
        self,
        encoded: speech.EncoderOutput,
        deterministic: bool = True,
        mask_positions: jax.Array | None = None,
    ) -> jax.Array:
        """[batch, embed] audio embedding from the encoder's layer ``vgs_layer``.

        mask_positions: [batch, frames] bool, the SSL span mask of this pass; with
        ``audio_pool.skip_masked`` those frames are left out like padding.
        """
        hidden = encoded.hidden_states[self.config.vgs_layer]
        frames = speech.frames_of(hidden, encoded.has_cls)
        mask = encoded.frame_mask
        if mask_positions is not None and self.config.audio_pool.get("skip_masked", False):
            mask = mask & ~mask_positions
        # Without a learned CLS (e.g. an imported plain wav2vec2) the mean frame stands in.
        cls = hidden[:, 0] if encoded.has_cls else vgs.masked_frame_mean(frames, mask)
        return self.audio_pooler(frames, cls, mask, deterministic)

    def encode_image(self, image=None, regions=None, boxes=None) -> jax.Array:
        """[batch, embed] image embedding, evaluation mode."""
        return self.image_encoder(image, regions, boxes, deterministic=True)

    def encode_audio(self, audio: jax.Array, frame_mask: jax.Array) -> jax.Array:
        """[batch, embed] audio embedding from unmasked audio, evaluation mode."""
        encoded = self.speech_encoder(
            audio, frame_mask, deterministic=True, num_layers=self.config.vgs_layer
        )
        return self.pool_audio(encoded, deterministic=True)

    def hidden_states(
        self, audio: jax.Array, frame_mask: jax.Array, num_layers: int | None = None
    ) -> speech.EncoderOutput:
        """The speech encoder's outputs on unmasked audio (features for ABX)."""
        return self.speech_encoder(audio, frame_mask, deterministic=True, num_layers=num_layers)


def example_inputs(config: ml_collections.ConfigDict, batch: int = 1, seconds: float = 1.0):
    """Zero inputs of the right shapes for ``init`` (audio, frame_mask, image, regions, boxes).

    numpy, not jax arrays: they are captured by cached jitted initialisers, and a jax array
    created under a trace (e.g. inside ``eval_shape``) would leak that trace.
    """
    samples = int(seconds * 16_000)
    frames = speech.frame_geometry(config).num_frames(samples)
    audio = np.zeros((batch, samples), np.float32)
    frame_mask = np.ones((batch, frames), bool)
    image = regions = boxes = None
    if config.image.kind in ("vit", "cnn"):
        size = int(config.image.get("image_size", 64))  # sizes the ViT's position table
        image = np.zeros((batch, size, size, 3), np.float32)
    else:
        regions = np.zeros((batch, config.image.num_regions, config.image.region_dim), np.float32)
        boxes = np.zeros((batch, config.image.num_regions, 4), np.float32)
    return audio, frame_mask, image, regions, boxes


def split_run_key(run_key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(parameter-initialisation key, step key) of a run's key. Every run of a seed starts
    from the same parameters, and the random-init baseline of evaluation is that encoder."""
    init_key, step_key = jax.random.split(run_key)
    return init_key, step_key


def init_variables(config: ml_collections.ConfigDict, key: jax.Array) -> dict:
    """Freshly initialised variables ({"params", "batch_stats"}), logical-axis boxes removed."""
    return _jitted_init(config.to_json())(key)


@functools.lru_cache(maxsize=16)
def _jitted_init(config_json: str):
    # Jitted (op-by-op initialisation compiles every op separately) and cached per config,
    # so repeated initialisations of one architecture compile once.
    config = ml_collections.ConfigDict(json.loads(config_json))
    model = FaSTVGSPlus(config)
    inputs = example_inputs(config)
    return jax.jit(lambda key: nn.meta.unbox(model.init({"params": key}, *inputs)))


def abstract_variables(config: ml_collections.ConfigDict) -> dict:
    """Shapes and dtypes of ``init_variables`` without computing anything."""
    return jax.eval_shape(_jitted_init(config.to_json()), jax.random.key(0))
