"""The corpus registry: which corpus and split each role of a run reads, opened by name.

Roles are the streams and evaluation sets of a run config's ``data`` section:
``audio_image`` and ``audio_only`` (training streams), ``validation`` (the training-time
evaluation subset), ``retrieval`` (the test split of cross-modal retrieval) and ``abx`` (the
ABX set and its item file). Each names its ``corpus`` and ``split``; the corpus's paths and
format live once in ``data.corpora.<name>``. Everything downstream reads only the example
contract (see docs/data.md), whichever corpus supplied it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator

import ml_collections

from fastvgs_jax.data.corpora import flickr8k, librispeech, places, spokencoco
from fastvgs_jax.data.corpora.index import CorpusError, Entry, Problem, build_index
from fastvgs_jax.data.corpora.source import LayoutSource

EMBEDDED = "spoken_scenes"
ROLES = ("audio_image", "audio_only", "validation", "retrieval", "abx")
# The embedded corpus's split for each role (configs written before roles had fields).
EMBEDDED_SPLITS = {
    "audio_image": "train",
    "audio_only": "audio_only",
    "validation": "validation",
    "retrieval": "test",
    "abx": "abx",
}
FORMATS = ("layout", "array_record")


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """How to read one corpus from its published layout."""

    rows: Callable[[ml_collections.ConfigDict, str], Iterator[Entry | Problem]]
    paths: tuple[str, ...]  # its fields in data.corpora.<name> (the index is keyed by them)
    captioned: bool  # audio-image (captions of images) or audio only


CORPORA: dict[str, CorpusSpec] = {
    "spokencoco": CorpusSpec(
        lambda c, split: spokencoco.rows(c.root, c.image_root, split),
        ("root", "image_root"),
        captioned=True,
    ),
    "librispeech": CorpusSpec(
        lambda c, split: librispeech.rows(c.root, split), ("root",), captioned=False
    ),
    "flickr8k": CorpusSpec(
        lambda c, split: flickr8k.rows(c.root, c.image_root, c.text_root, split),
        ("root", "image_root", "text_root"),
        captioned=True,
    ),
    "places": CorpusSpec(
        lambda c, split: places.rows(c.root, c.audio_root, c.image_root, split),
        ("root", "audio_root", "image_root"),
        captioned=True,
    ),
}
NAMES = (EMBEDDED, *CORPORA)


def role_config(data_config: ml_collections.ConfigDict, role: str) -> tuple[str, str]:
    """``(corpus, split)`` that ``role`` reads (defaults: the embedded corpus's splits)."""
    if role not in ROLES:
        raise ValueError(f"unknown data role {role!r}; expected one of {ROLES}")
    section = data_config.get(role) or {}
    corpus = str(section.get("corpus", EMBEDDED) or EMBEDDED)
    split = str(section.get("split", EMBEDDED_SPLITS[role]) or EMBEDDED_SPLITS[role])
    if corpus not in NAMES:
        raise CorpusError(f"data.{role}.corpus={corpus!r}; expected one of {NAMES}")
    return corpus, split


def uses_embedded(data_config: ml_collections.ConfigDict) -> bool:
    """Whether any role reads the embedded corpus (which must then be built first)."""
    return any(role_config(data_config, role)[0] == EMBEDDED for role in ROLES)


def corpus_settings(data_config: ml_collections.ConfigDict, corpus: str):
    corpora = data_config.get("corpora") or {}
    settings = corpora.get(corpus)
    if settings is None:
        raise CorpusError(f"no data.corpora.{corpus} section (paths of the {corpus} corpus)")
    if not settings.get("root"):
        raise CorpusError(
            f"data.corpora.{corpus}.root is empty: set it to where {corpus} is "
            f"(a local folder or gs:// path), e.g. --config.data.corpora.{corpus}.root=/data/..."
        )
    return settings


def index_dir(data_config: ml_collections.ConfigDict) -> str:
    return str(data_config.get("index_dir") or os.path.join(data_config.data_dir, "indexes"))


def open_index(data_config: ml_collections.ConfigDict, corpus: str, split: str, progress=True):
    """The checked index of ``corpus``/``split`` (built on first use, then cached)."""
    spec = CORPORA[corpus]
    settings = corpus_settings(data_config, corpus)
    key = {"corpus": corpus, "split": split, **{p: str(settings.get(p, "")) for p in spec.paths}}
    return build_index(
        corpus,
        split,
        lambda: spec.rows(settings, split),
        settings=key,
        index_dir=index_dir(data_config),
        on_bad=str(data_config.get("on_bad_examples", "fail")),
        needs_text=spec.captioned,
        sample_rate=int(data_config.sample_rate),
        threads=int(data_config.get("index_threads", 16)),
        progress=progress,
    )


def open_role(data_config: ml_collections.ConfigDict, role: str, split: str | None = None):
    """The random-access source of contract examples that ``role`` reads.

    ``split`` overrides the role's configured split (``launch/evaluate.py --split``).
    """
    corpus, configured = role_config(data_config, role)
    split = split or configured
    if corpus == EMBEDDED:
        from fastvgs_jax.data import sources

        return sources.open_split(
            data_config.data_dir,
            data_config.preset,
            split,
            seed=data_config.corpus_seed,
            expected_sample_rate=data_config.sample_rate,
        )
    settings = corpus_settings(data_config, corpus)
    fmt = str(settings.get("format", "layout"))
    if fmt not in FORMATS:
        raise CorpusError(f"data.corpora.{corpus}.format={fmt!r}; expected one of {FORMATS}")
    image = data_config.get("image") or {}
    regions = None
    if CORPORA[corpus].captioned and role != "audio_only":
        if image.get("kind") == "regions":
            regions = open_regions(image)
        elif image.get("kind") == "vit":  # a frozen ViT's embeddings, cached once, as regions
            from fastvgs_jax.data.corpora import image_embeddings  # it imports this module

            regions = image_embeddings.open_cached(data_config, corpus, split)
    if fmt == "array_record":
        from fastvgs_jax.data.corpora import converted

        return converted.open_converted(data_config, corpus, split, regions=regions)
    return LayoutSource(
        open_index(data_config, corpus, split),
        image_size=int(image.get("size", 224)) if CORPORA[corpus].captioned else None,
        regions=regions,
        sample_rate=int(data_config.sample_rate),
    )


def open_regions(image_config):
    from fastvgs_jax.data.corpora import regions

    path = str(image_config.get("regions", ""))
    if not path:
        raise CorpusError(
            "data.image.kind='regions' needs data.image.regions: the region features file "
            "(HDF5, or the bottom-up-attention TSV)"
        )
    return regions.RegionFeatures(path, num_regions=int(image_config.get("num_regions", 36)))
