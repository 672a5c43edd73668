"""ABX item files, token frame slices and the packed token/block layout the scorer uses."""

from __future__ import annotations

import dataclasses
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from fastvgs_jax.data.abx_items import HEADER, parse_item_file
from fastvgs_jax.eval.abx_dtw import unit_frames

# (file, onset, offset, phone, prev-phone, next-phone, speaker), times in seconds.
Item = tuple[str, float, float, str, str, str, str]

SPEAKER_MODES = ("within", "across")

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


def write_item_file(path: str | os.PathLike, items: Iterable[Item]) -> None:
    """Write ``items`` as an item file (times in ``repr`` form, so they read back exactly)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        for file_id, onset, offset, phone, prev, nxt, speaker in items:
            f.write(f"{file_id} {onset!r} {offset!r} {phone} {prev} {nxt} {speaker}\n")
