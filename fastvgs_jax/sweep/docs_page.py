"""A sweep's results as a docs page, written from the sweep folder's own files.

``python -m fastvgs_jax.sweep.laws --sweep=DIR --docs=docs/sweep_results.md`` writes the page
(provenance, the runs' table from ``sweep.md``, what the fits say, computed, and the fits'
tables from ``laws.md``) and copies the main plots beside it under ``docs/images/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping

from fastvgs_jax.sweep.results import TARGETS

# The plots the page shows (the rest stay in the sweep folder).
SHOWN_PLOTS = (
    "law_retrieval_error_vs_compute",
    "law_abx_within_vs_compute",
    "law_ssl_loss_vs_compute",
    "frontier_retrieval_error",
)


def findings(report: Mapping) -> list[str]:
    """One sentence per target: each schedule's fitted exponent against compute (with its
    interval) and which schedule the fits put lower at the sweep's largest compute."""
    lines = []
    for target, quantity in TARGETS.items():
        parts, at_max = [], {}
        for schedule in report["schedules"]:
            fit = report["fits"][schedule][target]["compute"]
            if not fit["ok"]:
                parts.append(f"{schedule}: no fit ({fit['reason']})")
                continue
            low, high = fit["intervals"]["b"] or (None, None)
            interval = "" if low is None else f" [{low:.2f}, {high:.2f}]"
            parts.append(f"{schedule}: b = {fit['b']:.2f}{interval}")
            at_max[schedule] = fit["predictions"][1]["value"]  # L̂ at the largest x
        sentence = f"- **{quantity.label}** against compute — " + "; ".join(parts) + "."
        if len(at_max) > 1:
            best = min(at_max, key=at_max.get)
            values = ", ".join(f"{s} {v:.3g}" for s, v in at_max.items())
            sentence += f" At the largest compute the fits give {values}: {best} lowest."
        lines.append(sentence)
    return lines


def write_page(folder: str, report: Mapping, page: str) -> str:
    """Writes ``page`` from ``folder``'s sweep.md, laws.md and plots; returns its path."""
    docs_dir = os.path.dirname(os.path.abspath(page))
    images = os.path.join(docs_dir, "images")
    os.makedirs(images, exist_ok=True)
    name = report["sweep"]
    with open(os.path.join(folder, "sweep.md")) as f:
        table = f.read().split("\n", 1)[1].strip()  # without its title
    with open(os.path.join(folder, "laws.md")) as f:
        laws = f.read().split("\n", 1)[1].strip()
    shown = []
    for plot in SHOWN_PLOTS:
        source = os.path.join(folder, "plots", f"{plot}.png")
        if os.path.exists(source):
            target = os.path.join(images, f"{name}_{plot}.png")
            shutil.copyfile(source, target)
            shown.append(f"![{plot}](images/{os.path.basename(target)})")
    text = "\n".join(
        [
            f"# Sweep {name}: results",
            "",
            f"Written by `python -m fastvgs_jax.sweep.laws --sweep={folder} --docs=…` from that "
            f"folder's `sweep.jsonl` ({report['runs']} runs), `sweep.md` and `laws.json`. How "
            "sweeps run and what the fits are: [sweeps.md](sweeps.md).",
            "",
            "## What the fits say",
            "",
            *findings(report),
            "",
            "What they do not show: each fit pools a schedule's runs over sizes and budgets "
            "(a marginal law, not a joint one in parameters and data), a handful of CPU-scale "
            "runs of one seed determine it, and intervals that reach their bounds mean the "
            "exponent is not pinned down. They describe this sweep's range, not an "
            "extrapolation to the paper's scale.",
            "",
            *shown,
            "",
            "## Runs",
            "",
            table,
            "",
            "## Fits",
            "",
            re.sub(r"^(#+) ", r"\1# ", laws, flags=re.MULTILINE),  # one level down
            "",
        ]
    )
    with open(page, "w") as f:
        f.write(text)
    return page
