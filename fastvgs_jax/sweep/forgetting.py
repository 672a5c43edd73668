"""The forgetting question, measured: how much retrieval a first phase's start keeps through
a later SSL phase, as α and the second phase's length vary (``configs/sweep.py:forgetting``).

    python launch/sweep.py --config=configs/sweep.py:forgetting               # the runs
    python -m fastvgs_jax.sweep.forgetting --sweep=results/sweep_forgetting \
        [--docs=docs/results.md]                                               # the report

A run's row (``sweep.jsonl``, written by ``sweep/run.py`` for sweeps with
``second_phase_steps``) carries a ``forgetting`` block (``block``)::

    {"switch": {"s2i_r10", "i2s_r10", "abx_within", "abx_across",
                "abx_within_layer", "abx_across_layer"},       # test split, at the switch
     "end": {…the same, at the run's end},                      # = switch for 0 steps
     "retention": {"s2i", "i2s"},               # end / switch; None when switch is 0
     "retention_over_chance": {"s2i", "i2s"},   # (end − chance) / (switch − chance);
                                                # None unless switch > chance
     "chance_r10", "num_images",                # chance R@10 = 10 / images × 100 (%)
     "first_phase": {"objective", "alpha", "steps", "coarse_loss_end", "ssl_loss_end",
                     "coarse_loss_chance"},     # closing losses; chance: ln(batch) (CLIP)
     "second_phase": {"objective", "steps"},
     "layer_distance": {group: ‖θ_end − θ_switch‖ / ‖θ_switch‖},  # params only
     "vgs_layer",                               # the layer the VGS branch reads
     "history"}                                 # eval_history.jsonl of a curve run, or None

Parameter groups of ``layer_distance`` (``layer_groups``): ``frontend``, ``input`` (frame
norm and projection, mask vector, CLS, positional conv, the norm before the layers),
``layer_1`` … ``layer_L`` (transformer layers, numbered as ABX numbers them), ``vgs_branch``
(audio pooler, CLIP scale), ``ssl_head`` (quantizer, context and target projections),
``image``.

The report (``write_report``) reads ``DIR/sweep.jsonl`` and writes ``DIR/forgetting.json``
(the summary, deterministic), ``DIR/forgetting.md`` (per schedule × α × budget: mean ± std
over seeds of R@10 at the switch and the end, retention, retention over chance, ABX at both
points; the first phases' closing losses; the layers' distances) and three plots under
``DIR/plots/`` (``forgetting_plots.py``). ``--docs=PAGE`` replaces (or appends) PAGE's
section between ``<!-- forgetting:begin -->`` and ``<!-- forgetting:end -->``: the findings,
computed from the numbers, the figures (copied to the page's ``images/``) and the tables.

This module imports no JAX: the report runs anywhere the sweep's folder is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from fastvgs_jax.sweep.results import load_rows, number_at

PLOTS_DIR = "plots"
PLOTS = ("retention", "layer_distance", "forgetting_curves")
BEGIN, END = "<!-- forgetting:begin -->", "<!-- forgetting:end -->"
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
    switch)."""
    have = [r for r in rows if (r.get("forgetting") or {}).get("history")]
    if not have:
        return []
    seed = min(int(r["seed"]) for r in have)
    out = []
    for row in sorted(have, key=lambda r: (str(r["schedule"]), _start_sort(_start_key(r)))):
        if int(row["seed"]) != seed:
            continue
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


# --- Findings, computed ------------------------------------------------------------------


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _share(s: Mapping) -> str:
    """A retention statistic as a percentage, mean ± std."""
    if s["mean"] is None:
        return "–"
    return f"{100 * s['mean']:.0f} ± {100 * s['std']:.0f} %"


def _alphas(entries: Sequence[Mapping]) -> str:
    return ", ".join(f"{e['alpha']:g}" for e in entries)


def compare(candidate: Mapping, reference: Mapping) -> str | None:
    """How a start's per-seed values stand against the reference's: "above" (every seed
    above every reference seed), "above_mean" (the mean above, the seed ranges overlap),
    "below", "below_mean", or None without values."""
    if candidate["mean"] is None or reference["mean"] is None:
        return None
    if candidate["min"] > reference["max"]:
        return "above"
    if candidate["max"] < reference["min"]:
        return "below"
    return "above_mean" if candidate["mean"] > reference["mean"] else "below_mean"


def findings(summary: Mapping) -> list[str]:
    """Three to five sentences computed from the summary: per budget, which α keeps more of
    its above-chance S→I R@10 than the VGS start (with the seed spread); the end recall at
    the largest budget beside the paper's; where the first phases end and how far the
    shared layers move in the SSL phase."""
    groups = summary["groups"]
    by = {}
    for g in groups:
        by.setdefault(g["budget"], []).append(g)
    chance = summary["chance_r10"]
    chance_text = _pct(chance if not isinstance(chance, list) else chance[0])
    lines = []
    kept_everywhere: set | None = None
    budgets = [b for b in summary["budgets"] if b > 0]
    for budget in budgets:
        reference = next((g for g in by[budget] if g["start"] == REFERENCE_START), None)
        joint = [g for g in by[budget] if g["start"] == JOINT_START]
        if not joint:
            continue
        if reference is None:
            kept = "; ".join(
                f"α={g['alpha']:g} {_share(g['s2i_retention_over_chance'])}"
                if g["s2i_retention_over_chance"]["mean"] is not None
                else f"α={g['alpha']:g} nothing (at or below chance at the switch)"
                for g in joint
            )
            lines.append(
                f"After {budget} SSL steps the VGS+ starts keep, of their above-chance test "
                f"S→I R@10 (chance {chance_text} %): {kept}; the sweep has no VGS start to "
                "compare them with."
            )
            kept_everywhere = None
            continue
        ref = reference["s2i_retention_over_chance"]
        verdicts: dict[str | None, list] = {}
        for g in joint:
            verdicts.setdefault(compare(g["s2i_retention_over_chance"], ref), []).append(g)
        parts = []
        names = {
            "above": "more, beyond the seed spread (every seed above every VGS seed), at",
            "above_mean": "more by the mean only (the seed ranges overlap) at",
            "below_mean": "less by the mean (the seed ranges overlap) at",
            "below": "less, beyond the seed spread, at",
        }
        for verdict, text in names.items():
            if verdict in verdicts:
                detail = ", ".join(
                    f"{g['alpha']:g} ({_share(g['s2i_retention_over_chance'])})"
                    for g in verdicts[verdict]
                )
                parts.append(f"{text} α = {detail}")
        if None in verdicts:
            parts.append(
                f"no retention to measure at α = {_alphas(verdicts[None])} (at or below "
                "chance at the switch)"
            )
        lines.append(
            f"After {budget} SSL steps (VGS, W2V2) keeps {_share(ref)} of its above-chance "
            f"test S→I R@10 ({_pct(reference['s2i_switch']['mean'])} → "
            f"{_pct(reference['s2i_end']['mean'])} %, chance {chance_text} %); VGS+ starts "
            f"keep " + "; ".join(parts) + "."
        )
        above = {g["alpha"] for g in verdicts.get("above", [])}
        kept_everywhere = above if kept_everywhere is None else kept_everywhere & above
    if (
        budgets
        and kept_everywhere is not None
        and any(g["start"] == REFERENCE_START for g in groups)
    ):
        if kept_everywhere:
            lines.append(
                f"At every budget, α = {', '.join(f'{a:g}' for a in sorted(kept_everywhere))} "
                "keeps more retrieval than the VGS start beyond the seed spread."
            )
        else:
            lines.append(
                "No α keeps more retrieval than the VGS start beyond the seed spread at every "
                "budget: a VGS+ start does not protect retrieval through the SSL phase here."
            )
    last = max(budgets, default=None)
    if last is not None:
        joint = [
            g for g in by[last] if g["start"] == JOINT_START and g["s2i_end"]["mean"] is not None
        ]
        reference = next((g for g in by[last] if g["start"] == REFERENCE_START), None)
        if joint:
            best = max(joint, key=lambda g: g["s2i_end"]["mean"])
            versus = (
                ""
                if reference is None
                else f" against (VGS, W2V2)'s {_pct(reference['s2i_end']['mean'])} ± "
                f"{_pct(reference['s2i_end']['std'])} %"
            )
            lines.append(
                f"After {last} SSL steps the best VGS+ start (α={best['alpha']:g}) ends at "
                f"{_pct(best['s2i_end']['mean'])} ± {_pct(best['s2i_end']['std'])} % test S→I "
                f"R@10{versus}, chance {chance_text} % (the paper, after its 50-epoch SSL "
                f"phase: {PAPER['vgsplus_w2v2']} vs {PAPER['vgs_w2v2']} %, chance "
                f"{PAPER['chance']} % at 5k images; it reports no switch values)."
            )
    why = _why(summary, by)
    if why:
        lines.append(why)
    return lines


def _why(summary: Mapping, by: Mapping) -> str | None:
    """Where the first phases end (coarse loss, switch recall) and how far the layers the
    VGS branch reads move in the SSL phase, VGS+ starts against the VGS start."""
    switch = by[summary["budgets"][0]]
    joint = [g for g in switch if g["start"] == JOINT_START]
    reference = next((g for g in switch if g["start"] == REFERENCE_START), None)
    if not joint:
        return None
    losses = ", ".join(
        f"{_pct(g['coarse_loss_end']['mean'], 2)} at α={g['alpha']:g}" for g in joint
    )
    recalls = ", ".join(f"{_pct(g['s2i_switch']['mean'])}" for g in joint)
    chance_loss = joint[0]["coarse_loss_chance"]
    text = (
        f"At the switch the VGS+ phases' coarse loss ends at {losses}"
        + (
            ""
            if reference is None
            else f" against the VGS phase's {_pct(reference['coarse_loss_end']['mean'], 2)}"
        )
        + (f" (chance ln(batch) = {chance_loss:.2f})" if chance_loss is not None else "")
        + f", their test S→I R@10 at {recalls} % (same order)"
        + ("" if reference is None else f" against VGS's {_pct(reference['s2i_switch']['mean'])} %")
    )
    distance = summary["layer_distance"]
    vgs_layer = summary["vgs_layer"][0] if summary["vgs_layer"] else None
    if distance["budget"] > 0 and vgs_layer:
        shared = [f"layer_{i}" for i in range(1, vgs_layer + 1)]

        def moved(line: Mapping) -> float | None:
            means = [line["layers"][n]["mean"] for n in shared if n in line["layers"]]
            means = [m for m in means if m is not None]
            return float(np.mean(means)) if means else None

        joint_lines = [ln for ln in distance["lines"] if ln["start"] == JOINT_START]
        ref_line = next((ln for ln in distance["lines"] if ln["start"] == REFERENCE_START), None)
        moves = [(ln["alpha"], moved(ln)) for ln in joint_lines]
        moves = [(a, m) for a, m in moves if m is not None]
        if moves:
            low, high = min(m for _, m in moves), max(m for _, m in moves)
            span = f"{low:.3f}" if low == high else f"{low:.3f}–{high:.3f}"
            layers = "layer 1" if vgs_layer == 1 else f"layers 1–{vgs_layer}"
            text += (
                f"; over {distance['budget']} SSL steps the layers the VGS branch reads "
                f"({layers}) move by a relative L2 distance of {span} from VGS+ starts"
            )
            if ref_line is not None and moved(ref_line) is not None:
                text += f" and {moved(ref_line):.3f} from the VGS start"
    return text + "."


# --- Tables ---------------------------------------------------------------------------------


def _cell(s: Mapping, digits: int = 1) -> str:
    if s["mean"] is None:
        return "–"
    if s["n"] == 1:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _ratio_cell(s: Mapping) -> str:
    return _cell(s, 2)


def tables_markdown(summary: Mapping, level: int = 1) -> str:
    """forgetting.md: the runs' table, the first phases, the layers' distances."""
    h = "#" * level
    chance = summary["chance_r10"]
    lines = [
        f"{h} Forgetting in sweep {summary['sweep']}",
        "",
        f"{summary['runs']} runs, seeds {', '.join(map(str, summary['seeds']))}; first phase "
        f"{', '.join(map(str, summary['first_steps']))} steps, second (SSL) phase "
        f"{', '.join(map(str, summary['budgets']))} steps (0: the switch). Test split: "
        f"{', '.join(map(str, summary['num_images']))} images, chance R@10 "
        f"{chance if isinstance(chance, list) else f'{chance:.1f}'} %. Mean ± std over seeds; "
        "retention = end / switch, over chance = (end − chance) / (switch − chance) (– where "
        "the switch is not above chance); ABX: error % at the best evaluated layer, switch → "
        "end.",
        "",
        f"{h}# Retrieval and ABX at the switch and the end",
        "",
        "| model | start | SSL steps | seeds | S→I R@10 switch | S→I R@10 end | S→I retention "
        "| S→I over chance | I→S R@10 switch | I→S R@10 end | I→S retention | I→S over chance "
        "| ABX within | ABX across |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in summary["groups"]:
        cells = [
            g["model"],
            g["label"],
            str(g["budget"]),
            str(len(g["seeds"])),
            _cell(g["s2i_switch"]),
            _cell(g["s2i_end"]),
            _ratio_cell(g["s2i_retention"]),
            _ratio_cell(g["s2i_retention_over_chance"]),
            _cell(g["i2s_switch"]),
            _cell(g["i2s_end"]),
            _ratio_cell(g["i2s_retention"]),
            _ratio_cell(g["i2s_retention_over_chance"]),
            f"{_cell(g['abx_within_switch'], 2)} → {_cell(g['abx_within_end'], 2)}",
            f"{_cell(g['abx_across_switch'], 2)} → {_cell(g['abx_across_end'], 2)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"{h}# Where the first phases end",
        "",
        "| start | seeds | coarse loss | SSL loss | S→I R@10 | I→S R@10 |",
        "|---|---|---|---|---|---|",
    ]
    seen = set()
    for g in summary["groups"]:
        key = (g["start"], g["alpha"])
        if key in seen:
            continue
        seen.add(key)
        lines.append(
            f"| {g['label']} | {len(g['seeds'])} | {_cell(g['coarse_loss_end'], 3)} | "
            f"{_cell(g['ssl_loss_end'], 3)} | {_cell(g['s2i_switch'])} | {_cell(g['i2s_switch'])} |"
        )
    chance_loss = next(
        (g["coarse_loss_chance"] for g in summary["groups"] if g["coarse_loss_chance"]), None
    )
    if chance_loss is not None:
        lines += [
            "",
            "Losses: the mean over the first phase's last 10 % of steps; the CLIP coarse loss "
            f"of embeddings that say nothing is ln(batch) = {chance_loss:.3f}.",
        ]
    distance = summary["layer_distance"]
    if distance["lines"]:
        names: list[str] = []
        for line in distance["lines"]:
            names += [n for n in line["layers"] if n not in names]
        names.sort(key=group_order)
        lines += [
            "",
            f"{h}# How far each part moves in {distance['budget']} SSL steps",
            "",
            "Relative L2 distance ‖θ_end − θ_switch‖ / ‖θ_switch‖ of each part's parameters "
            "(mean over seeds); the VGS branch reads layer "
            f"{', '.join(map(str, summary['vgs_layer']))}.",
            "",
            "| model | start | " + " | ".join(n.replace("_", " ") for n in names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        for line in distance["lines"]:
            cells = [_cell(line["layers"][n], 3) if n in line["layers"] else "–" for n in names]
            lines.append(
                f"| {model_label(line['schedule'])} | {line['label']} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


# --- The report and the docs section ----------------------------------------------------


def _clean(value):
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_report(folder: str) -> dict:
    """forgetting.json, forgetting.md and plots/{retention,layer_distance,
    forgetting_curves}.png of the sweep in ``folder``; returns the summary."""
    from fastvgs_jax.sweep import forgetting_plots  # noqa: PLC0415 - matplotlib when plotting

    rows = load_rows(folder)
    name = os.path.basename(os.path.normpath(os.path.abspath(folder)))
    summary = summarise(rows, sweep=name)
    summary["curves"] = curves(folder, rows)
    plots_dir = os.path.join(folder, PLOTS_DIR)
    os.makedirs(plots_dir, exist_ok=True)
    written = forgetting_plots.plot_all(summary, plots_dir)
    summary["plots"] = sorted(os.path.relpath(p, folder) for p in written)
    summary = _clean(summary)
    _write(
        os.path.join(folder, "forgetting.json"),
        json.dumps(summary, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
    )
    _write(os.path.join(folder, "forgetting.md"), tables_markdown(summary))
    return summary


def section(summary: Mapping, folder: str, images: Sequence[tuple[str, str]]) -> str:
    """The docs section, between the markers; ``images``: (plot, path from the page)."""
    budgets = ", ".join(map(str, summary["budgets"]))
    models = list(dict.fromkeys(g["model"] for g in summary["groups"]))
    seconds = list(
        dict.fromkeys(LABELS.get(g["schedule"].split("_")[-1], "?") for g in summary["groups"])
    )
    body = tables_markdown(summary, level=2).split("\n", 1)[1].strip()  # without its title
    return "\n".join(
        [
            BEGIN,
            "## Forgetting: what a VGS+ start keeps through an SSL phase",
            "",
            f"<!-- Written by `python -m fastvgs_jax.sweep.forgetting --sweep={folder} --docs=…` "
            "from that folder's sweep.jsonl; do not edit by hand. -->",
            "",
            f"{_and(models)}: a first phase of {', '.join(map(str, summary['first_steps']))} "
            f"steps, then {_and(seconds)} for {budgets} steps, seeds "
            f"{', '.join(map(str, summary['seeds']))} (how sweeps run: [sweeps.md](sweeps.md)). "
            "Retention over chance = (end − chance) / (switch − chance) of test S→I R@10.",
            "",
            *(f"- {line}" for line in summary["findings"]),
            "",
            *(f"![{plot}]({path})\n" for plot, path in images),
            body,
            END,
        ]
    )


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def write_docs(folder: str, summary: Mapping, page: str) -> str:
    """Replaces ``page``'s forgetting section (or appends one), the plots copied to the
    page's ``images/`` folder; returns the page's path."""
    images_dir = os.path.join(os.path.dirname(os.path.abspath(page)), "images")
    os.makedirs(images_dir, exist_ok=True)
    shown = []
    for plot in PLOTS:
        source = os.path.join(folder, PLOTS_DIR, f"{plot}.png")
        if os.path.exists(source):
            target = f"{summary['sweep']}_{plot}.png"
            shutil.copyfile(source, os.path.join(images_dir, target))
            shown.append((plot, f"images/{target}"))
    text = section(summary, folder, shown)
    existing = ""
    if os.path.exists(page):
        with open(page) as f:
            existing = f.read()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), flags=re.DOTALL)
    if pattern.search(existing):
        updated = pattern.sub(lambda _: text, existing, count=1)
    else:
        updated = existing.rstrip("\n") + ("\n\n" if existing else "") + text + "\n"
    _write(page, updated)
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastvgs_jax.sweep.forgetting",
        description="Report a forgetting sweep: forgetting.json, forgetting.md, plots/.",
    )
    parser.add_argument("--sweep", required=True, metavar="DIR", help="folder with sweep.jsonl")
    parser.add_argument(
        "--docs", metavar="PAGE", help="also write PAGE's forgetting section (e.g. docs/results.md)"
    )
    args = parser.parse_args(argv)
    try:
        summary = write_report(args.sweep)
        for plot in summary["plots"]:
            print(f"wrote {os.path.join(args.sweep, plot)}")
        print(f"wrote {os.path.join(args.sweep, 'forgetting.md')}")
        if args.docs:
            print(f"wrote {write_docs(args.sweep, summary, args.docs)}")
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in summary["findings"]:
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
