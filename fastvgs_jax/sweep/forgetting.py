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
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence

from fastvgs_jax.sweep.forgetting_report import and_list, tables_markdown
from fastvgs_jax.sweep.forgetting_rows import LABELS, curves, summarise
from fastvgs_jax.sweep.results import json_safe, load_rows

PLOTS_DIR = "plots"
PLOTS = ("retention", "layer_distance", "forgetting_curves")
BEGIN, END = "<!-- forgetting:begin -->", "<!-- forgetting:end -->"

# --- The report and the docs section ----------------------------------------------------


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
    summary = json_safe(summary)
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
            f"{and_list(models)}: a first phase of {', '.join(map(str, summary['first_steps']))} "
            f"steps, then {and_list(seconds)} for {budgets} steps, seeds "
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
