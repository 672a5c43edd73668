"""Triphone ABX items in the Libri-light / ZeroSpeech 2021 item-file format.

One line per triphone: ``#file onset offset #phone prev-phone next-phone speaker`` (seconds).
The span covers the whole triphone (start of the previous phone to the end of the next).
Items whose centre is silence are left out; contexts may include silence (utterance edges
and pauses), as in the reference sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fastvgs_jax.data.sources import decode_text

HEADER = "#file onset offset #phone prev-phone next-phone speaker"


def utterance_items(
    file_id: str,
    speaker: str,
    phone_ids: np.ndarray,
    phone_starts: np.ndarray,
    phone_ends: np.ndarray,
    inventory: Sequence[str],
    sample_rate: int,
    silence: str = "SIL",
) -> list[str]:
    """Item lines for one utterance, in time order."""
    labels = [inventory[int(i)] for i in phone_ids]
    lines = []
    for k in range(1, len(labels) - 1):
        if labels[k] == silence:
            continue
        onset = phone_starts[k - 1] / sample_rate
        offset = phone_ends[k + 1] / sample_rate
        triphone = f"{labels[k]} {labels[k - 1]} {labels[k + 1]}"
        lines.append(f"{file_id} {onset:.4f} {offset:.4f} {triphone} {speaker}")
    return lines


def item_file_text(examples: Iterable[dict], inventory: Sequence[str], sample_rate: int) -> str:
    """The whole item file for ``examples`` (dicts with utterance_id, speaker and phones)."""

    lines = [HEADER]
    for ex in sorted(examples, key=lambda e: decode_text(e["utterance_id"])):
        lines += utterance_items(
            decode_text(ex["utterance_id"]),
            decode_text(ex["speaker"]),
            ex["phone_ids"],
            ex["phone_starts"],
            ex["phone_ends"],
            inventory,
            sample_rate,
        )
    return "\n".join(lines) + "\n"


def parse_item_file(text: str) -> list[tuple[str, float, float, str, str, str, str]]:
    """Rows of an item file (header skipped).

    Raises:
      ValueError: naming the line, for a row without 7 fields or with onset >= offset.
    """
    rows = []
    for number, line in enumerate(text.splitlines()[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 7:
            raise ValueError(f"item file line {number}: expected 7 fields, got {len(fields)}")
        onset, offset = float(fields[1]), float(fields[2])
        if not onset < offset:
            raise ValueError(f"item file line {number}: onset {onset} >= offset {offset}")
        rows.append((fields[0], onset, offset, fields[3], fields[4], fields[5], fields[6]))
    return rows
