"""Plots of a sweep's scaling laws: each target against each predictor with the fitted laws and
their bootstrap bands (``plot_laws``), and the compute frontier (``plot_frontier``); PNGs
through matplotlib's Agg backend, imported only when a plot is made."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fastvgs_jax.sweep.laws import Fit
from fastvgs_jax.sweep.results import PREDICTORS, TARGETS, points


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(names: Sequence[str]) -> dict[str, Any]:
    plt = _pyplot()
    cycle = plt.get_cmap("tab10")
    return {name: cycle(i % 10) for i, name in enumerate(names)}


def _short(value: float) -> str:
    return f"{value:.3g}"


def plot_laws(
    rows: Sequence[Mapping], fits: Mapping[str, Mapping[str, Mapping[str, Fit]]], folder: str
) -> list[str]:
    """One PNG per target × predictor with data (``folder/law_<target>_vs_<predictor>.png``):
    each schedule's runs as points, its fitted law as a line and the law's 95 % bootstrap band
    shaded (over the data's x range); log x. Returns the paths written."""
    plt = _pyplot()
    os.makedirs(folder, exist_ok=True)
    names = sorted(fits)
    colours = _colours(names)
    paths = []
    for target, t in TARGETS.items():
        for predictor, p in PREDICTORS.items():
            data = {
                s: points([r for r in rows if str(r["schedule"]) == s], target, predictor)
                for s in names
            }
            if not any(x.size for x, _ in data.values()):
                continue
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            for schedule in names:
                x, y = data[schedule]
                if not x.size:
                    continue
                fit = fits[schedule][target][predictor]
                colour = colours[schedule]
                if fit.ok:
                    grid = np.geomspace(fit.x_min, fit.x_max, 80)
                    b_int = fit.interval("b")
                    b_text = f"b={fit.b:.2f}" + (
                        f" [{b_int[0]:.2f}, {b_int[1]:.2f}]" if b_int else ""
                    )
                    label = f"{schedule}: {b_text}, c={_short(fit.c)}"
                    ax.plot(grid, fit.predict(grid), color=colour, label=label)
                    band = fit.predict_interval(grid)
                    if band is not None:
                        ax.fill_between(grid, band[0], band[1], color=colour, alpha=0.2, lw=0)
                else:
                    label = f"{schedule}: no fit ({fit.reason})"
                # The runs; labelled only when there is no line to carry the label.
                ax.scatter(x, y, color=colour, s=18, zorder=3, label=None if fit.ok else label)
            ax.set_xscale("log")
            ax.set_xlabel(f"{p.label} ({p.unit})")
            ax.set_ylabel(f"{t.label} ({t.unit})")
            ax.set_title(rf"{target} vs {predictor}: $L = a\,x^{{-b}} + c$", fontsize=10)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3, which="both")
            fig.tight_layout()
            path = os.path.join(folder, f"law_{target}_vs_{predictor}.png")
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths


def plot_frontier(frontier: Mapping[str, Mapping], target: str, path: str) -> str | None:
    """``path``: one panel per schedule, compute on a log x axis: each size's seed-averaged
    runs joined by a line, the lower envelope as a black step line, and the compute-optimal
    size's fitted value (where there is one) as a dashed line, each point labelled by size.
    None (nothing written) when no schedule has a point."""
    names = [s for s in sorted(frontier) if frontier[s]["points"]]
    if not names:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), sharey=True, squeeze=False)
    sizes = sorted(
        {p["size"] for s in names for p in frontier[s]["points"]},
        key=lambda size: (
            min(
                p["parameters"] or 0
                for s in names
                for p in frontier[s]["points"]
                if p["size"] == size
            ),
            size,
        ),
    )
    colours = _colours(sizes)
    for ax, schedule in zip(axes[0], names, strict=True):
        f = frontier[schedule]
        for size in sizes:
            ps = [p for p in f["points"] if p["size"] == size]
            if ps:
                ax.plot(
                    [p["compute"] for p in ps],
                    [p["value"] for p in ps],
                    marker="o",
                    color=colours[size],
                    label=f"{size} ({ps[0]['parameters']:.2g} parameters)"
                    if ps[0]["parameters"]
                    else size,
                )
        envelope = f["envelope"]
        ax.step(
            [e["compute"] for e in envelope],
            [e["value"] for e in envelope],
            where="post",
            color="black",
            lw=1.5,
            label="best so far",
        )
        optimal = f.get("optimal")
        if optimal:
            ax.plot(
                optimal["compute"], optimal["value"], color="grey", ls="--", label="optimal size"
            )
            changes = [
                i for i, s in enumerate(optimal["size"]) if i == 0 or s != optimal["size"][i - 1]
            ]
            for i in changes:
                ax.annotate(
                    optimal["size"][i],
                    (optimal["compute"][i], optimal["value"][i]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(0, -10),
                )
        ax.set_xscale("log")
        ax.set_xlabel("training compute (FLOPs)")
        ax.set_title(schedule, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel(f"{TARGETS[target].label} ({TARGETS[target].unit})")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
