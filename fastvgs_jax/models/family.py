"""A family of model sizes from a few knobs, for scaling-law sweeps.

    from fastvgs_jax.models import family
    config = family.model_config("s")                         # a model config (models/config.py)
    config = family.model_config("s", width=96, depth=5)      # a named size, overridden
    family.estimate_parameters(config)                        # {encoder, vgs_branch, image, total}

A size is five knobs (``Knobs``): the transformer's ``width``, ``depth``, ``heads`` and
``mlp_ratio``, and the ``frontend`` ("cnn" | "logmel"; None keeps the template's). Every
other field of the speech side is derived from them (``apply``), the same way at every size,
so the named sizes differ only where the knobs do:

- frontend width ``min(width, 512)`` (the CNN's seven convs, or the log-mel conv);
- positional conv: kernel 16 / 32 / 64 / 128 frames and 4 / 8 / 16 / 16 groups for widths
  < 128, < 256, < 512 and above (the tiny, demo, small and base presets' choices);
- the VGS branch on layer ``round(2/3 · depth)`` (8 of 12 as the paper);
- codevector and final dims ``width / 2`` in [16, 256];
- the audio pooler's stages ``(width/6, width/3, 2·width/3, width)`` (multiples of 16) and the
  image side's transformer heads and MLP width those of the speech encoder (its width is
  ``width``: the coarse space is shared).

What the objective is made of stays the template's at every size (masking, negatives, the
quantizer's codebooks and temperatures, the losses, dropout, the image tower's convs, which a
sweep pretrains once), so losses of different sizes are losses of one objective. The
template is ``models/config.py``'s ``base`` preset unless given (a sweep passes its run
template's model section).

Named sizes, by speech-encoder + SSL-head parameters (``encoder`` below; log-mel frontend):
xxs ≈ 0.05 M, xs ≈ 0.15 M, s ≈ 0.6 M, m ≈ 2.1 M, ml ≈ 7 M, mb ≈ 26 M, base ≈ 94 M (the
paper's 12 × 768, wav2vec2 BASE's shape) and l ≈ 314 M (24 × 1024, wav2vec2 LARGE's shape);
``test_family.py`` checks the estimate against initialised models.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping

import ml_collections

from fastvgs_jax.models import config as presets

FRONTENDS = ("cnn", "logmel")


@dataclasses.dataclass(frozen=True)
class Knobs:
    """What sets a model's size; everything else follows (see the module doc)."""

    width: int  # transformer width (hidden_dim)
    depth: int  # transformer layers
    heads: int  # attention heads (divides width)
    mlp_ratio: float = 4.0  # feed-forward width / width
    frontend: str | None = None  # "cnn" | "logmel"; None: the template's

    def __post_init__(self):
        if self.width < 1 or self.depth < 1 or self.heads < 1 or self.mlp_ratio <= 0:
            raise ValueError(f"{self}: width, depth, heads and mlp_ratio must be positive")
        if self.width % self.heads:
            raise ValueError(f"{self}: width {self.width} is not divisible by {self.heads} heads")
        if self.frontend is not None and self.frontend not in FRONTENDS:
            raise ValueError(f"{self}: frontend {self.frontend!r}; expected one of {FRONTENDS}")

    @property
    def mlp_dim(self) -> int:
        return int(round(self.mlp_ratio * self.width))


# Smallest to largest. The four smallest fit a 2-core CPU sweep; base and l are the paper's
# encoder and wav2vec2 LARGE's shape (give them frontend="cnn" for the faithful model).
SIZES: dict[str, Knobs] = {
    "xxs": Knobs(width=32, depth=2, heads=2, mlp_ratio=2.0),
    "xs": Knobs(width=48, depth=3, heads=2, mlp_ratio=2.0),
    "s": Knobs(width=96, depth=3, heads=4),
    "m": Knobs(width=128, depth=6, heads=4),
    "ml": Knobs(width=256, depth=6, heads=4),
    "mb": Knobs(width=512, depth=8, heads=8),
    "base": Knobs(width=768, depth=12, heads=12),
    "l": Knobs(width=1024, depth=24, heads=16),
}


def knobs(size: str | Knobs | Mapping, **overrides) -> Knobs:
    """A named size's knobs (or the given ones, or a mapping of them), ``overrides`` applied
    (None values ignored)."""
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"unknown model size {size!r}; expected one of {list(SIZES)}")
        base = SIZES[size]
    elif isinstance(size, Knobs):
        base = size
    else:
        base = Knobs(**{k: v for k, v in dict(size).items() if v is not None})
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - {f.name for f in dataclasses.fields(Knobs)}
    if unknown:
        raise ValueError(f"unknown size knobs {sorted(unknown)}; expected {list(KNOB_NAMES)}")
    return dataclasses.replace(base, **changes)


KNOB_NAMES = tuple(f.name for f in dataclasses.fields(Knobs))


def _multiple_of_16(x: float) -> int:
    return max(16, int(round(x / 16)) * 16)


def apply(config: ml_collections.ConfigDict, k: Knobs) -> ml_collections.ConfigDict:
    """``config`` (a model config, changed in place and returned) sized by ``k``."""
    w = k.width
    c = config
    c.hidden_dim, c.num_layers, c.num_heads, c.mlp_dim = w, k.depth, k.heads, k.mlp_dim
    if k.frontend is not None:
        c.frontend = k.frontend
    channels = min(w, 512)
    c.cnn.channels = (channels,) * len(c.cnn.kernels)
    c.logmel.channels = channels
    if w < 128:
        c.pos_conv_kernel, c.pos_conv_groups = 16, 4
    elif w < 256:
        c.pos_conv_kernel, c.pos_conv_groups = 32, 8
    elif w < 512:
        c.pos_conv_kernel, c.pos_conv_groups = 64, 16
    else:
        c.pos_conv_kernel, c.pos_conv_groups = 128, 16
    if w % c.pos_conv_groups:
        c.pos_conv_groups = math.gcd(w, c.pos_conv_groups)
    c.vgs_layer = max(1, int(round(2 * k.depth / 3)))
    q = c.quantizer
    q.codevector_dim = q.final_dim = max(16, min(256, w // 2))
    if q.codevector_dim % q.groups:
        q.codevector_dim = q.groups * max(1, q.codevector_dim // q.groups)
    c.audio_pool.widths = (
        _multiple_of_16(w / 6),
        _multiple_of_16(w / 3),
        _multiple_of_16(2 * w / 3),
        w,
    )
    c.audio_pool.num_heads, c.audio_pool.mlp_dim = k.heads, k.mlp_dim
    c.image.num_heads, c.image.mlp_dim = k.heads, k.mlp_dim
    return c


def model_config(
    size: str | Knobs | Mapping = "s",
    template: ml_collections.ConfigDict | None = None,
    **overrides,
) -> ml_collections.ConfigDict:
    """The model config of a size: ``template`` (default: the ``base`` preset of
    models/config.py) with the speech side sized by the size's knobs (``overrides``: any of
    width, depth, heads, mlp_ratio, frontend). ``size`` (the config's first field) names it:
    the size's name, or ``custom`` for knobs given directly."""
    k = knobs(size, **overrides)
    config = copy.deepcopy(template) if template is not None else presets.model_config("base")
    apply(config, k)
    name = size if isinstance(size, str) else "custom"
    if overrides and any(v is not None for v in overrides.values()):
        changed = ",".join(f"{n}={v}" for n, v in sorted(overrides.items()) if v is not None)
        name = f"{name}({changed})"
    config.size = name
    return config


# --- Parameter counts from the config alone (no initialisation) ---------------------------


def _dense(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


def _transformer_layer(d: int, mlp: int) -> int:
    # q, k, v, out (with biases), two LayerNorms, two MLP Linears.
    return 4 * _dense(d, d) + 2 * 2 * d + _dense(d, mlp) + _dense(mlp, d)


def _cls_mlp(d: int) -> int:
    return _dense(d, 2 * d) + _dense(2 * d, d)


def _frontend(c: ml_collections.ConfigDict) -> tuple[int, int]:
    """(parameters, output width) of the frontend."""
    if c.frontend == "cnn":
        total, c_in = 0, 1
        for i, (ch, k) in enumerate(zip(c.cnn.channels, c.cnn.kernels, strict=True)):
            total += k * c_in * ch + (ch if c.cnn.bias else 0)
            if c.cnn.norm == "layer" or i == 0:
                total += 2 * ch  # GroupNorm on conv 0 ("group"), LayerNorm after each ("layer")
            c_in = ch
        return total, int(c.cnn.channels[-1])
    m = c.logmel
    total = 2 * m.num_mels if m.normalize == "frame" else 0
    c_in = m.num_mels
    for k in m.conv_kernels:
        total += k * c_in * m.channels + m.channels
        c_in = m.channels
    return total, int(m.channels)


def _speech_encoder(c: ml_collections.ConfigDict) -> tuple[int, int]:
    """(speech encoder parameters, frontend width)."""
    d = int(c.hidden_dim)
    frontend, features = _frontend(c)
    total = frontend + 2 * features + _dense(features, d)  # feature norm, projection
    total += d + (d if c.use_cls else 0)  # mask embedding, CLS
    total += c.pos_conv_kernel * (d // c.pos_conv_groups) * d + c.pos_conv_kernel + d
    total += 2 * d  # encoder norm
    total += c.num_layers * _transformer_layer(d, int(c.mlp_dim))
    return total, features


def _ssl_head(c: ml_collections.ConfigDict, features: int) -> int:
    q = c.quantizer
    weight_proj = _dense(features, q.groups * q.entries)
    codebook = q.entries * q.codevector_dim  # groups × entries × (codevector_dim / groups)
    return (
        weight_proj
        + codebook
        + _dense(q.codevector_dim, q.final_dim)
        + _dense(c.hidden_dim, q.final_dim)
    )


def _audio_pooler(c: ml_collections.ConfigDict) -> int:
    d, a = int(c.hidden_dim), c.audio_pool
    if a.get("kind", "resdavenet") == "mean":
        return _dense(d, d)
    widths = tuple(int(x) for x in a.widths)
    total = _dense(d, widths[0]) + 2 * widths[0]  # input projection and its BatchNorm
    c_in = widths[0]
    for width in widths:
        for block in range(a.blocks_per_stage):
            total += a.kernel * c_in * width + a.kernel * width * width + 4 * width
            if block == 0 or c_in != width:  # the first block of a stage strides by 2
                total += c_in * width + 2 * width
            c_in = width
    return total + _cls_mlp(d) + _transformer_layer(d, int(a.mlp_dim)) + _dense(d, d)


def _image_encoder(c: ml_collections.ConfigDict) -> int:
    d, im = int(c.hidden_dim), c.image
    if im.kind == "cnn":
        total, c_in = 0, 3
        for width in im.cnn_widths:
            total += 9 * c_in * width + width + 2 * width  # conv (with bias), LayerNorm
            c_in = width
        return total + _dense(c_in, d)
    if im.kind == "vit":
        p = int(im.patch_size)
        tokens = (int(im.get("image_size", 64)) // p) ** 2
        total = p * p * 3 * d + d + tokens * d + 2 * d  # patch conv, positions, patch norm
    elif im.kind == "regions":
        total = _dense(im.region_dim, d) + _dense(4, d) + 4 * d  # projections and their norms
    else:
        raise ValueError(f"unknown image encoder {im.kind!r}; expected 'vit', 'regions' or 'cnn'")
    total += d  # CLS
    total += im.num_layers * _transformer_layer(d, int(im.mlp_dim))
    return total + _cls_mlp(d)


def estimate_parameters(config: ml_collections.ConfigDict) -> dict[str, int]:
    """Parameters of a model config by part, counted from its fields (what
    ``train.parameters.parameter_counts`` counts on initialised variables): ``encoder`` (speech
    encoder + SSL head: quantizer, target and context projections), ``vgs_branch`` (audio
    pooler, CLIP scale), ``image`` (the image encoder), ``total``; and ``speech_encoder``."""
    speech, features = _speech_encoder(config)
    counts = {
        "encoder": speech + _ssl_head(config, features),
        "vgs_branch": _audio_pooler(config) + (1 if config.coarse.loss == "clip" else 0),
        "image": _image_encoder(config),
    }
    counts["total"] = sum(counts.values())
    counts["speech_encoder"] = speech
    return counts


def table(template: ml_collections.ConfigDict | None = None) -> list[dict]:
    """Every named size: its knobs and parameter estimate (for docs and dry runs)."""
    rows = []
    for name, k in SIZES.items():
        counts = estimate_parameters(model_config(name, template))
        rows.append({"size": name, **dataclasses.asdict(k), **counts})
    return rows
