"""The forgetting sweep's rows as numbers: retention (over chance), the rows' ``forgetting``
blocks, each layer's parameter distance, the summary over seeds, the forgetting curves.

This module imports no JAX: the report runs anywhere the sweep's folder is.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from fastvgs_jax.sweep.results import number_at

DIRECTIONS = {"s2i": "speech_to_image", "i2s": "image_to_speech"}
LABELS = {"w2v2": "W2V2", "vgs": "VGS", "vgsplus": "VGS+"}
# The paper (Khorrami et al. 2023, SpokenCOCO 5k test images): test S→I R@10 after the
# SSL phase; chance R@10 is 10 / 5000 images. It reports no switch values.
PAPER = {"vgsplus_w2v2": 52.0, "vgs_w2v2": 0.2, "chance": 0.2}
REFERENCE_START = "vgs"  # the first objective the joint starts are compared against
JOINT_START = "vgsplus"


# --- The arithmetic ------------------------------------------------------------------------


def chance_recall(num_images: int, k: int = 10) -> float:
    """R@k (%) of a ranking that knows nothing: k of ``num_images`` images, at most 100."""
    return 100.0 * min(1.0, k / num_images)


def retention(end: float | None, switch: float | None) -> float | None:
    """end / switch; None when either is missing or the switch is 0."""
    if end is None or switch is None or switch == 0:
        return None
    return end / switch


def retention_over_chance(end: float | None, switch: float | None, chance: float) -> float | None:
    """(end − chance) / (switch − chance): the share of the above-chance recall kept (0: at
    chance, 1: all of it, < 0: below chance); None unless the switch is above chance."""
    if end is None or switch is None or switch <= chance:
        return None
    return (end - chance) / (switch - chance)


def _group_of(path: Sequence[str]) -> str:
    head = path[0]
    if head == "speech_encoder":
        if len(path) > 1 and path[1] == "frontend":
            return "frontend"
        if len(path) > 2 and path[1] == "transformer" and path[2].startswith("layer_"):
            return f"layer_{int(path[2].split('_')[1]) + 1}"  # layer_0 is ABX's layer 1
        return "input"
    if head in ("audio_pooler", "log_scale"):
        return "vgs_branch"
    if head in ("quantizer", "context_projection", "target_projection"):
        return "ssl_head"
    if head == "image_encoder":
        return "image"
    return head


def group_order(name: str) -> tuple:
    fixed = {"frontend": 0, "input": 1, "vgs_branch": 3, "ssl_head": 4, "image": 5}
    if name.startswith("layer_"):
        return (2, int(name.split("_")[1]))
    return (fixed.get(name, 6), name)


def _leaves(tree: Mapping, prefix: tuple = ()) -> Iterable[tuple[tuple, np.ndarray]]:
    for key in sorted(tree):
        value = tree[key]
        if isinstance(value, Mapping):
            yield from _leaves(value, (*prefix, str(key)))
        else:
            yield (*prefix, str(key)), np.asarray(value, dtype=np.float64)


def layer_groups(params: Mapping) -> dict[str, list[tuple[tuple, np.ndarray]]]:
    """The parameter leaves by group (see the module doc), groups in model order."""
    groups: dict[str, list] = {}
    for path, leaf in _leaves(params):
        groups.setdefault(_group_of(path), []).append((path, leaf))
    return {k: groups[k] for k in sorted(groups, key=group_order)}


def layer_distance(before: Mapping, after: Mapping) -> dict[str, float | None]:
    """Per group: ‖after − before‖₂ / ‖before‖₂ over all its parameters (None when
    ``before`` is all zeros there). Both trees must have the same paths and shapes."""
    after_leaves = dict(_leaves(after))
    out: dict[str, float | None] = {}
    for group, leaves in layer_groups(before).items():
        moved = norm = 0.0
        for path, leaf in leaves:
            other = after_leaves.get(path)
            if other is None or other.shape != leaf.shape:
                raise ValueError(f"parameter {'/'.join(path)} differs between the two trees")
            moved += float(np.sum(np.square(other - leaf)))
            norm += float(np.sum(np.square(leaf)))
        out[group] = math.sqrt(moved) / math.sqrt(norm) if norm > 0 else None
    return out


def point(evaluation: Mapping) -> dict:
    """R@10 both ways and the best layers' ABX of one evaluation (``evaluate_run``'s)."""
    retrieval = evaluation.get("retrieval", {})
    abx = evaluation.get("abx", {})
    trained, best = abx.get("trained", {}), abx.get("best_layer", {})
    within, across = best.get("within"), best.get("across")
    return {
        "s2i_r10": retrieval.get("speech_to_image", {}).get("r10"),
        "i2s_r10": retrieval.get("image_to_speech", {}).get("r10"),
        "abx_within": trained[within]["within"] if within else None,
        "abx_across": trained[across]["across"] if across else None,
        "abx_within_layer": within,
        "abx_across_layer": across,
    }


def block(
    *,
    switch: Mapping,
    end: Mapping,
    first_phase: Mapping,
    second_phase: Mapping,
    layer_distance: Mapping,
    vgs_layer: int,
    history: str | None,
) -> dict:
    """A row's ``forgetting`` block from the switch's and the end's evaluations."""
    at_switch, at_end = point(switch), point(end)
    num_images = int(switch["retrieval"]["num_images"])
    chance = chance_recall(num_images)
    return {
        "switch": at_switch,
        "end": at_end,
        "retention": {d: retention(at_end[f"{d}_r10"], at_switch[f"{d}_r10"]) for d in DIRECTIONS},
        "retention_over_chance": {
            d: retention_over_chance(at_end[f"{d}_r10"], at_switch[f"{d}_r10"], chance)
            for d in DIRECTIONS
        },
        "chance_r10": chance,
        "num_images": num_images,
        "first_phase": dict(first_phase),
        "second_phase": dict(second_phase),
        "layer_distance": dict(layer_distance),
        "vgs_layer": int(vgs_layer),
        "history": history,
    }


# --- The summary over seeds ------------------------------------------------------------


def stat(values: Iterable[float | None]) -> dict:
    """mean, std (over seeds, ddof 0 as the study), min, max and n of the finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": float(np.mean(finite)),
        "std": float(np.std(finite)),
        "min": min(finite),
        "max": max(finite),
        "n": len(finite),
    }


def start_label(objective: str, alpha: float | None) -> str:
    """ "VGS+ α=0.1", "VGS", "W2V2": the first phase a run starts from."""
    name = LABELS.get(objective, objective)
    return f"{name} α={alpha:g}" if objective == JOINT_START and alpha is not None else name


def model_label(schedule: str) -> str:
    parts = [LABELS.get(p, p) for p in schedule.split("_")]
    return parts[0] if len(parts) == 1 else f"({', '.join(parts)})"


# (key in the summary, where in the block) of the per-group statistics.
_METRICS = {
    "s2i_switch": ("switch", "s2i_r10"),
    "s2i_end": ("end", "s2i_r10"),
    "i2s_switch": ("switch", "i2s_r10"),
    "i2s_end": ("end", "i2s_r10"),
    "s2i_retention": ("retention", "s2i"),
    "i2s_retention": ("retention", "i2s"),
    "s2i_retention_over_chance": ("retention_over_chance", "s2i"),
    "i2s_retention_over_chance": ("retention_over_chance", "i2s"),
    "abx_within_switch": ("switch", "abx_within"),
    "abx_within_end": ("end", "abx_within"),
    "abx_across_switch": ("switch", "abx_across"),
    "abx_across_end": ("end", "abx_across"),
    "coarse_loss_end": ("first_phase", "coarse_loss_end"),
    "ssl_loss_end": ("first_phase", "ssl_loss_end"),
}


def _start_key(row: Mapping) -> tuple[str, float | None]:
    first = row["forgetting"]["first_phase"]
    alpha = first.get("alpha")
    return str(first["objective"]), (None if alpha is None else round(float(alpha), 6))


def _start_sort(key: tuple[str, float | None]) -> tuple:
    objective, alpha = key
    order = {JOINT_START: 0, REFERENCE_START: 1}.get(objective, 2)
    return (order, objective, -1.0 if alpha is None else alpha)


def summarise(rows: Sequence[Mapping], sweep: str = "") -> dict:
    """The report's numbers (deterministic): per schedule × α × second-phase budget, each
    metric over seeds; the first phases' closing losses; the layers' distances at the
    largest budget; the forgetting curves; the findings."""
    rows = [r for r in rows if isinstance(r.get("forgetting"), Mapping)]
    if not rows:
        raise ValueError("no runs with a forgetting block (a sweep with second_phase_steps)")
    budgets = sorted({int(r["forgetting"]["second_phase"]["steps"]) for r in rows})
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        key = (
            str(row["schedule"]),
            *_start_key(row),
            int(row["forgetting"]["second_phase"]["steps"]),
        )
        groups.setdefault(key, []).append(row)
    ordered = sorted(
        groups, key=lambda k: (k[0] != "vgsplus_w2v2", k[0], _start_sort(k[1:3]), k[3])
    )
    chance = sorted({float(r["forgetting"]["chance_r10"]) for r in rows})
    summary_groups = []
    for key in ordered:
        schedule, objective, alpha, budget = key
        runs = sorted(groups[key], key=lambda r: int(r["seed"]))
        entry = {
            "schedule": schedule,
            "model": model_label(schedule),
            "start": objective,
            "alpha": alpha,
            "label": start_label(objective, alpha),
            "budget": budget,
            "seeds": [int(r["seed"]) for r in runs],
            "runs": [str(r["run"]) for r in runs],
        }
        for name, path in _METRICS.items():
            values = [number_at(r["forgetting"], *path) for r in runs]
            entry[name] = {**stat(values), "values": values}
        entry["coarse_loss_chance"] = number_at(
            runs[0]["forgetting"], "first_phase", "coarse_loss_chance"
        )
        entry["chance_r10"] = float(runs[0]["forgetting"]["chance_r10"])
        summary_groups.append(entry)
    summary = {
        "sweep": sweep,
        "runs": len(rows),
        "seeds": sorted({int(r["seed"]) for r in rows}),
        "first_steps": sorted({int(r["forgetting"]["first_phase"]["steps"]) for r in rows}),
        "budgets": budgets,
        "chance_r10": chance[0] if len(chance) == 1 else chance,
        "num_images": sorted({int(r["forgetting"]["num_images"]) for r in rows}),
        "vgs_layer": sorted({int(r["forgetting"]["vgs_layer"]) for r in rows}),
        "groups": summary_groups,
        "layer_distance": _distances(rows, budgets[-1]),
    }
    from fastvgs_jax.sweep.forgetting_report import findings  # noqa: PLC0415 - it reads these

    summary["findings"] = findings(summary)
    return summary


def _distances(rows: Sequence[Mapping], budget: int) -> dict:
    """Each start's layer distances over the second phase at ``budget`` (per schedule)."""
    lines: dict[tuple, list[Mapping]] = {}
    for row in rows:
        if int(row["forgetting"]["second_phase"]["steps"]) == budget:
            lines.setdefault((str(row["schedule"]), *_start_key(row)), []).append(row)
    out = []
    for key in sorted(lines, key=lambda k: (k[0], _start_sort(k[1:]))):
        schedule, objective, alpha = key
        runs = lines[key]
        names: list[str] = []
        for r in runs:
            for name in r["forgetting"]["layer_distance"]:
                if name not in names:
                    names.append(name)
        names.sort(key=group_order)
        out.append(
            {
                "schedule": schedule,
                "start": objective,
                "alpha": alpha,
                "label": start_label(objective, alpha),
                "layers": {
                    n: stat(r["forgetting"]["layer_distance"].get(n) for r in runs) for n in names
                },
            }
        )
    return {"budget": budget, "lines": out}


def curves(folder: str, rows: Sequence[Mapping]) -> list[dict]:
    """The forgetting curves of the lowest seed that has them: per start, the history
    subset's S→I R@10 and best hook-layer ABX over the second phase (steps since the
    switch). A start with curves at several budgets (a sweep extended to a longer one) shows
    the longest."""
    have = [r for r in rows if (r.get("forgetting") or {}).get("history")]
    if not have:
        return []
    seed = min(int(r["seed"]) for r in have)
    longest: dict = {}  # (schedule, start) → that start's row with the longest second phase
    for row in sorted(have, key=lambda r: int(r["forgetting"]["second_phase"]["steps"])):
        if int(row["seed"]) == seed:
            longest[(str(row["schedule"]), _start_key(row))] = row
    out = []
    for row in sorted(
        longest.values(), key=lambda r: (str(r["schedule"]), _start_sort(_start_key(r)))
    ):
        path = os.path.join(folder, row["forgetting"]["history"])
        if not os.path.exists(path):
            continue
        first = int(row["forgetting"]["first_phase"]["steps"])
        entries = [e for e in read_history(path) if int(e["step"]) >= first]
        objective, alpha = _start_key(row)
        out.append(
            {
                "run": row["run"],
                "schedule": row["schedule"],
                "start": objective,
                "alpha": alpha,
                "label": start_label(objective, alpha),
                "seed": seed,
                "steps": [int(e["step"]) - first for e in entries],
                "metrics": {
                    name: [e["metrics"].get(name) for e in entries]
                    for name in sorted({n for e in entries for n in e["metrics"]})
                },
            }
        )
    return out


def read_history(path: str) -> list[dict]:
    """eval_history.jsonl in step order (a step written again: its last line)."""
    by_step = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                entry = json.loads(line)
                by_step[int(entry["step"])] = entry
    return [by_step[s] for s in sorted(by_step)]
