"""The forgetting report's plots (``sweep/forgetting.py``'s summary → PNGs, Agg backend).

- ``retention.png``: test S→I R@10 retention (end / switch), retention over chance and the
  end recall itself against the second (SSL) phase's steps; a line per VGS+ α (the mean),
  a band over seeds (min–max), the VGS start dashed black as the reference.
- ``layer_distance.png``: each part's relative parameter distance over the largest second
  phase, a line per α and the VGS start (bands min–max over seeds); the layers the VGS
  branch reads shaded.
- ``forgetting_curves.png``: the history subset's S→I R@10 and best hook-layer ABX within
  speaker over the second phase, one seed, a line per start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from fastvgs_jax.sweep.forgetting_rows import JOINT_START, REFERENCE_START, group_order, model_label


def _figure(panels: int, width: float = 5.0, height: float = 3.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415 - no pyplot: no global backend

    figure = Figure(figsize=(width * panels, height))
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(1, panels, i + 1) for i in range(panels)]


def _style(start: str, alpha: float | None, alphas: Sequence[float]) -> dict:
    """A colour per α (viridis, in α order); the VGS start black and dashed."""
    from matplotlib import colormaps  # noqa: PLC0415

    if start == REFERENCE_START:
        return {"color": "black", "linestyle": "--"}
    if start != JOINT_START or alpha is None or alpha not in alphas:
        return {"color": "tab:red", "linestyle": ":"}
    position = alphas.index(alpha) / max(1, len(alphas) - 1)
    return {"color": colormaps["viridis"](0.9 * position), "linestyle": "-"}


def _label(start: str, label: str, schedule: str) -> str:
    """The legend of a start: "VGS+ α=0.1", "(VGS, W2V2)" for the reference, else both."""
    if start == JOINT_START:
        return label
    return model_label(schedule) if start == REFERENCE_START else f"{model_label(schedule)} {label}"


def _zorder(start: str) -> int:
    return 3 if start == REFERENCE_START else 2  # the reference on top


def _values(entry: Mapping, metric: str) -> tuple[float, float, float]:
    s = entry[metric]
    if s["mean"] is None:
        return np.nan, np.nan, np.nan
    return s["mean"], s["min"], s["max"]


def _lines(summary: Mapping) -> dict[tuple, list[Mapping]]:
    """Groups of the (VGS+, ·) and (VGS, ·) schedules by (schedule, start, α), budgets in
    order."""
    lines: dict[tuple, list[Mapping]] = {}
    for g in summary["groups"]:
        lines.setdefault((g["schedule"], g["start"], g["alpha"]), []).append(g)
    return {k: sorted(v, key=lambda g: g["budget"]) for k, v in lines.items()}


def _joint_alphas(summary: Mapping) -> list[float]:
    return sorted(
        {
            g["alpha"]
            for g in summary["groups"]
            if g["start"] == JOINT_START and g["alpha"] is not None
        }
    )


def plot_retention(summary: Mapping, path: str) -> str:
    panels = (
        ("s2i_retention", "S→I R@10 retention (end / switch)", 1.0),
        ("s2i_retention_over_chance", "retention over chance", 1.0),
        ("s2i_end", "test S→I R@10 at the end (%)", None),
    )
    figure, axes = _figure(len(panels))
    alphas = _joint_alphas(summary)
    for (schedule, start, alpha), entries in _lines(summary).items():
        budgets = [g["budget"] for g in entries]
        label = _label(start, entries[0]["label"], schedule)
        style = _style(start, alpha, alphas)
        for ax, (metric, _, _) in zip(axes, panels, strict=True):
            mean, low, high = (
                np.array(v) for v in zip(*(_values(g, metric) for g in entries), strict=True)
            )
            ax.plot(budgets, mean, marker="o", label=label, zorder=_zorder(start), **style)
            ax.fill_between(budgets, low, high, color=style["color"], alpha=0.15, linewidth=0)
    chance = summary["chance_r10"]
    for ax, (_, title, reference) in zip(axes, panels, strict=True):
        if reference is not None:
            ax.axhline(reference, color="grey", linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("second (SSL) phase steps")
        ax.grid(alpha=0.3)
    axes[1].axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
    if not isinstance(chance, list):
        axes[2].axhline(chance, color="grey", linewidth=0.8, linestyle=":", label="chance")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    figure.suptitle(
        f"{summary['sweep']}: retrieval kept through the SSL phase (bands: min–max over seeds "
        f"{', '.join(map(str, summary['seeds']))})",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def plot_layer_distance(summary: Mapping, path: str) -> str | None:
    distance = summary["layer_distance"]
    if not distance["lines"] or distance["budget"] == 0:
        return None
    names: list[str] = []
    for line in distance["lines"]:
        names += [n for n in line["layers"] if n not in names]
    names = sorted(names, key=group_order)
    figure, (ax,) = _figure(1, width=7.5, height=4.0)
    alphas = _joint_alphas(summary)
    x = np.arange(len(names))
    for line in distance["lines"]:
        style = _style(line["start"], line["alpha"], alphas)
        stats = [line["layers"].get(n) for n in names]
        mean = np.array([np.nan if s is None or s["mean"] is None else s["mean"] for s in stats])
        low = np.array([np.nan if s is None or s["min"] is None else s["min"] for s in stats])
        high = np.array([np.nan if s is None or s["max"] is None else s["max"] for s in stats])
        label = _label(line["start"], line["label"], line["schedule"])
        ax.plot(x, mean, marker="o", label=label, zorder=_zorder(line["start"]), **style)
        ax.fill_between(x, low, high, color=style["color"], alpha=0.15, linewidth=0)
    vgs_layer = summary["vgs_layer"][0] if summary["vgs_layer"] else None
    shared = [
        i
        for i, n in enumerate(names)
        if n.startswith("layer_") and vgs_layer and int(n.split("_")[1]) <= vgs_layer
    ]
    if shared:
        layers = "layer 1" if vgs_layer == 1 else f"layers 1–{vgs_layer}"
        ax.axvspan(
            min(shared) - 0.4,
            max(shared) + 0.4,
            color="grey",
            alpha=0.1,
            label=f"read by the VGS branch ({layers})",
        )
    ax.set_xticks(x, [n.replace("_", " ") for n in names], rotation=30, fontsize=8)
    ax.set_ylabel("‖θ_end − θ_switch‖ / ‖θ_switch‖")
    ax.set_title(
        f"parameter distance over {distance['budget']} SSL steps (mean, min–max over seeds)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _abx_metric(metrics: Mapping) -> str | None:
    """The history's lowest trained layer with ABX within speaker (the frontend last)."""
    names = [n for n in metrics if n.startswith("abx_within/")]
    layers = sorted(
        (int(n.rsplit("_", 1)[1]), n) for n in names if n.rsplit("/", 1)[1].startswith("layer_")
    )
    if layers:
        return layers[0][1]
    return names[0] if names else None


def plot_curves(summary: Mapping, path: str) -> str | None:
    curves = summary.get("curves") or []
    if not curves:
        return None
    figure, axes = _figure(2)
    alphas = _joint_alphas(summary)
    abx_name = None
    for curve in curves:
        style = _style(curve["start"], curve["alpha"], alphas)
        label = _label(curve["start"], curve["label"], curve["schedule"])
        abx_name = abx_name or _abx_metric(curve["metrics"])
        for ax, name in zip(axes, ("speech_to_image_r10", abx_name), strict=True):
            series = curve["metrics"].get(name) if name else None
            if series is not None:
                values = [np.nan if v is None else v for v in series]
                ax.plot(
                    curve["steps"],
                    values,
                    marker=".",
                    label=label,
                    zorder=_zorder(curve["start"]),
                    **style,
                )
    axes[0].set_title("history subset: S→I R@10 (%)", fontsize=10)
    layer = abx_name.split("/", 1)[1].replace("_", " ") if abx_name else "–"
    axes[1].set_title(f"history subset: ABX within speaker, {layer} (error %)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("steps since the switch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(
        f"{summary['sweep']}: forgetting curves over the SSL phase, seed {curves[0]['seed']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def plot_all(summary: Mapping, folder: str) -> list[str]:
    """The report's plots under ``folder``; returns the paths written."""
    written = [plot_retention(summary, os.path.join(folder, "retention.png"))]
    for plot, name in (
        (plot_layer_distance, "layer_distance.png"),
        (plot_curves, "forgetting_curves.png"),
    ):
        path = plot(summary, os.path.join(folder, name))
        if path:
            written.append(path)
    return written
