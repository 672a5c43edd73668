"""Triphone ABX phone discriminability (Libri-light / ZeroSpeech 2021 "phonetic" task).

Implements the definition in ``shared/reference/evaluation.md`` exactly; see ``docs/abx.md``.

Pipeline: items -> frame slices of each utterance's features (frames unit-normalised over the
whole utterance first) -> tokens grouped by (context, speaker, phone), groups seeded-subsampled
-> every (row token, column token) pair that some cell compares -> angular frame distances and
path-length-normalised DTW for all pairs at once (bucketed by length, batched anti-diagonal
wavefront) -> theta per cell -> nested means.

Everything is numpy on the host: the work is thousands of tiny ragged DTWs, which a per-shape
``jit`` would spend longer compiling than numpy spends computing.

This module is the public entry (cells, means, scoring); item files and token layout live in
``abx_items``, the distance and DTW kernels in ``abx_dtw``, the oracle and synthetic set in
``abx_oracle``, all re-exported here.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from fastvgs_jax.eval.abx_dtw import (
    _pair_distances,
    angular_distances,
    dtw_normalised,
    unit_frames,
)
from fastvgs_jax.eval.abx_items import (
    SPEAKER_MODES,
    Item,
    _load_tokens,
    _pack,
    read_item_file,
    token_frames,
    write_item_file,
)
from fastvgs_jax.eval.abx_oracle import (
    ORACLE_PYTHON_ENV,
    oracle_abx_error,
    oracle_python,
    synthetic_abx_set,
)

__all__ = [
    "ORACLE_PYTHON_ENV",
    "SPEAKER_MODES",
    "ABXResult",
    "Item",
    "abx_error",
    "abx_theta",
    "angular_distances",
    "dtw_normalised",
    "oracle_abx_error",
    "oracle_python",
    "read_item_file",
    "synthetic_abx_set",
    "token_frames",
    "unit_frames",
    "write_item_file",
]


@dataclasses.dataclass(frozen=True)
class ABXResult:
    """ABX error rates as fractions in [0, 1] (NaN for a mode not computed or with no cell)."""

    within: float
    across: float
    num_items: int  # tokens kept after frame selection (before group subsampling)
    seed: int  # seed of the group subsampling and X-speaker draws

    def as_percent(self) -> dict[str, float]:
        """``{"within": %, "across": %}`` (error rates in percent)."""
        return {"within": 100.0 * self.within, "across": 100.0 * self.across}


def abx_theta(d_xa: np.ndarray, d_xb: np.ndarray, *, exclude_same: bool = False) -> float:
    """Fraction of (x, a, b) triples with d(x, a) < d(x, b), ties counting one half.

    Args:
      d_xa: [nx, na] token distances X to A. d_xb: [nx, nb] token distances X to B.
      exclude_same: within-speaker cells, where X is A itself (nx == na) and the triples with
        x = a are left out, leaving na (na - 1) nb triples.

    Returns:
      theta in [0, 1]; the ABX error of the cell is ``1 - theta``.
    """
    d_xa = np.asarray(d_xa, dtype=np.float64)
    d_xb = np.asarray(d_xb, dtype=np.float64)
    nx, na = d_xa.shape
    if d_xb.shape[0] != nx:
        raise ValueError(f"d_xa {d_xa.shape} and d_xb {d_xb.shape} disagree on |X|")
    triples = nx * na * d_xb.shape[1]
    if exclude_same:
        if nx != na:
            raise ValueError("exclude_same needs X = A (a square d_xa)")
        # +inf is neither below nor equal to any finite d(x, b): the x = a triples score 0.
        d_xa = np.where(np.eye(na, dtype=bool), np.inf, d_xa)
        triples = na * (na - 1) * d_xb.shape[1]
    a, b = d_xa[:, :, None], d_xb[:, None, :]
    score = np.count_nonzero(a < b) + 0.5 * np.count_nonzero(a == b)
    return float(score / triples)


class _PairList:
    """Token pairs to compare, appended in blocks; a block is read back by its offset."""

    def __init__(self):
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.size = 0

    def add(self, rows: np.ndarray, cols: np.ndarray) -> int:
        offset = self.size
        self.rows.append(rows)
        self.cols.append(cols)
        self.size += len(rows)
        return offset

    def add_product(self, x: np.ndarray, y: np.ndarray) -> int:
        """All (x_i, y_j), row-major: reads back as an [len(x), len(y)] block."""
        return self.add(np.repeat(x, len(y)), np.tile(y, len(x)))


def _nested_mean(errors: Mapping[tuple, list[float]]) -> float:
    """``errors[(speaker, pA, pB)]`` lists cell errors: mean each, then over speakers, then
    over ordered phone pairs."""
    by_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (_, phone_a, phone_b), values in errors.items():
        by_pair[(phone_a, phone_b)].append(float(np.mean(values)))
    if not by_pair:
        return float("nan")
    return float(np.mean([np.mean(v) for v in by_pair.values()]))


def abx_error(
    features: Mapping[str, np.ndarray],
    items: Iterable[Item] | str | os.PathLike,
    *,
    frame_rate: float = 50.0,
    inclusive_end: bool = False,
    max_x_speakers: int = 5,
    max_group_size: int = 10,
    seed: int = 0,
    speaker_modes: Sequence[str] = SPEAKER_MODES,
) -> ABXResult:
    """Triphone ABX error, within and/or across speakers.

    Args:
      features: ``features[file_stem]`` is a [frames, dim] float array of one whole utterance.
      items: parsed item rows (see ``read_item_file``), or the item file's path.
      frame_rate: feature frames per second (50 for 20 ms frames).
      inclusive_end: include the last frame centred in the span (see ``token_frames``).
      max_x_speakers: across: at most this many X speakers per (context, speaker, pA),
        drawn at random.
      max_group_size: (context, speaker, phone) groups larger than this are randomly
        subsampled to this size, once per group.
      seed: seeds both random draws (numpy Generator); recorded in the result.
      speaker_modes: any of "within", "across".

    Returns:
      ABXResult with error fractions (NaN for a mode not requested or without any cell).

    Raises:
      KeyError: naming the item files that have no entry in ``features``.
    """
    modes = tuple(speaker_modes)
    if not modes or any(m not in SPEAKER_MODES for m in modes):
        raise ValueError(f"speaker_modes must be a non-empty subset of {SPEAKER_MODES}: {modes}")
    if max_group_size < 2 or max_x_speakers < 1 or frame_rate <= 0:
        raise ValueError("need max_group_size >= 2, max_x_speakers >= 1 and frame_rate > 0")
    if isinstance(items, str | os.PathLike):
        items = read_item_file(items)
    tokens = _load_tokens(features, list(items), frame_rate, inclusive_end)
    rng = np.random.default_rng(seed)

    # Groups in sorted key order, members in item order: the draws depend only on the seed
    # and the item set, not on dict or file order.
    members: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for token, label in enumerate(tokens.labels):
        members[label].append(token)
    groups: dict[tuple[str, str, str], np.ndarray] = {}
    for key in sorted(members):
        group = np.asarray(members[key], dtype=np.int64)
        if len(group) > max_group_size:
            group = np.sort(rng.choice(group, size=max_group_size, replace=False))
        groups[key] = group
    blocks, groups = _pack(tokens, groups)
    phones_of: dict[tuple[str, str], list[str]] = defaultdict(list)  # (c, s) -> phones
    speakers_of: dict[tuple[str, str], list[str]] = defaultdict(list)  # (c, p) -> speakers
    for context, speaker, phone in groups:  # sorted, so both lists come out sorted
        phones_of[(context, speaker)].append(phone)
        speakers_of[(context, phone)].append(speaker)

    pairs = _PairList()
    within_cells, across_cells = [], []
    for (context, speaker), phones in phones_of.items():
        if len(phones) < 2:
            continue
        for phone_a in phones:
            group_a = groups[(context, speaker, phone_a)]
            others = [phone for phone in phones if phone != phone_a]
            if "within" in modes and len(group_a) >= 2:
                # d(a_i, a_j) is computed once for i < j (earlier token on the DTW rows) and
                # used for both orders, as the reference does.
                upper_i, upper_j = np.triu_indices(len(group_a), 1)
                at_aa = pairs.add(group_a[upper_i], group_a[upper_j])
                for phone_b in others:
                    group_b = groups[(context, speaker, phone_b)]
                    at_ab = pairs.add_product(group_a, group_b)
                    within_cells.append(
                        (speaker, phone_a, phone_b, len(group_a), len(group_b), at_aa, at_ab)
                    )
            if "across" in modes:
                x_speakers = [s for s in speakers_of[(context, phone_a)] if s != speaker]
                if len(x_speakers) > max_x_speakers:
                    chosen = rng.choice(len(x_speakers), size=max_x_speakers, replace=False)
                    x_speakers = [x_speakers[i] for i in sorted(chosen)]
                for x_speaker in x_speakers:
                    group_x = groups[(context, x_speaker, phone_a)]
                    at_xa = pairs.add_product(group_x, group_a)
                    for phone_b in others:
                        group_b = groups[(context, speaker, phone_b)]
                        at_xb = pairs.add_product(group_x, group_b)
                        sizes = (len(group_x), len(group_a), len(group_b))
                        across_cells.append((speaker, phone_a, phone_b, *sizes, at_xa, at_xb))

    empty = np.zeros(0, np.int64)
    dist = _pair_distances(
        blocks,
        np.concatenate(pairs.rows) if pairs.rows else empty,
        np.concatenate(pairs.cols) if pairs.cols else empty,
    )

    within = float("nan")
    if "within" in modes:
        errors: dict[tuple, list[float]] = defaultdict(list)  # (s, pA, pB) -> over contexts
        square_cache: dict[int, np.ndarray] = {}
        for speaker, phone_a, phone_b, na, nb, at_aa, at_ab in within_cells:
            if at_aa not in square_cache:
                square = np.zeros((na, na), dtype=np.float32)
                square[np.triu_indices(na, 1)] = dist[at_aa : at_aa + na * (na - 1) // 2]
                square_cache[at_aa] = square + square.T
            d_xb = dist[at_ab : at_ab + na * nb].reshape(na, nb)
            theta = abx_theta(square_cache[at_aa], d_xb, exclude_same=True)
            errors[(speaker, phone_a, phone_b)].append(1.0 - theta)
        within = _nested_mean(errors)

    across = float("nan")
    if "across" in modes:
        errors = defaultdict(list)  # (s, pA, pB) -> over (context, X speaker) jointly
        for speaker, phone_a, phone_b, nx, na, nb, at_xa, at_xb in across_cells:
            d_xa = dist[at_xa : at_xa + nx * na].reshape(nx, na)
            d_xb = dist[at_xb : at_xb + nx * nb].reshape(nx, nb)
            errors[(speaker, phone_a, phone_b)].append(1.0 - abx_theta(d_xa, d_xb))
        across = _nested_mean(errors)

    return ABXResult(within=within, across=across, num_items=len(tokens.labels), seed=seed)
