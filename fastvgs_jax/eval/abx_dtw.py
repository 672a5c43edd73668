"""ABX distance kernels: angular frame distances and batched path-normalised DTW."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fastvgs_jax.eval.abx_items import _Blocks

# Frame-distance blocks held at once (float32 elements); bounds peak memory.
_BLOCK_BUFFER_ELEMENTS = 1 << 24
# Distance-matrix elements per DTW batch (float32); bounds the wavefront's working set.
_DTW_BATCH_ELEMENTS = 1 << 22
# Token lengths are rounded up to a multiple of this to form DTW buckets: fewer buckets means
# fewer Python-level wavefront loops; the padding costs a little wasted arithmetic.
_BUCKET_STEP = 4

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
