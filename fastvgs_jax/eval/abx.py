"""Triphone ABX phone discriminability (Libri-light / ZeroSpeech 2021 "phonetic" task).

Implements the definition in ``shared/reference/evaluation.md`` exactly; see ``docs/abx.md``.

Pipeline: items -> frame slices of each utterance's features (frames unit-normalised over the
whole utterance first) -> tokens grouped by (context, speaker, phone), groups seeded-subsampled
-> every (row token, column token) pair that some cell compares -> angular frame distances and
path-length-normalised DTW for all pairs at once (bucketed by length, batched anti-diagonal
wavefront) -> theta per cell -> nested means.

Everything is numpy on the host: the work is thousands of tiny ragged DTWs, which a per-shape
``jit`` would spend longer compiling than numpy spends computing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from fastvgs_jax.data.abx_items import HEADER, parse_item_file

# (file, onset, offset, phone, prev-phone, next-phone, speaker), times in seconds.
Item = tuple[str, float, float, str, str, str, str]

SPEAKER_MODES = ("within", "across")

# Frame-distance blocks held at once (float32 elements); bounds peak memory.
_BLOCK_BUFFER_ELEMENTS = 1 << 24
# Distance-matrix elements per DTW batch (float32); bounds the wavefront's working set.
_DTW_BATCH_ELEMENTS = 1 << 22
# Token lengths are rounded up to a multiple of this to form DTW buckets: fewer buckets means
# fewer Python-level wavefront loops; the padding costs a little wasted arithmetic.
_BUCKET_STEP = 4


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


# --------------------------------------------------------------------------------------------
# Items and frames
# --------------------------------------------------------------------------------------------


def read_item_file(path: str | os.PathLike) -> list[Item]:
    """Rows of the item file at ``path`` (header line skipped).

    Raises:
      FileNotFoundError: naming ``path`` when it does not exist.
      ValueError: naming ``path`` (and the line) for a malformed or empty item file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"ABX item file not found: {os.fspath(path)}") from e
    try:
        rows = parse_item_file(text)
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: {e}") from e
    if not rows:
        raise ValueError(f"{os.fspath(path)}: no items after the header line")
    return rows


def token_frames(
    onset: float,
    offset: float,
    num_frames: int,
    *,
    frame_rate: float = 50.0,
    inclusive_end: bool = False,
) -> tuple[int, int] | None:
    """Frame slice ``[start, stop)`` of the span ``[onset, offset]`` seconds, or None if dropped.

    Frame i is centred at ``(i + 0.5) / frame_rate``. ``start = max(0, ceil(r*onset - 0.5))``
    is the first frame centred inside the span and ``last = floor(r*offset - 0.5)`` the last.
    The reference (default) slices ``X[start:min(T, last)]``, leaving out frame ``last``;
    ``inclusive_end`` slices ``X[start:min(T, last + 1)]``. Either way the token is dropped
    (None) when ``start >= T`` or the slice is empty, so in the inclusive convention a span
    holding a single frame centre is kept as a one-frame token.
    """
    start = max(0, math.ceil(frame_rate * onset - 0.5))
    last = math.floor(frame_rate * offset - 0.5)
    stop = min(num_frames, last + 1 if inclusive_end else last)
    if start >= num_frames or stop <= start:
        return None
    return start, stop


# --------------------------------------------------------------------------------------------
# Frame and token distances
# --------------------------------------------------------------------------------------------


def unit_frames(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames scaled to unit L2 norm, and which frames are all zero.

    Args:
      x: [T, d] features.

    Returns:
      ([T, d] float32 unit frames, all-zero frames left as zeros; [T] bool all-zero mask).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be [frames, dim], got shape {x.shape}")
    squared = np.einsum("td,td->t", x, x)
    zero = squared == 0
    unit = x / np.sqrt(np.where(zero, np.float32(1), squared))[:, None]
    return unit, zero


def _angular_from_dots(dots: np.ndarray, zero_rows: np.ndarray, zero_cols: np.ndarray):
    """Angular distance from unit-frame dot products, with the all-zero-frame rule.

    ``dots`` [..., n, m]; ``zero_rows`` [..., n, 1] and ``zero_cols`` [..., 1, m] broadcast to it.
    A zero frame has dot 0 with everything, which would read as distance 1/2; the definition
    instead puts it at distance 1 from every non-zero frame and 0 from another zero frame.
    """
    dist = np.arccos(np.clip(dots, -1, 1)) / np.pi
    either = zero_rows | zero_cols
    both = zero_rows & zero_cols
    return np.where(either, np.where(both, 0, 1), dist).astype(dots.dtype, copy=False)


def angular_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Angular frame distances ``acos(clamp(x̂·ŷ, -1, 1)) / π`` in [0, 1].

    Args:
      x: [n, d] frames. y: [m, d] frames. Normalisation is per frame, so slicing a token out
        of an utterance before or after normalising gives the same result.

    Returns:
      [n, m] float32. An all-zero frame is at distance 1 from any non-zero frame and 0 from
      another all-zero frame.
    """
    ux, zx = unit_frames(x)
    uy, zy = unit_frames(y)
    return _angular_from_dots(ux @ uy.T, zx[:, None], zy[None, :])


def dtw_normalised(
    distances: np.ndarray,
    rows: np.ndarray | Sequence[int] | None = None,
    cols: np.ndarray | Sequence[int] | None = None,
) -> np.ndarray:
    """Path-length-normalised DTW of a batch of frame-distance matrices.

    Steps (i-1, j), (i, j-1), (i-1, j-1), unweighted: ``C[i,j] = d[i,j] + min(three
    predecessors)``, result ``C[n-1, m-1] / L`` with L the number of cells on the optimal path.
    Ties between predecessors go to the diagonal, then (i, j-1), then (i-1, j); the length is
    tracked forward with that priority, which equals back-tracking with it.

    Vectorised as an anti-diagonal wavefront: all cells with i + j = k depend only on
    diagonals k-1 and k-2, so each of the N + M - 1 steps updates a whole diagonal of every
    matrix at once. Matrices of different true sizes share one padded batch: cells inside a
    matrix's true ``[n, m]`` corner never depend on cells outside it, so reading
    ``C[n-1, m-1]`` ignores the padding, whatever values it holds.

    Args:
      distances: [B, N, M] frame distances (padded).
      rows: [B] true row counts n (1..N); default N for all.
      cols: [B] true column counts m (1..M); default M for all.

    Returns:
      [B] normalised DTW distances, in the dtype of ``distances`` (the cost recurrence runs in
      that dtype, float32 like the reference implementation for float32 input).
    """
    d = np.asarray(distances)
    if d.ndim != 3:
        raise ValueError(f"distances must be [batch, N, M], got shape {d.shape}")
    if not np.issubdtype(d.dtype, np.floating):
        d = d.astype(np.float64)
    batch, n_max, m_max = d.shape
    rows = np.full(batch, n_max) if rows is None else np.asarray(rows, dtype=np.int64)
    cols = np.full(batch, m_max) if cols is None else np.asarray(cols, dtype=np.int64)
    if rows.shape != (batch,) or cols.shape != (batch,):
        raise ValueError(f"rows and cols must have shape ({batch},)")
    if batch and (rows.min() < 1 or rows.max() > n_max or cols.min() < 1 or cols.max() > m_max):
        raise ValueError("true lengths must lie in [1, N] and [1, M]")
    if batch == 0:
        return np.zeros(0, d.dtype)

    # Padded by one leading row and column of +inf, so the first row and column need no
    # special case: their only finite predecessor wins the comparisons below.
    cost = np.full((batch, n_max + 1, m_max + 1), np.inf, dtype=d.dtype)
    length = np.zeros((batch, n_max + 1, m_max + 1), dtype=np.int32)
    cost[:, 1, 1] = d[:, 0, 0]
    length[:, 1, 1] = 1
    for k in range(1, n_max + m_max - 1):
        i = np.arange(max(0, k - m_max + 1), min(k, n_max - 1) + 1)
        j = k - i
        c_diag, c_left, c_up = cost[:, i, j], cost[:, i + 1, j], cost[:, i, j + 1]
        take_diag = (c_diag <= c_left) & (c_diag <= c_up)
        take_left = ~take_diag & (c_left <= c_up)
        best = np.where(take_diag, c_diag, np.where(take_left, c_left, c_up))
        steps = np.where(
            take_diag,
            length[:, i, j],
            np.where(take_left, length[:, i + 1, j], length[:, i, j + 1]),
        )
        cost[:, i + 1, j + 1] = d[:, i, j] + best
        length[:, i + 1, j + 1] = steps + 1
    b = np.arange(batch)
    final, steps = cost[b, rows, cols], length[b, rows, cols]
    # Divide in float64 and round once, as the reference does (float32 cost / Python int).
    return (final.astype(np.float64) / steps).astype(d.dtype)


def _bucket(lengths: np.ndarray) -> np.ndarray:
    return -(-lengths // _BUCKET_STEP) * _BUCKET_STEP


@dataclasses.dataclass
class _Tokens:
    """Kept tokens as frame ranges into the utterances' unit frames (no per-token copies)."""

    frames: np.ndarray  # [F, d] unit frames of every item file, file after file
    zero: np.ndarray  # [F] all-zero frames
    starts: np.ndarray  # [K] first frame of each token in `frames`
    lengths: np.ndarray  # [K] frames per token
    labels: list[tuple[str, str, str]]  # [K] (context, speaker, phone)


@dataclasses.dataclass
class _Blocks:
    """The used tokens grouped into (context, speaker) blocks; see ``_pack``."""

    tokens: _Tokens  # the used tokens only, ordered by sorted (context, speaker, phone)
    block: np.ndarray  # [K] block of each token
    local_start: np.ndarray  # [K] first frame of each token within its block's frame list
    frame_index: np.ndarray  # rows of `tokens.frames`, block after block, token after token
    block_ptr: np.ndarray  # [blocks + 1] block b's frames: frame_index[ptr[b]:ptr[b + 1]]


def _pair_distances(blocks: _Blocks, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Normalised DTW (angular frame distance) for token pairs (``rows[p]`` on the DTW rows).

    Every compared pair lies inside one context, between the tokens of two (context,
    speaker) blocks. So the frame distances come from one matrix product per needed block
    pair, not from gathering d-dimensional frames per token pair (the dominant cost
    otherwise), streamed through a bounded buffer; each pair's distance matrix is read out of
    its block pair's matrix and all pairs go through the batched DTW, bucketed by length.

    Args:
      blocks: see ``_pack``. rows, cols: [P] token ids into ``blocks.tokens``.

    Returns:
      [P] float32.
    """
    out = np.empty(len(rows), dtype=np.float32)
    if not len(rows):
        return out
    frames, zero, ptr = blocks.tokens.frames, blocks.tokens.zero, blocks.block_ptr
    num_blocks = len(ptr) - 1
    block_len = np.diff(ptr)
    pair_block = blocks.block[rows] * num_blocks + blocks.block[cols]
    by_block = np.argsort(pair_block, kind="stable")
    keys, first = np.unique(pair_block[by_block], return_index=True)
    row_blocks, col_blocks = keys // num_blocks, keys % num_blocks
    sizes = block_len[row_blocks] * block_len[col_blocks]
    chunk_of = (np.cumsum(sizes) - sizes) // _BLOCK_BUFFER_ELEMENTS
    pair_bounds = np.append(first, len(by_block))
    for chunk in np.split(np.arange(len(keys)), np.flatnonzero(np.diff(chunk_of)) + 1):
        offsets = np.cumsum(sizes[chunk]) - sizes[chunk]
        buffer = np.empty(int(sizes[chunk].sum()), dtype=np.float32)
        for key, offset in zip(chunk, offsets, strict=True):
            r = blocks.frame_index[ptr[row_blocks[key]] : ptr[row_blocks[key] + 1]]
            c = blocks.frame_index[ptr[col_blocks[key]] : ptr[col_blocks[key] + 1]]
            dist = _angular_from_dots(frames[r] @ frames[c].T, zero[r, None], zero[None, c])
            buffer[offset : offset + dist.size] = dist.ravel()
        counts = np.diff(pair_bounds[chunk[0] : chunk[-1] + 2])
        pairs = by_block[pair_bounds[chunk[0]] : pair_bounds[chunk[-1] + 1]]
        # Each pair's matrix: rows from its row token's frames, row stride = block width.
        width = np.repeat(block_len[col_blocks[chunk]], counts)
        origin = (
            np.repeat(offsets, counts)
            + blocks.local_start[rows[pairs]] * width
            + blocks.local_start[cols[pairs]]
        )
        lengths = blocks.tokens.lengths
        out[pairs] = _dtw_from_buffer(
            buffer, origin, width, lengths[rows[pairs]], lengths[cols[pairs]]
        )
    return out


def _dtw_from_buffer(
    buffer: np.ndarray, origin: np.ndarray, width: np.ndarray, n: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """DTW of pairs whose [n, m] distance matrices sit in ``buffer`` at ``origin`` with row
    stride ``width``; bucketed by padded size so each batch shares one wavefront."""
    out = np.empty(len(origin), dtype=np.float32)
    n_pad, m_pad = _bucket(n), _bucket(m)
    order = np.lexsort((m_pad, n_pad))
    key = n_pad[order] * (int(m_pad.max()) + 1) + m_pad[order]
    for bucket in np.split(order, np.flatnonzero(np.diff(key)) + 1):
        big_n, big_m = int(n_pad[bucket[0]]), int(m_pad[bucket[0]])
        step = max(1, _DTW_BATCH_ELEMENTS // (big_n * big_m))
        for lo in range(0, len(bucket), step):
            sel = bucket[lo : lo + step]
            # Padding repeats a token's last frame: always inside its block, and the padded
            # DTW cells are never read (see dtw_normalised).
            i = np.minimum(np.arange(big_n), n[sel][:, None] - 1)  # [B, N]
            j = np.minimum(np.arange(big_m), m[sel][:, None] - 1)  # [B, M]
            flat = origin[sel][:, None, None] + i[:, :, None] * width[sel][:, None, None]
            out[sel] = dtw_normalised(buffer[flat + j[:, None, :]], n[sel], m[sel])
    return out


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


# --------------------------------------------------------------------------------------------
# Tokens, groups and cells
# --------------------------------------------------------------------------------------------


def _load_tokens(
    features: Mapping[str, np.ndarray],
    items: Sequence[Item],
    frame_rate: float,
    inclusive_end: bool,
) -> _Tokens:
    by_file: dict[str, list[Item]] = defaultdict(list)
    for row in items:
        by_file[row[0]].append(row)
    missing = sorted(f for f in by_file if f not in features)
    if missing:
        shown = ", ".join(repr(f) for f in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise KeyError(f"no features for {len(missing)} item file(s): {shown}{more}")

    units, zeros, starts, lengths, labels = [], [], [], [], []
    dim, position = None, 0
    for file_id, rows in by_file.items():
        unit, zero = unit_frames(features[file_id])
        if not np.isfinite(unit).all():
            raise ValueError(f"features of {file_id!r} are not all finite")
        if dim is None:
            dim = unit.shape[1]
        elif unit.shape[1] != dim:
            raise ValueError(f"features of {file_id!r} have dim {unit.shape[1]}, others {dim}")
        units.append(unit)
        zeros.append(zero)
        for _, onset, offset, phone, prev, nxt, speaker in rows:
            span = token_frames(
                onset, offset, len(unit), frame_rate=frame_rate, inclusive_end=inclusive_end
            )
            if span is None:
                continue
            starts.append(position + span[0])
            lengths.append(span[1] - span[0])
            labels.append((f"{prev}+{nxt}", speaker, phone))
        position += len(unit)
    return _Tokens(
        frames=np.concatenate(units) if units else np.zeros((0, 1), np.float32),
        zero=np.concatenate(zeros) if zeros else np.zeros(0, bool),
        starts=np.asarray(starts, dtype=np.int64),
        lengths=np.asarray(lengths, dtype=np.int64),
        labels=labels,
    )


def _pack(
    tokens: _Tokens, groups: Mapping[tuple[str, str, str], np.ndarray]
) -> tuple[_Blocks, dict[tuple[str, str, str], np.ndarray]]:
    """Keep only the (subsampled) group members, in sorted (context, speaker, phone) order.

    That order makes each (context, speaker) block a run of consecutive tokens; a block's
    frame list is its tokens' frame ranges, concatenated.

    Returns:
      (the blocks, the groups as ids into ``blocks.tokens``).
    """
    keys = sorted(groups)
    used = np.concatenate([groups[k] for k in keys]) if keys else np.zeros(0, np.int64)
    packed_groups, block = {}, np.empty(len(used), dtype=np.int64)
    block_keys, block_first = [], []
    position = 0
    for key in keys:
        size = len(groups[key])
        packed_groups[key] = np.arange(position, position + size)
        if not block_keys or block_keys[-1] != key[:2]:
            block_keys.append(key[:2])
            block_first.append(position)
        block[position : position + size] = len(block_keys) - 1
        position += size
    lengths, starts = tokens.lengths[used], tokens.starts[used]
    offset = np.cumsum(lengths) - lengths  # token start in the concatenated frame lists
    ptr = np.append(offset[block_first], lengths.sum()).astype(np.int64)
    frame_index = np.repeat(starts - offset, lengths) + np.arange(lengths.sum())
    used_tokens = dataclasses.replace(
        tokens, starts=starts, lengths=lengths, labels=[tokens.labels[t] for t in used]
    )
    blocks = _Blocks(
        tokens=used_tokens,
        block=block,
        local_start=offset - ptr[block],
        frame_index=frame_index,
        block_ptr=ptr,
    )
    return blocks, packed_groups


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


# --------------------------------------------------------------------------------------------
# Optional oracle: the reference package, run in its own interpreter
# --------------------------------------------------------------------------------------------

ORACLE_PYTHON_ENV = "FASTVGS_ABX_ORACLE_PYTHON"

_ORACLE_SCRIPT = """
import json, os, random, sys
import numpy as np, torch
from libriabx.libri_light import eval_ABX
feature_dir, item_path, rate, modes, max_x, max_group = json.loads(sys.argv[1])
random.seed(0)
seq = sorted((f[:-4], os.path.join(feature_dir, f)) for f in os.listdir(feature_dir))
load = lambda p: torch.tensor(np.load(p))
scores = eval_ABX.ABX(load, item_path, seq, "cosine", rate, modes, cuda=False,
                      max_x_across=max_x, max_size_group=max_group)
print("ORACLE " + json.dumps(scores))
"""


def oracle_python() -> str | None:
    """An interpreter that can import the reference ``libriabx`` package, or None.

    ``$FASTVGS_ABX_ORACLE_PYTHON`` if set (a side virtual environment, see docs/abx.md), else
    this interpreter if it happens to have the package.
    """
    if os.environ.get(ORACLE_PYTHON_ENV):
        return os.environ[ORACLE_PYTHON_ENV]
    try:
        import libriabx  # noqa: F401
    except Exception:  # the package or one of its heavy dependencies is missing
        return None
    return sys.executable


def write_item_file(path: str | os.PathLike, items: Iterable[Item]) -> None:
    """Write ``items`` as an item file (times in ``repr`` form, so they read back exactly)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        for file_id, onset, offset, phone, prev, nxt, speaker in items:
            f.write(f"{file_id} {onset!r} {offset!r} {phone} {prev} {nxt} {speaker}\n")


def oracle_abx_error(
    features: Mapping[str, np.ndarray],
    items: Iterable[Item],
    *,
    frame_rate: float = 50.0,
    max_x_speakers: int = 5,
    max_group_size: int = 10,
    speaker_modes: Sequence[str] = SPEAKER_MODES,
    python: str | None = None,
    timeout_s: float = 600.0,
) -> dict[str, float]:
    """Error fractions from the reference ``zerospeech-libriabx`` 1.0.5, for cross-checks only.

    Runs the package in a subprocess (``python``, default ``oracle_python()``) on ``features``
    saved as float32 ``.npy`` files. Its subsampling is unseeded: compare only on sets where
    no group exceeds ``max_group_size`` and no (context, phone) has more other speakers than
    ``max_x_speakers``.

    Raises:
      RuntimeError: when no oracle interpreter is available or the package fails.
    """
    python = python or oracle_python()
    if python is None:
        raise RuntimeError(f"no interpreter with libriabx; set ${ORACLE_PYTHON_ENV}")
    with tempfile.TemporaryDirectory() as tmp:
        feature_dir = os.path.join(tmp, "features")
        os.makedirs(feature_dir)
        for stem, x in features.items():
            np.save(os.path.join(feature_dir, f"{stem}.npy"), np.asarray(x, np.float32))
        item_path = os.path.join(tmp, "items.item")
        write_item_file(item_path, items)
        settings = [frame_rate, list(speaker_modes), max_x_speakers, max_group_size]
        args = json.dumps([feature_dir, item_path, *settings])
        proc = subprocess.run(
            [python, "-c", _ORACLE_SCRIPT, args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ORACLE ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"libriabx oracle failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {k: float(v) for k, v in json.loads(lines[-1][len("ORACLE ") :]).items()}


def synthetic_abx_set(
    seed: int = 0,
    *,
    num_speakers: int = 4,
    num_phones: int = 4,
    num_contexts: int = 5,
    max_tokens_per_group: int = 4,
    dim: int = 16,
    frame_rate: float = 50.0,
    silence_fraction: float = 0.1,
    noise: float = 1.2,
) -> tuple[dict[str, np.ndarray], list[Item]]:
    """A random item set with its features, for tests and benchmarks.

    Every speaker says 1..``max_tokens_per_group`` tokens of every (context, phone); a token
    is 2..8 frames of ``phone prototype + speaker and context offsets + noise`` (noise
    standard deviation ``noise``; at the default and ``dim=16`` errors are around 10-25 %;
    higher ``dim`` needs more noise for the same error). Tokens are strung into utterances
    with gaps; onsets and offsets carry sub-frame jitter so both rounding directions occur; a
    fraction of tokens starts with an all-zero frame; each utterance's last item runs past
    its end.

    Returns:
      (features: utterance id -> [frames, dim] float32, item rows).
    """
    rng = np.random.default_rng(seed)
    phone_protos = rng.normal(size=(num_phones, dim))
    speaker_offsets = 0.7 * rng.normal(size=(num_speakers, dim))
    context_offsets = 0.5 * rng.normal(size=(num_contexts, dim))
    features: dict[str, np.ndarray] = {}
    items: list[Item] = []
    for s in range(num_speakers):
        tokens = [
            (c, p)
            for c in range(num_contexts)
            for p in range(num_phones)
            for _ in range(rng.integers(1, max_tokens_per_group + 1))
        ]
        rng.shuffle(tokens)
        for u, start in enumerate(range(0, len(tokens), 12)):
            file_id = f"spk{s}-utt{u}"
            frames, spans = [rng.normal(size=(2, dim))], []
            position = 2
            for c, p in tokens[start : start + 12]:
                size = int(rng.integers(2, 9))
                seg = phone_protos[p] + speaker_offsets[s] + context_offsets[c]
                seg = seg + noise * rng.normal(size=(size, dim))
                if rng.random() < silence_fraction:
                    seg[0] = 0.0
                frames.append(seg)
                frames.append(rng.normal(size=(1, dim)))
                spans.append((position, position + size, c, p))
                position += size + 1
            x = np.concatenate(frames).astype(np.float32)
            features[file_id] = x
            for k, (lo, hi, c, p) in enumerate(spans):
                onset = max(0.0, (lo + rng.uniform(-0.45, 0.45)) / frame_rate)
                offset = (hi + 0.5 + rng.uniform(-0.45, 0.45)) / frame_rate
                if k == len(spans) - 1:
                    offset = (len(x) + 2.0) / frame_rate  # past the end: clipped to T
                items.append((file_id, onset, offset, f"P{p}", "L", f"R{c}", f"spk{s}"))
    return features, items
