"""A sweep's runs as the scaling laws read them: the rows of ``sweep.jsonl`` and the targets and
predictors taken from each row.

``sweep.jsonl`` holds one JSON object per finished run, written by the sweep runner.

- Targets (``TARGETS``), lower is better: ``ssl_loss`` (``final.ssl_loss``, the loss as
  logged); ``retrieval_error`` = 100 − mean(S→I R@10, I→S R@10), in %; ``abx_within`` and
  ``abx_across`` (``abx.within`` / ``abx.across``, best-layer ABX error, %), fitted apart.
- Predictors (``PREDICTORS``): ``compute`` (total training FLOPs), ``parameters``
  (``parameters.total``, a count), ``audio_hours`` (``audio_hours_seen``, hours).

The fits: ``fastvgs_jax.sweep.laws``; the compute frontier: ``fastvgs_jax.sweep.frontier``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

SWEEP_FILE = "sweep.jsonl"


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN and infinities as None, numpy scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def number_at(row: Mapping, *keys: str) -> float | None:
    """The finite number at ``row[keys[0]][keys[1]]…``; None when absent, a bool, NaN or
    infinite."""
    value: Any = row
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _retrieval_error(row: Mapping) -> float | None:
    s2i, i2s = number_at(row, "retrieval", "s2i_r10"), number_at(row, "retrieval", "i2s_r10")
    return None if s2i is None or i2s is None else 100.0 - 0.5 * (s2i + i2s)


@dataclasses.dataclass(frozen=True)
class Quantity:
    """A target or predictor: what it is, its unit, and how to read it from a row."""

    label: str
    unit: str
    read: Callable[[Mapping], float | None]


TARGETS: dict[str, Quantity] = {
    "ssl_loss": Quantity("SSL loss (final)", "loss", lambda r: number_at(r, "final", "ssl_loss")),
    "retrieval_error": Quantity(
        "retrieval error: 100 − mean R@10 (S→I, I→S)", "%", _retrieval_error
    ),
    "abx_within": Quantity(
        "ABX error, within speaker", "%", lambda r: number_at(r, "abx", "within")
    ),
    "abx_across": Quantity(
        "ABX error, across speaker", "%", lambda r: number_at(r, "abx", "across")
    ),
}
PREDICTORS: dict[str, Quantity] = {
    "compute": Quantity("training compute", "FLOPs", lambda r: number_at(r, "compute")),
    "parameters": Quantity(
        "parameters (total)", "count", lambda r: number_at(r, "parameters", "total")
    ),
    "audio_hours": Quantity("audio seen", "hours", lambda r: number_at(r, "audio_hours_seen")),
}


def load_rows(folder: str) -> list[dict]:
    """The runs of ``folder/sweep.jsonl``: one dict per run, in file order.

    A later line with the same ``run`` replaces the earlier one (a resumed sweep may write a
    run again); blank lines are skipped, and so is an unparsable last line that lacks its
    newline (a run being written). Any other unparsable line raises ``ValueError``.
    """
    path = os.path.join(folder, SWEEP_FILE)
    with open(path) as f:
        text = f.read()
    lines = text.split("\n")
    rows: dict[Any, dict] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            if number == len(lines):  # no newline after it: still being written
                continue
            raise ValueError(f"{path}:{number}: not JSON ({error})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: not a JSON object")
        key = row.get("run", f"line {number}")
        rows.pop(key, None)  # the replacement takes the later position
        rows[key] = row
    return list(rows.values())


def schedules(rows: Iterable[Mapping]) -> list[str]:
    """The schedules of the rows, sorted by name."""
    return sorted({str(r["schedule"]) for r in rows})


def points(rows: Iterable[Mapping], target: str, predictor: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): (n,) arrays of the rows that have both the predictor and the target."""
    pairs = [(PREDICTORS[predictor].read(r), TARGETS[target].read(r)) for r in rows]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*pairs, strict=True)
    return np.array(x), np.array(y)
