"""A corpus's images through a pretrained, frozen ViT, embedded once and cached as region features.

    python -m fastvgs_jax.data.corpora.image_embeddings --config=configs/data.py \
        --corpus=spokencoco --split=test_karpathy --config.image.vit_dir=/models/dino-vitb16

The image side "pixels through a frozen ViT" costs a ViT forward pass per image per step if done
in the model; since the tower never trains, each image is embedded once per corpus instead, and
the model reads the result like detector regions (``model.image.kind="regions"``,
``region_dim`` = the ViT width, ``num_regions`` = R below). The cache is an HDF5 file in the
layout ``regions.RegionFeatures`` reads (see ``region_convert``'s module docstring), one row per
unique image of the split (by ``image_key``, sorted; written by ``embedding_writer``):

======================  =====================  =================================================
dataset                 shape, dtype           contents
======================  =====================  =================================================
``image_ids``           [N] utf-8 str          the index entries' ``image_key``
``features``            [N, R, D] float32      ``tokens="pooled"``: R = 1, the ViT's pooled
                                               embedding (DINO: CLS; CLIP: pooler_output);
                                               ``tokens="all"``: R = 1 + patches, HF's
                                               last_hidden_state (CLS first, then the patches
                                               row by row)
``boxes``               [N, R, 4] float32      x1, y1, x2, y2 of the S x S centre crop the ViT
                                               saw, normalised: [0, 0, 1, 1] for the pooled
                                               embedding and the CLS token, each patch's own
                                               square for the patches
``num_boxes``           [N] int32              R
``image_hw``            [N, 2] int32           S, S (the crop the boxes refer to)
======================  =====================  =================================================

Attributes: ``format``/``version`` (those of ``regions``), ``rows``, ``embedding_version``,
``cache_key``, and provenance: ``vit_dir``, ``vit_kind``, ``tokens``, ``image_size``,
``hidden_size``, ``corpus``, ``split``, ``index`` (the index folder), ``images``, ``seconds``
(the whole build), ``load_seconds`` (reading the checkpoint).

The file is ``<data_dir>/image_embeddings/<corpus>/<split>-<key>.h5``; the key hashes the
checkpoint (config.json, preprocessor_config.json, the safetensors files' sizes and mtimes), the
tokens mode, the index's settings (corpus paths and split) and its images, so a new checkpoint,
mode or corpus path embeds again. It is written under a temporary name and renamed into place, so
an interrupted build leaves nothing behind.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import time
from collections.abc import Callable

import h5py
import ml_collections
import numpy as np
from etils import epath

from fastvgs_jax.data.corpora import regions, registry
from fastvgs_jax.data.corpora.embedding_writer import (
    EMBEDDING_VERSION,
    PREFETCH_BATCHES,
    token_boxes,
    write_embeddings,
)
from fastvgs_jax.data.corpora.index import CorpusError, CorpusIndex
from fastvgs_jax.data.corpora.staging import is_local, staged_local_file

__all__ = [
    "EMBEDDING_VERSION",
    "FOLDER",
    "PREFETCH_BATCHES",
    "TOKENS",
    "cache_path",
    "define_flags",
    "describe",
    "embedding_shape",
    "ensure_cached",
    "is_complete",
    "main",
    "open_cached",
    "token_boxes",
    "vit_options",
]

TOKENS = ("pooled", "all")
FOLDER = "image_embeddings"  # under data_dir


def vit_options(data_config: ml_collections.ConfigDict) -> tuple[str, str]:
    """``(vit_dir, tokens)`` from ``data.image``; CorpusError when unset or invalid."""
    image = data_config.get("image") or {}
    vit_dir = str(image.get("vit_dir", "") or "")
    tokens = str(image.get("vit_tokens", "pooled") or "pooled")
    if not vit_dir:
        raise CorpusError(
            "data.image.vit_dir is empty: set it to a pretrained ViT's HF directory (config.json"
            " + model.safetensors, e.g. facebook/dino-vitb16 or openai/clip-vit-base-patch16"
            " saved with save_pretrained), e.g. --config.image.vit_dir=/models/dino-vitb16"
        )
    if tokens not in TOKENS:
        raise CorpusError(f"data.image.vit_tokens={tokens!r}; expected one of {TOKENS}")
    return vit_dir, tokens


def _checkpoint_fingerprint(vit_dir: str) -> dict:
    """What identifies the checkpoint without reading its weights."""
    config_path = os.path.join(vit_dir, "config.json")
    if not os.path.isfile(config_path):
        raise CorpusError(
            f"data.image.vit_dir={vit_dir!r} holds no config.json (expected an HF model"
            " directory, as save_pretrained writes it)"
        )
    texts = {}
    for name in ("config.json", "preprocessor_config.json", "model.safetensors.index.json"):
        path = os.path.join(vit_dir, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                texts[name] = hashlib.sha256(f.read()).hexdigest()
    weights = {}
    for path in sorted(glob.glob(os.path.join(vit_dir, "*.safetensors"))):
        stat = os.stat(path)
        weights[os.path.basename(path)] = [stat.st_size, stat.st_mtime_ns]
    return {"files": texts, "safetensors": weights}


def _images(index: CorpusIndex) -> list[tuple[str, str]]:
    """``(image_key, image path)`` of each image of the split once, sorted by key."""
    images: dict[str, str] = {}
    for entry in index.entries:
        if entry.image:
            images.setdefault(entry.image_key, entry.image)
    return sorted(images.items())


def _cache_key(vit_dir: str, tokens: str, index: CorpusIndex) -> str:
    images = hashlib.sha256(json.dumps(_images(index)).encode()).hexdigest()
    blob = {
        "checkpoint": _checkpoint_fingerprint(vit_dir),
        "tokens": tokens,
        "index_settings": index.manifest.get("settings", {}),
        "index_version": index.manifest.get("index_version"),
        "images": images,
        "embedding_version": EMBEDDING_VERSION,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _path_for(data_config, corpus: str, split: str, key: str) -> str:
    slug = split.replace("/", "_").replace("+", "_").replace(",", "_")
    return os.path.join(str(data_config.data_dir), FOLDER, corpus, f"{slug}-{key}.h5")


def _open_index(data_config, corpus: str, split: str, progress: bool = False) -> CorpusIndex:
    if corpus not in registry.CORPORA or not registry.CORPORA[corpus].captioned:
        captioned = [name for name, spec in registry.CORPORA.items() if spec.captioned]
        raise CorpusError(f"image embeddings need a captioned corpus ({captioned}), not {corpus!r}")
    return registry.open_index(data_config, corpus, split, progress=progress)


def cache_path(data_config: ml_collections.ConfigDict, corpus: str, split: str) -> str:
    """Where the embeddings of ``corpus``/``split`` under ``data.image``'s ViT are cached.

    Opens (building on first use) the split's checked index; reads no weights.
    """
    vit_dir, tokens = vit_options(data_config)
    index = _open_index(data_config, corpus, split)
    return _path_for(data_config, corpus, split, _cache_key(vit_dir, tokens, index))


def _open_h5(path: str):
    if is_local(path):
        return h5py.File(path, "r")
    return h5py.File(epath.Path(path).open("rb"), "r")


def is_complete(path: str) -> bool:
    """Whether ``path`` is a finished cache of this version (readable, every row written)."""
    if not epath.Path(path).exists():
        return False
    try:
        with _open_h5(path) as f:
            return (
                f.attrs.get("format") == regions.HDF5_FORMAT
                and int(f.attrs.get("embedding_version", -1)) == EMBEDDING_VERSION
                and int(f.attrs.get("rows", -1)) == f["image_ids"].shape[0]
            )
    except (OSError, KeyError, ValueError):
        return False


@functools.lru_cache(maxsize=4)
def _tokens_fn(settings):
    """One jitted uint8 batch → every token [batch, 1 + patches, D] (fixed batch: one compile)."""
    import jax  # noqa: PLC0415

    from fastvgs_jax.models import pretrained_vit  # noqa: PLC0415

    model = pretrained_vit.PretrainedViT(settings)

    @jax.jit
    def tokens(variables, images_uint8):
        return model.apply(
            variables, pretrained_vit.normalize_images(images_uint8, settings)
        ).tokens

    return tokens


def _embedder(settings, variables, tokens: str, batch_size: int) -> Callable:
    """uint8 [n <= batch_size, S, S, 3] → float32 [n, R, D] (the variables sent once)."""
    import jax  # noqa: PLC0415

    from fastvgs_jax.convert import vit  # noqa: PLC0415

    variables = jax.device_put(variables)
    if tokens == "pooled":
        return lambda images: vit.embed_images(settings, variables, images, batch_size)[:, None]
    apply = _tokens_fn(settings)

    def embed_all(images: np.ndarray) -> np.ndarray:
        n = len(images)
        if n < batch_size:
            images = np.concatenate([images, np.zeros((batch_size - n, *images.shape[1:]), "u1")])
        return np.asarray(jax.device_get(apply(variables, jax.device_put(images))))[:n]

    return embed_all


def ensure_cached(
    data_config: ml_collections.ConfigDict,
    corpus: str,
    split: str,
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> str:
    """The path of the split's image embeddings, embedded now unless already cached.

    Each unique image (by ``image_key``) is decoded to the ViT's ``image_size`` (shorter side
    resized, centre crop: ``decode.read_image``) by ``data.index_threads`` threads, embedded in
    batches of ``batch_size`` by the frozen ViT of ``data.image.vit_dir``, and written as the
    region-features layout in the module docstring.

    Raises:
      CorpusError: ``data.image.vit_dir`` empty or not an HF directory, a corpus without
        images, or an image that no longer decodes.
      ConversionError: a checkpoint the ViT loader does not accept.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    vit_dir, tokens = vit_options(data_config)
    start = time.perf_counter()
    index = _open_index(data_config, corpus, split, progress=progress)
    key = _cache_key(vit_dir, tokens, index)
    path = _path_for(data_config, corpus, split, key)
    if is_complete(path):
        return path
    images = _images(index)
    where = f"{corpus}/{split}"
    if not images:
        raise CorpusError(f"{where}: no images to embed (the index at {index.path} has none)")

    from fastvgs_jax.convert import vit  # noqa: PLC0415

    settings, variables, _ = vit.load_hf_vit(vit_dir)
    load_seconds = time.perf_counter() - start
    embed = _embedder(settings, variables, tokens, batch_size)
    threads = int(data_config.get("index_threads", 16))

    attrs = {
        "cache_key": key,
        "sources": json.dumps([os.path.abspath(vit_dir), index.path]),
        "vit_dir": os.path.abspath(vit_dir),
        "vit_kind": settings.kind,
        "tokens": tokens,
        "image_size": settings.image_size,
        "hidden_size": settings.hidden_size,
        "corpus": corpus,
        "split": split,
        "index": index.path,
        "images": len(images),
        "load_seconds": round(load_seconds, 3),
    }
    with staged_local_file(path) as staging:
        args = (images, embed, settings, tokens, batch_size, threads, progress, attrs, start)
        write_embeddings(staging, *args)
    return path


def open_cached(
    data_config: ml_collections.ConfigDict, corpus: str, split: str, *, progress: bool = True
) -> regions.RegionFeatures:
    """The split's image embeddings as ``RegionFeatures`` (``num_regions`` = the file's R,
    regions in file order: the pooled embedding or CLS first); embedded on first use."""
    path = ensure_cached(data_config, corpus, split, progress=progress)
    with _open_h5(path) as f:
        num_regions = int(f["features"].shape[1])
    return regions.RegionFeatures(path, num_regions=num_regions, order="file")


def embedding_shape(data_config: ml_collections.ConfigDict) -> tuple[int, int]:
    """``(R, D)`` the configured ViT and tokens mode give, from config.json alone (no weights):
    what ``model.image.num_regions`` and ``region_dim`` must be."""
    from fastvgs_jax.convert import vit  # noqa: PLC0415

    vit_dir, tokens = vit_options(data_config)
    _checkpoint_fingerprint(vit_dir)  # a clear error for a directory without config.json
    with open(os.path.join(vit_dir, "config.json")) as f:
        settings = vit.settings_from_hf(json.load(f), os.path.join(vit_dir, "config.json"))
    return (1 if tokens == "pooled" else settings.num_tokens), settings.hidden_size


def describe(path: str) -> dict:
    """The cache's attributes (provenance, counts, timing) as plain Python values."""
    with _open_h5(path) as f:
        return {k: v.item() if isinstance(v, np.generic) else v for k, v in f.attrs.items()}


# ----------------------------------------------------------------------------------------------
# Command line


def define_flags() -> None:
    """Registers the command-line flags (not at import: importing the library defines none)."""
    from absl import flags  # noqa: PLC0415
    from ml_collections import config_flags  # noqa: PLC0415

    config_flags.DEFINE_config_file(
        "config", None, "The data config (configs/data.py) or a run config (its data section)."
    )
    flags.DEFINE_enum(
        "corpus",
        None,
        [name for name, spec in registry.CORPORA.items() if spec.captioned],
        "The captioned corpus whose images to embed.",
    )
    flags.DEFINE_string("split", None, "Its split, e.g. test_karpathy.")
    flags.DEFINE_integer("batch_size", 64, "Images per ViT batch.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv) -> None:
    from absl import app, flags  # noqa: PLC0415

    del argv
    values = flags.FLAGS
    if values.config is None or not values.corpus or not values.split:
        raise app.UsageError("--config, --corpus and --split are required")
    config = values.config
    data_config = config.data if "data" in config else config
    reused = is_complete(cache_path(data_config, values.corpus, values.split))
    path = ensure_cached(
        data_config,
        values.corpus,
        values.split,
        batch_size=values.batch_size,
        progress=values.progress,
    )
    info = describe(path)
    images, seconds = int(info["images"]), float(info["seconds"])
    how = "reused, built earlier" if reused else "built now"
    print(
        f"{images} images, {seconds:.1f} s, {images / max(seconds, 1e-9):.1f} images/s"
        f" ({info['tokens']} {info['vit_kind']} embeddings, {how}): {path}"
    )


if __name__ == "__main__":
    from fastvgs_jax import cli

    define_flags()
    cli.run(main)
