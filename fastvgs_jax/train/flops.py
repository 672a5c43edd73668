"""FLOPs of a training step: an analytic count from the model config, XLA's own count of the
jitted step, and parameter counts by part.

``step_flops`` counts what one call of the trainer's step computes on a global batch, part
by part, from the config alone (no tracing). Conventions (``CONVENTION``):

- A multiply-add is 2 FLOPs. Counted: every matmul and convolution, and the log-mel
  frontend's real FFT (2.5·n·log2 n per transform of length n). Not counted: elementwise
  ops, norms, softmax, gathers, the optimiser update. So the count is of the
  matmul-dominated work; XLA's count adds the elementwise work on top and is a few percent
  higher where matmuls dominate.
- Backward: a matmul ``y = x·W`` costs its forward FLOPs once more for every operand that
  needs a gradient: ``dx`` when ``x`` carries gradient to a parameter below it, ``dW`` when
  ``W`` trains. Hence 3× forward for a hidden layer (and for the attention products, where
  both operands carry gradient); 2× for a layer on the raw input (the frontend's first conv
  on the waveform, the image tower's first conv or patch embedding on pixels, the region
  projections); 1× (forward only) for what never gets a gradient: the FFT and mel
  filterbank, a frontend frozen by ``frontend_grad_scale`` = 0, a frozen conv image tower
  (``image.cnn_frozen``: its projection is 2×, no gradient flows into the convs).
- Padded frames count: they are computed. A convolution costs its full kernel at every output
  (taps that fall on its zero padding included). The batch is the global batch.
- Model FLOPs: the recomputation of rematerialised layers (``remat``) is reported apart, in
  ``recompute``, and not in ``total`` (MFU is model FLOPs over peak; XLA's count includes it).

Known differences from XLA's cost analysis (``xla_step_flops``), a few percent in all where
matmuls dominate (measured: analytic / XLA = 0.986-1.004 for the small and base presets; 0.92-0.93
for the tiny one, whose 32-wide layers leave the elementwise work a larger share): XLA counts
elementwise ops (higher: GELU is over ten FLOPs per element); it skips convolution taps
on padding (lower: the positional conv and the audio pooler's convs on short utterances); it
counts a while loop's body once, so the positional conv's kernel gradient (a scan over its
taps, ``conv1d.grouped_conv1d``) appears at 1/kernel of its cost (lower).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from fastvgs_jax.models import fastvgs, sharding, speech
from fastvgs_jax.train import optimizer as optimizer_lib
from fastvgs_jax.train import step as step_lib

SAMPLE_RATE = 16_000  # every frontend reads 16 kHz audio
# The step FLOPs XLA reports may differ from the analytic count by this share (see module doc).
TOLERANCE = 0.10

CONVENTION = (
    "2 FLOPs per multiply-add of every matmul and convolution (full kernel at every output; "
    "+ 2.5·n·log2 n per real FFT); "
    "elementwise ops, norms, softmax, gathers and the optimiser update not counted; backward = "
    "forward once more per operand that needs a gradient (3× for hidden layers, 2× on raw "
    "inputs or frozen weights, 1× for frozen towers); padded frames counted; global batch; "
    "remat recomputation in 'recompute', not in 'total'"
)


class _Tally:
    """Forward and backward FLOPs per named part."""

    def __init__(self):
        self.parts: dict[str, list[float]] = {}

    def add(self, part: str, forward: float, grads: int) -> None:
        """``forward`` FLOPs of a matmul or conv, ``grads`` (0, 1, 2) of whose operands need a
        gradient: its backward costs ``grads`` × forward."""
        entry = self.parts.setdefault(part, [0.0, 0.0])
        entry[0] += float(forward)
        entry[1] += float(grads * forward)

    def forward(self, parts) -> float:
        return sum(self.parts[p][0] for p in parts if p in self.parts)


def _transformer_layer(
    tally: _Tally, parts: tuple[str, str, str], batch: int, tokens: int, dim: int, mlp: int
) -> None:
    """One post-LN layer (``layers.TransformerLayer``) on [batch, tokens, dim]: q, k, v and
    output projections; scores q·kᵀ and the weighted sum of values; the two MLP matmuls.
    Every operand carries gradient (3×). ``parts``: (projections, attention, mlp) names."""
    projections, attention, mlp_part = parts
    tally.add(projections, 4 * 2 * batch * tokens * dim * dim, 2)
    tally.add(attention, 2 * 2 * batch * tokens * tokens * dim, 2)
    tally.add(mlp_part, 2 * 2 * batch * tokens * dim * mlp, 2)


def _frontend(tally: _Tally, c: ml_collections.ConfigDict, batch: int, samples: int):
    """Frontend FLOPs; returns (frames, feature width)."""
    trainable = float(c.frontend_grad_scale) != 0.0
    if c.frontend == "cnn":
        length, c_in = samples, 1
        convs = zip(c.cnn.channels, c.cnn.kernels, c.cnn.strides, strict=True)
        for i, (ch, k, s) in enumerate(convs):
            length = (length - k) // s + 1
            if length <= 0:
                break
            # conv 0 reads the waveform (no input gradient); the rest are hidden layers.
            grads = (1 if i == 0 else 2) if trainable else 0
            tally.add("frontend", 2 * batch * length * k * c_in * ch, grads)
            c_in = ch
        return max(length, 0), int(c.cnn.channels[-1])
    if c.frontend == "logmel":
        m = c.logmel
        length = (samples - m.window) // m.hop + 1
        if length <= 0:
            return 0, int(m.channels)
        n = int(m.fft_size)
        tally.add("frontend", batch * length * 2.5 * n * math.log2(n), 0)  # rfft
        tally.add("frontend", 2 * batch * length * (n // 2 + 1) * m.num_mels, 0)  # filterbank
        # The first conv's input needs a gradient only for the parameters of mel_norm
        # (normalize="frame"); CMVN ("utterance") has none.
        first = (2 if m.get("normalize", "frame") == "frame" else 1) if trainable else 0
        c_in = int(m.num_mels)
        for i, (k, s) in enumerate(zip(m.conv_kernels, m.conv_strides, strict=True)):
            length = (length - k) // s + 1
            if length <= 0:
                break
            grads = first if i == 0 else (2 if trainable else 0)
            tally.add("frontend", 2 * batch * length * k * c_in * m.channels, grads)
            c_in = int(m.channels)
        return max(length, 0), int(m.channels)
    raise ValueError(f"unknown frontend {c.frontend!r}; expected 'cnn' or 'logmel'")


def _audio_pooler(tally: _Tally, c: ml_collections.ConfigDict, batch: int, frames: int) -> None:
    """``vgs.AudioPooler`` (or ``MeanAudioPooler``) on [batch, frames, hidden_dim]."""
    a, d = c.audio_pool, int(c.hidden_dim)
    part = "audio_pooler"
    if a.get("kind", "resdavenet") == "mean":
        tally.add(part, 2 * batch * d * d, 2)
        return
    widths = tuple(int(w) for w in a.widths)
    tally.add(part, 2 * batch * frames * d * widths[0], 2)  # input projection
    length, c_in, k = frames, widths[0], int(a.kernel)
    for width in widths:
        for block in range(int(a.blocks_per_stage)):
            stride = 2 if block == 0 else 1
            length = (length + 2 * (k // 2) - k) // stride + 1
            tally.add(part, 2 * batch * length * k * c_in * width, 2)  # conv1
            tally.add(part, 2 * batch * length * k * width * width, 2)  # conv2
            if stride != 1 or c_in != width:
                tally.add(part, 2 * batch * length * c_in * width, 2)  # 1×1 shortcut
            c_in = width
    tally.add(part, 8 * batch * d * d, 2)  # CLS MLP d → 2d → d
    _transformer_layer(tally, (part,) * 3, batch, length + 1, d, int(a.mlp_dim))
    tally.add(part, 2 * batch * d * d, 2)  # projection of position 0


def _image_shape(c: ml_collections.ConfigDict, batch: int, image_batch_shape) -> tuple[int, ...]:
    im = c.image
    if image_batch_shape is None:
        if im.kind == "regions":
            return (batch, int(im.num_regions), int(im.region_dim))
        size = int(im.get("image_size", 64))
        return (batch, size, size, 3)
    shape = tuple(int(s) for s in image_batch_shape)
    if shape[0] != batch:
        raise ValueError(f"image_batch_shape {shape} does not start with the batch {batch}")
    return shape


def _image_encoder(tally: _Tally, c: ml_collections.ConfigDict, shape: tuple[int, ...]) -> None:
    """``vgs.ImageEncoder`` on pixels [B, H, W, 3] (vit, cnn) or regions [B, R, feat]."""
    im, d, part = c.image, int(c.hidden_dim), "image_encoder"
    batch = shape[0]
    if im.kind == "cnn":
        frozen = bool(im.get("cnn_frozen", False))
        h, w, c_in = shape[1], shape[2], shape[3]
        for k, width in enumerate(im.cnn_widths):
            h, w = -(-h // 2), -(-w // 2)  # 3×3, stride 2, SAME
            grads = 0 if frozen else (1 if k == 0 else 2)
            tally.add(part, 2 * batch * h * w * 9 * c_in * width, grads)
            c_in = int(width)
        tally.add(part, 2 * batch * c_in * d, 1 if frozen else 2)  # projection
        return
    if im.kind == "vit":
        p = int(im.patch_size)
        tokens = (shape[1] // p) * (shape[2] // p)
        tally.add(part, 2 * batch * tokens * p * p * shape[3] * d, 1)  # patch embedding
    elif im.kind == "regions":
        tokens, features = shape[1], shape[2]
        tally.add(part, 2 * batch * tokens * features * d, 1)  # region projection
        tally.add(part, 2 * batch * tokens * 4 * d, 1)  # box projection
    else:
        raise ValueError(f"unknown image encoder {im.kind!r}; expected 'vit', 'regions' or 'cnn'")
    for _ in range(int(im.num_layers)):
        _transformer_layer(tally, (part,) * 3, batch, tokens + 1, d, int(im.mlp_dim))
    tally.add(part, 8 * batch * d * d, 2)  # CLS MLP


def expected_masked_share(num_frames: int, prob: float, span: int, min_spans: int) -> float:
    """Expected share of an utterance's ``num_frames`` real frames that ``masking.mask_spans``
    masks (before it trims every row to the batch's smallest count, which lowers it a little):
    ``max(min_spans, floor(prob·L/span + u))`` distinct starts among the ``L − span + 1``
    allowed, spans overlapping."""
    length = int(num_frames)
    if length <= 0:
        return 0.0
    starts = max(length - span, 0) + 1
    x = prob * length / span
    low = math.floor(x)
    weights: dict[int, float] = {}
    for count, weight in ((low, 1.0 - (x - low)), (low + 1, x - low)):
        count = min(max(count, min_spans), starts)
        weights[count] = weights.get(count, 0.0) + weight
    masked = 0.0
    for count, weight in weights.items():
        total = math.comb(starts, count)
        for t in range(length):
            covering = max(0, min(t, starts - 1) - max(0, t - span + 1) + 1)
            masked += weight * (1.0 - math.comb(starts - covering, count) / total)
    return masked / length


def step_flops(
    model_config: ml_collections.ConfigDict,
    batch_size: int,
    samples: int,
    *,
    ssl: bool,
    vgs: bool,
    image_batch_shape: tuple[int, ...] | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> dict[str, Any]:
    """Analytic FLOPs of one training step (forward + backward) on a global batch.

    Shapes: audio [batch_size, samples] → frames T (the frontend's) → tokens L = T (+1 CLS)
    through the speech encoder: ``num_layers`` transformer layers with the SSL head, only
    ``vgs_layer`` without it (``FaSTVGSPlus`` stops there). SSL: quantizer and projections on
    the T frames and the contrastive similarities of all T × T frame pairs per utterance
    (``losses.wav2vec2.contrastive_loss`` computes them all and gathers the masked frames'
    1 + num_negatives; the masked share changes no FLOPs and is reported as
    ``expected_masked_share``). VGS: the audio pooler on layer ``vgs_layer``'s T frames, the
    image encoder on ``image_batch_shape`` (the batch's ``image`` [B, H, W, 3] or ``regions``
    [B, R, feat] shape; default: the config's image_size or num_regions × region_dim), the
    coarse scores [B, B].

    Returns a dict: ``total`` (= ``forward`` + ``backward``), ``per_audio_second`` (of the
    batch's audio, padding included),
    ``recompute`` (remat), ``parts`` {name: {forward, backward, total}}, the shapes used
    (``frames``, ``tokens``, ``encoder_layers``, ``audio_seconds``), ``expected_masked_share``
    (SSL) and the ``convention``.
    """
    if not (ssl or vgs):
        raise ValueError("a step runs the SSL head, the VGS branch or both")
    c = model_config
    batch = int(batch_size)
    tally = _Tally()
    frames, feature_dim = _frontend(tally, c, batch, int(samples))
    if frames <= 0:
        raise ValueError(f"{samples} samples give no frame with the {c.frontend} frontend")
    d = int(c.hidden_dim)
    tokens = frames + (1 if c.use_cls else 0)
    tally.add("feature_projection", 2 * batch * frames * feature_dim * d, 2)
    kernel, groups = int(c.pos_conv_kernel), int(c.pos_conv_groups)
    conv_out = tokens + 2 * (kernel // 2) - kernel + 1  # an even kernel's extra frame is dropped
    tally.add("positional_conv", 2 * batch * conv_out * kernel * (d // groups) * d, 2)
    depth = int(c.num_layers) if ssl else int(c.vgs_layer)
    encoder_parts = ("encoder_attention_projections", "encoder_attention", "encoder_mlp")
    for _ in range(depth):
        _transformer_layer(tally, encoder_parts, batch, tokens, d, int(c.mlp_dim))
    recompute = tally.forward(encoder_parts) if c.get("remat", False) else 0.0

    masked_share = None
    if ssl:
        q = c.quantizer
        entries, codevector, final = int(q.entries), int(q.codevector_dim), int(q.final_dim)
        tally.add("quantizer", 2 * batch * frames * feature_dim * q.groups * entries, 2)
        tally.add("quantizer", 2 * batch * frames * entries * codevector, 2)  # codebook lookup
        tally.add("ssl_projections", 2 * batch * frames * codevector * final, 2)  # targets
        tally.add("ssl_projections", 2 * batch * frames * d * final, 2)  # context
        tally.add("contrastive_logits", 2 * batch * frames * frames * final, 2)
        m = c.masking
        masked_share = expected_masked_share(frames, m.prob, m.span, m.min_spans)
    if vgs:
        _audio_pooler(tally, c, batch, frames)
        _image_encoder(tally, c, _image_shape(c, batch, image_batch_shape))
        tally.add("coarse_loss", 2 * batch * batch * d, 2)

    parts = {
        name: {"forward": f, "backward": b, "total": f + b} for name, (f, b) in tally.parts.items()
    }
    forward = sum(p["forward"] for p in parts.values())
    backward = sum(p["backward"] for p in parts.values())
    audio_seconds = batch * samples / sample_rate
    return {
        "total": forward + backward,
        "forward": forward,
        "backward": backward,
        "recompute": recompute,
        "per_audio_second": (forward + backward) / audio_seconds,
        "parts": parts,
        "frames": frames,
        "tokens": tokens,
        "encoder_layers": depth,
        "audio_seconds": audio_seconds,
        "expected_masked_share": masked_share,
        "convention": CONVENTION,
    }


def xla_step_flops(executable) -> float | None:
    """FLOPs from XLA's cost analysis of a ``jax.stages.Compiled`` (or ``Lowered``) step, or
    None where the backend gives none.

    A compiled executable's count is of the program one device runs: under a mesh, that
    device's share of the global batch plus whatever every device repeats (about the global
    count divided by the devices). A ``Lowered`` step (not yet partitioned or optimised, no compile
    needed) gives the global count. Older jax returns a list of per-program dicts (summed).
    """
    try:
        cost = executable.cost_analysis()
    except Exception:  # noqa: BLE001 - backends without cost analysis raise various errors
        return None
    if cost is None:
        return None
    costs = cost if isinstance(cost, list | tuple) else [cost]
    values = [c.get("flops") for c in costs if isinstance(c, Mapping)]
    values = [float(v) for v in values if v is not None]
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        return None
    return sum(values)


def check_against_xla(
    analytic: float, xla: float | None, tolerance: float = TOLERANCE
) -> dict[str, Any]:
    """{analytic, xla, ratio (analytic / xla), within_tolerance} (ratio None without XLA's)."""
    ratio = analytic / xla if xla else None
    within = None if ratio is None else abs(ratio - 1.0) <= tolerance
    return {"analytic": analytic, "xla": xla, "ratio": ratio, "within_tolerance": within}


def lower_train_step(
    config: ml_collections.ConfigDict,
    batch_size: int,
    samples: int,
    *,
    ssl: bool,
    vgs: bool,
    image_batch_shape: tuple[int, ...] | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> jax.stages.Lowered:
    """The trainer's step (``step.make_train_step`` with the run config's model, precision and
    optimiser direction) lowered for a global batch of this shape, from abstract shapes only:
    nothing is initialised or compiled (a few seconds). ``xla_step_flops`` of the result is
    XLA's global count. ``mesh``: default one device."""
    if mesh is None:
        mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
    dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
    model = fastvgs.FaSTVGSPlus(config.model, dtype=dtype)
    tx = optimizer_lib.optimizer_direction(config.optimizer)
    key = jax.random.key(0, impl=config.get("prng_impl", "threefry2x32"))
    state = jax.eval_shape(lambda k: step_lib.init_state(model, tx, k, mesh), key)
    frames = speech.frame_geometry(config.model).num_frames(samples)

    def spec(shape, dtype):
        placed = sharding.batch_sharding(mesh, len(shape))
        return jax.ShapeDtypeStruct(shape, dtype, sharding=placed)

    batch = {
        "audio": spec((batch_size, samples), jnp.float32),
        "frame_mask": spec((batch_size, frames), jnp.bool_),
    }
    if vgs:
        shape = _image_shape(config.model, batch_size, image_batch_shape)
        if config.model.image.kind == "regions":
            batch["regions"] = spec(shape, jnp.float32)
            batch["boxes"] = spec((*shape[:2], 4), jnp.float32)
        else:
            batch["image"] = spec(shape, jnp.float32)
        batch["image_id"] = spec((batch_size,), jnp.int32)
    train_step = step_lib.make_train_step(model, tx, ssl=ssl, vgs=vgs)
    with jax.set_mesh(mesh):
        return jax.jit(train_step).lower(state, batch, 0.5, 0.5, 1e-4, 1e-4)
