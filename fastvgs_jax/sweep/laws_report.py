"""The scaling-law report of a sweep folder, and its command.

``python -m fastvgs_jax.sweep.laws --sweep=DIR`` (or ``-m fastvgs_jax.sweep.laws_report``)
reads ``DIR/sweep.jsonl`` and writes ``DIR/laws.json`` (the fits and their intervals, the
frontier; no timestamps), ``DIR/laws.md`` (tables) and
``DIR/plots/law_<target>_vs_<predictor>.png`` and ``DIR/plots/frontier_<target>.png``.
The fits: ``fastvgs_jax.sweep.laws``; the frontier: ``fastvgs_jax.sweep.frontier``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping

from fastvgs_jax.sweep.frontier import compute_frontier
from fastvgs_jax.sweep.laws import LEVEL, fit_all
from fastvgs_jax.sweep.laws_plots import plot_frontier, plot_laws
from fastvgs_jax.sweep.results import (
    PREDICTORS,
    SWEEP_FILE,
    TARGETS,
    json_safe,
    load_rows,
    schedules,
)

PLOTS_DIR = "plots"


def _with_interval(value: float, pair: list[float] | None, fmt: str, zero: float = 0.0) -> str:
    """``value [low, high]``; numbers below ``zero`` in size written as 0 (a c of 1e-19)."""

    def number(v: float) -> str:
        return "0" if abs(v) < zero else format(v, fmt)

    return (
        number(value) if pair is None else f"{number(value)} [{number(pair[0])}, {number(pair[1])}]"
    )


def report_markdown(report: Mapping) -> str:
    """``laws.md`` from ``laws.json``'s content: a table of the fits per target, then the
    frontier per target and schedule."""
    lines = [
        f"# Scaling laws of sweep {report['sweep']}",
        "",
        f"{report['runs']} runs; schedules {', '.join(report['schedules'])}. "
        "Fits of L = a·x^−b + c per schedule, on every run of the schedule with the value "
        f"(marginal over the other axes); intervals: {round(100 * LEVEL)} % bootstrap over runs "
        f"({report['bootstrap']} resamples, seed {report['seed']}; `ok` = resamples that "
        "could be fitted; n: runs (distinct x values), 3 distinct x determine the law exactly). "
        "L̂ at 10× max x is an extrapolation.",
        "",
    ]
    for target, t in TARGETS.items():
        lines += [
            f"## {t.label} ({t.unit})",
            "",
            "| schedule | x | n | a | b | c | L̂ at max x | L̂ at 10× max x | ok / resamples |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for schedule in report["schedules"]:
            for predictor, p in PREDICTORS.items():
                f = report["fits"][schedule][target][predictor]
                head = f"| {schedule} | {predictor} ({p.unit}) | {f['n']} ({f['n_distinct']} x) |"
                if not f["ok"]:
                    lines.append(f"{head} no fit: {f['reason']} | | | | | |")
                    continue
                intervals = f["intervals"]
                cells = [
                    _with_interval(f["a"], intervals["a"], ".3g"),
                    _with_interval(f["b"], intervals["b"], ".3f"),
                    _with_interval(
                        f["c"], intervals["c"], ".4g", 1e-6 * f["predictions"][1]["value"]
                    ),
                    *(
                        _with_interval(q["value"], q["interval"], ".4g")
                        for q in f["predictions"][1:]
                    ),
                    f"{f['n_bootstrap_ok']} / {f['n_bootstrap']}",
                ]
                lines.append(f"{head} " + " | ".join(cells) + " |")
        lines += ["", f"### Compute frontier: {target}", ""]
        for schedule, fr in report["frontier"][target].items():
            if not fr["points"]:
                lines.append(f"- {schedule}: no runs with this value.")
                continue
            steps = [
                e for i, e in enumerate(fr["envelope"]) if i == 0 or e["at_compute"] == e["compute"]
            ]
            path = ", ".join(
                f"{e['compute']:.3g} FLOPs → {e['value']:.4g} ({e['size']})" for e in steps
            )
            lines.append(f"- {schedule}, best so far: {path}.")
            optimal = fr["optimal"]
            if optimal is None:
                lines.append(f"  Compute-optimal size: none ({fr['reason']}).")
            else:
                spans = []
                for i, size in enumerate(optimal["size"]):
                    if i == 0 or size != optimal["size"][i - 1]:
                        spans.append([size, optimal["compute"][i], optimal["compute"][i]])
                    spans[-1][2] = optimal["compute"][i]
                text = "; ".join(f"{s} for {lo:.3g}–{hi:.3g} FLOPs" for s, lo, hi in spans)
                lines.append(f"  Compute-optimal size (fitted per-size curves): {text}.")
        lines.append("")
    return "\n".join(lines)


def write_report(folder: str, *, bootstrap: int = 1000, seed: int = 0) -> str:
    """Fits every law of ``folder/sweep.jsonl`` and writes ``laws.json`` (returned),
    ``laws.md`` and the PNGs under ``folder/plots/``; deterministic for a given input."""
    rows = load_rows(folder)
    if not rows:
        raise ValueError(f"{os.path.join(folder, SWEEP_FILE)}: no runs")
    fits = fit_all(rows, bootstrap=bootstrap, seed=seed)
    frontier = {target: compute_frontier(rows, target) for target in TARGETS}
    plots_dir = os.path.join(folder, PLOTS_DIR)
    plots = plot_laws(rows, fits, plots_dir)
    for target in TARGETS:
        path = plot_frontier(
            frontier[target], target, os.path.join(plots_dir, f"frontier_{target}.png")
        )
        if path:
            plots.append(path)
    report = json_safe(
        {
            "sweep": os.path.basename(os.path.normpath(os.path.abspath(folder))),
            "runs": len(rows),
            "schedules": schedules(rows),
            "bootstrap": bootstrap,
            "seed": seed,
            "level": LEVEL,
            "model": "L = a * x**-b + c",
            "targets": {k: {"label": q.label, "unit": q.unit} for k, q in TARGETS.items()},
            "predictors": {k: {"label": q.label, "unit": q.unit} for k, q in PREDICTORS.items()},
            "fits": {
                s: {t: {p: fit.to_json() for p, fit in by_p.items()} for t, by_p in by_t.items()}
                for s, by_t in fits.items()
            },
            "frontier": frontier,
            "plots": sorted(os.path.relpath(p, folder) for p in plots),
        }
    )
    path = os.path.join(folder, "laws.json")
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    os.replace(path + ".tmp", path)
    md = os.path.join(folder, "laws.md")
    with open(md + ".tmp", "w") as f:
        f.write(report_markdown(report))
    os.replace(md + ".tmp", md)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastvgs_jax.sweep.laws",
        description="Fit L = a·x^−b + c to a sweep's runs; write laws.json, laws.md, plots/.",
    )
    parser.add_argument("--sweep", required=True, metavar="DIR", help="folder with sweep.jsonl")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (0: no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    parser.add_argument(
        "--docs", metavar="PAGE", help="also write this docs page (plots into its images/)"
    )
    args = parser.parse_args(argv)
    try:
        path = write_report(args.sweep, bootstrap=args.bootstrap, seed=args.seed)
        if args.docs:
            from fastvgs_jax.sweep import docs_page  # noqa: PLC0415

            with open(path) as f:
                report = json.load(f)
            print(f"wrote {docs_page.write_page(args.sweep, report, args.docs)}")
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    print(f"wrote {os.path.join(args.sweep, 'laws.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
