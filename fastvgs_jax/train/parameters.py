"""A model's parameters counted by part (encoder, VGS branch, image side, frozen), for the
manifest's performance section, the model family and the sweeps."""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import ml_collections

from fastvgs_jax.models import fastvgs


def _count(tree) -> int:
    return int(sum(math.prod(getattr(x, "shape", ())) for x in jax.tree.leaves(tree)))


def parameter_counts(
    variables: Mapping, config: ml_collections.ConfigDict | None = None
) -> dict[str, int]:
    """Parameters by part: ``encoder`` (the speech encoder and the SSL head: quantizer,
    target and context projections), ``vgs_branch`` (``fastvgs.VGS_BRANCH`` minus the image
    encoder: audio pooler, CLIP scale), ``image`` (the image encoder), ``total`` (their sum);
    ``speech_encoder`` (part of ``encoder``) and, given the model ``config``, ``frozen`` (under
    ``fastvgs.frozen_prefixes``). Accepts {"params": ..., ...} or the params tree itself, of
    arrays or ``jax.ShapeDtypeStruct``s."""
    params = variables.get("params", variables)
    counts = {"encoder": 0, "vgs_branch": 0, "image": 0}
    for name, subtree in params.items():
        if name == "image_encoder":
            group = "image"
        elif name in fastvgs.VGS_BRANCH:
            group = "vgs_branch"
        else:
            group = "encoder"
        counts[group] += _count(subtree)
    counts["total"] = sum(counts.values())
    counts["speech_encoder"] = _count(params.get("speech_encoder", {}))
    if config is not None:
        prefixes = fastvgs.frozen_prefixes(config)
        frozen = 0
        for path, leaf in jax.tree_util.tree_leaves_with_path(params):
            keys = tuple(getattr(p, "key", None) for p in path)
            if any(keys[: len(prefix)] == tuple(prefix) for prefix in prefixes):
                frozen += math.prod(getattr(leaf, "shape", ()))
        counts["frozen"] = int(frozen)
    return counts
