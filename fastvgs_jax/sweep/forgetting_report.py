"""The forgetting sweep's report in words: the findings, computed from the summary
(``forgetting_rows.summarise``), and its markdown tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fastvgs_jax.sweep.forgetting_rows import (
    JOINT_START,
    PAPER,
    REFERENCE_START,
    group_order,
    model_label,
)

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


def and_list(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


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
    above_at: dict[int, set] = {}  # budget → the α whose every seed keeps more than VGS's
    budgets = [b for b in summary["budgets"] if b > 0]
    # Every budget is compared; the shortest and the longest are described (the tables and
    # the figure hold the others), so the findings stay at three to five sentences.
    described = {budgets[0], budgets[-1]} if budgets else set()
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
        if budget in described:
            lines.append(
                f"After {budget} SSL steps (VGS, W2V2) keeps {_share(ref)} of its above-chance "
                f"test S→I R@10 ({_pct(reference['s2i_switch']['mean'])} → "
                f"{_pct(reference['s2i_end']['mean'])} %, chance {chance_text} %); VGS+ starts "
                f"keep " + "; ".join(parts) + "."
            )
        above = {g["alpha"] for g in verdicts.get("above", [])}
        above_at[budget] = above
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
        elif any(above_at.values()):
            lines.append(_where_kept(budgets, above_at))
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
            standing = {
                "above": "above every VGS seed",
                "above_mean": "level within the seed spread",
                "below_mean": "level within the seed spread",
                "below": "below every VGS seed",
            }
            versus = (
                ""
                if reference is None
                else f" against (VGS, W2V2)'s {_pct(reference['s2i_end']['mean'])} ± "
                f"{_pct(reference['s2i_end']['std'])} % "
                f"({standing[compare(best['s2i_end'], reference['s2i_end'])]})"
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


def _where_kept(budgets: Sequence[int], above_at: Mapping[int, set]) -> str:
    """The verdict when some α keep more than the VGS start beyond the seed spread at some
    budgets but none at all: which α at which budgets ("from B on" when it holds at B and
    every longer budget), and whether that pattern grows with the SSL phase."""
    alphas_by_budgets: dict[tuple, list] = {}
    for alpha in sorted(set().union(*above_at.values())):
        kept_at = tuple(b for b in budgets if alpha in above_at.get(b, ()))
        alphas_by_budgets.setdefault(kept_at, []).append(f"{alpha:g}")

    def suffix(kept_at: tuple) -> bool:  # that budget and every longer one
        return kept_at == tuple(budgets[budgets.index(kept_at[0]) :])

    def holds_on(kept_at: tuple) -> str:
        if suffix(kept_at) and len(kept_at) > 1:
            return f"from {kept_at[0]} SSL steps on"
        if suffix(kept_at):
            return f"after {kept_at[0]} SSL steps"
        return f"after {and_list([str(b) for b in kept_at])} SSL steps only"

    where = [
        f"α = {and_list(alphas)} {holds_on(kept_at)}"
        for kept_at, alphas in alphas_by_budgets.items()
    ]
    none_at = [str(b) for b in budgets if not above_at.get(b)]
    growing = any(suffix(kept_at) for kept_at in alphas_by_budgets)
    return (
        f"Beyond the seed spread, VGS+ starts keep more than the VGS start at {and_list(where)}"
        + (f"; after {and_list(none_at)} SSL steps no α does" if none_at else "")
        + (
            ": the difference shows as the SSL phase grows."
            if growing
            else "; no α does at every budget, so this sweep does not establish that a VGS+ "
            "start protects retrieval through the SSL phase."
        )
    )


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
