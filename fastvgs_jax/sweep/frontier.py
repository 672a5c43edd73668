"""The compute frontier of a sweep: per schedule, the best value of a target reached with at
most a given training compute (the lower envelope over model sizes) and, where the sweep allows,
the compute-optimal size from each size's fitted L(C) (``compute_frontier``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from fastvgs_jax.sweep.laws import fit_saturating_power_law
from fastvgs_jax.sweep.results import TARGETS, number_at, schedules


def _budgets(rows: Iterable[Mapping], target: str) -> list[dict]:
    """The runs of one schedule averaged over seeds: one point per (size, steps,
    data_fraction) with the target, sorted by compute."""
    groups: dict[tuple, list[Mapping]] = {}
    for r in rows:
        if TARGETS[target].read(r) is None or number_at(r, "compute") is None:
            continue
        key = (str(r["size"]), r.get("steps"), r.get("data_fraction"))
        groups.setdefault(key, []).append(r)
    out = []
    for (size, steps, fraction), runs in groups.items():
        out.append(
            {
                "size": size,
                "steps": steps,
                "data_fraction": fraction,
                "parameters": number_at(runs[0], "parameters", "total"),
                "compute": float(np.mean([number_at(r, "compute") for r in runs])),
                "value": float(np.mean([TARGETS[target].read(r) for r in runs])),
                "runs": sorted(str(r.get("run")) for r in runs),
            }
        )
    return sorted(out, key=lambda p: (p["compute"], p["value"], p["size"]))


def _size_curve(budgets: list[dict]) -> dict:
    """A size's L(C): the saturating law with ≥ 3 budgets when it fits, else a power law
    a·C^−b (c = 0) by least squares in log–log (through both points with 2 budgets; b may be
    negative there: it only interpolates)."""
    compute = np.array([p["compute"] for p in budgets])
    value = np.array([p["value"] for p in budgets])
    if np.unique(compute).size >= 3:
        fit = fit_saturating_power_law(compute, value, bootstrap=0)
        if fit.ok:
            return {"kind": "saturating", "a": fit.a, "b": fit.b, "c": fit.c}
    if (value <= 0).any():
        return {"kind": "linear", "compute": compute.tolist(), "value": value.tolist()}
    slope, intercept = np.polyfit(np.log(compute), np.log(value), 1)
    return {"kind": "power", "a": float(np.exp(intercept)), "b": float(-slope), "c": 0.0}


def _curve_value(curve: dict, compute: float) -> float:
    if curve["kind"] == "linear":
        return float(np.interp(math.log(compute), np.log(curve["compute"]), curve["value"]))
    return float(np.exp(math.log(curve["a"]) - curve["b"] * math.log(compute)) + curve["c"])


def compute_frontier(rows: Sequence[Mapping], target: str, *, grid: int = 25) -> dict[str, dict]:
    """Per schedule, the compute frontier of ``target`` (lower is better):

    - ``points``: the runs averaged over seeds, one per (size, steps, data_fraction):
      ``{size, steps, data_fraction, parameters, compute (FLOPs), value, runs}``.
    - ``envelope``: at each compute level of ``points``, the best value reached with at most
      that compute — the lower envelope over sizes: ``{compute, value, size, at_compute}``
      (``at_compute``: the compute of the run that reached it).
    - ``optimal``: where at least 3 sizes each have ≥ 2 budgets, each such size's L(C) is
      fitted (``curves``; ``_size_curve``) and, on ``grid`` log-spaced compute levels, the
      size with the lowest fitted value among the sizes whose measured compute range covers
      that level (interpolation only; a level needs ≥ 2 such sizes):
      ``{compute: [...], size: [...], parameters: [...], value: [...]}``; otherwise None,
      with ``reason`` saying why.
    """
    out: dict[str, dict] = {}
    for schedule in schedules(rows):
        budgets = _budgets([r for r in rows if str(r["schedule"]) == schedule], target)
        envelope: list[dict] = []
        best = None
        for p in budgets:
            if best is None or p["value"] < best["value"]:
                best = p
            entry = {
                "compute": p["compute"],
                "value": best["value"],
                "size": best["size"],
                "at_compute": best["compute"],
            }
            if envelope and envelope[-1]["compute"] == p["compute"]:
                envelope[-1] = entry
            else:
                envelope.append(entry)
        by_size: dict[str, list[dict]] = {}
        for p in budgets:
            by_size.setdefault(p["size"], []).append(p)
        eligible = {s: ps for s, ps in by_size.items() if len({p["compute"] for p in ps}) >= 2}
        result: dict[str, Any] = {"points": budgets, "envelope": envelope, "optimal": None}
        if len(eligible) < 3:
            result["reason"] = (
                f"{len(eligible)} size(s) with ≥ 2 compute budgets (need 3): "
                "no compute-optimal size"
            )
            out[schedule] = result
            continue
        curves = {}
        for size, ps in eligible.items():
            curve = _size_curve(ps)
            curve["compute_range"] = [ps[0]["compute"], ps[-1]["compute"]]
            curve["parameters"] = ps[0]["parameters"]
            curves[size] = curve
        low = min(c["compute_range"][0] for c in curves.values())
        high = max(c["compute_range"][1] for c in curves.values())
        optimal: dict[str, list] = {"compute": [], "size": [], "parameters": [], "value": []}
        for level in np.geomspace(low, high, grid):
            covering = [
                s
                for s, c in curves.items()
                if c["compute_range"][0] * (1 - 1e-9) <= level <= c["compute_range"][1] * (1 + 1e-9)
            ]
            if len(covering) < 2:
                continue
            values = {s: _curve_value(curves[s], level) for s in covering}
            size = min(values, key=lambda s: (values[s], s))
            optimal["compute"].append(float(level))
            optimal["size"].append(size)
            optimal["parameters"].append(curves[size]["parameters"])
            optimal["value"].append(values[size])
        result["curves"] = curves
        if optimal["compute"]:
            result["optimal"] = optimal
        else:
            result["reason"] = "the sizes' compute ranges do not overlap: no level to compare"
        out[schedule] = result
    return out
