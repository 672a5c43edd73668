"""The sweep's table (``sweep.jsonl``, ``sweep.md``) and its plan before running (the dry
run's text: each run's cost, estimated time and state)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence

import ml_collections

from fastvgs_jax import workdir as workdir_lib
from fastvgs_jax.data import build
from fastvgs_jax.data.corpora import registry
from fastvgs_jax.eval import evaluate
from fastvgs_jax.study import plan as study_plan
from fastvgs_jax.study import run as study_run
from fastvgs_jax.sweep import cost as sweep_cost
from fastvgs_jax.sweep import plan
from fastvgs_jax.sweep.cost import human
from fastvgs_jax.sweep.plan import RunSpec

# --- The table -----------------------------------------------------------------------------


def _pct(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def _loss(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _abx(value, layer) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} ({evaluate._layer_label(layer)})"  # noqa: SLF001 - the report's labels


def _corpus(data: ml_collections.ConfigDict) -> str:
    from fastvgs_jax.study.report import corpus_label  # noqa: PLC0415

    return corpus_label({"corpus": data.audio_image.corpus, "preset": data.preset})


def table_markdown(
    settings: ml_collections.ConfigDict, specs: Sequence[RunSpec], rows: Mapping[str, dict]
) -> str:
    """sweep.md: one row per finished run (plan order), then the runs not finished yet."""
    data = settings.study.run.data
    lines = [
        f"# Sweep {settings.name}: {len(rows)} of {len(specs)} runs finished",
        "",
        f"Corpus {_corpus(data)}; retrieval on its {settings.study.test_split} split (R@K, %), "
        "ABX error (%) at the best layer. Compute: analytic training FLOPs "
        "(train/flops.py); audio and frames: what the runs read (padding excluded); wall: "
        "the training loop.",
        "",
        "| run | params (encoder / total) | FLOPs/step | compute | audio h | frames | wall s "
        "| MFU | SSL loss | coarse loss | S→I R@1 | S→I R@10 | I→S R@1 | I→S R@10 "
        "| ABX within | ABX across |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for spec in specs:
        r = rows.get(spec.name)
        if r is None:
            continue
        p, f, rt, a = r["parameters"], r["final"], r["retrieval"], r["abx"]
        mfu = "–" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %"
        wall = "–" if r["wall_seconds"] is None else f"{r['wall_seconds']:.0f}"
        cells = [
            r["run"],
            f"{human(p['encoder'])} / {human(p['total'])}",
            human(r["flops_per_step"]),
            human(r["compute"]),
            f"{r['audio_hours_seen']:.3g}",
            human(r["frames_seen"]),
            wall,
            mfu,
            _loss(f["ssl_loss"]),
            _loss(f["coarse_loss"]),
            _pct(rt["s2i_r1"]),
            _pct(rt["s2i_r10"]),
            _pct(rt["i2s_r1"]),
            _pct(rt["i2s_r10"]),
            _abx(a["within"], a["within_layer"]),
            _abx(a["across"], a["across_layer"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    pending = [s.name for s in specs if s.name not in rows]
    if pending:
        lines += ["", f"Not finished ({len(pending)}): " + ", ".join(pending) + "."]
    return "\n".join(lines) + "\n"


def write_tables(
    settings: ml_collections.ConfigDict, specs: Sequence[RunSpec], rows: Mapping[str, dict]
) -> None:
    """sweep.jsonl (finished runs, plan order) and sweep.md, each replaced atomically."""
    os.makedirs(settings.out, exist_ok=True)
    jsonl = "".join(json.dumps(rows[s.name]) + "\n" for s in specs if s.name in rows)
    for name, text in (
        (plan.TABLE_JSONL, jsonl),
        (plan.TABLE_MD, table_markdown(settings, specs, rows)),
    ):
        path = os.path.join(settings.out, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


def read_rows(settings: ml_collections.ConfigDict, specs: Sequence[RunSpec]) -> dict[str, dict]:
    """The rows of the finished runs among ``specs``."""
    rows = {}
    for spec in specs:
        path = os.path.join(plan.run_dir(settings.out, spec.name), plan.ROW_FILE)
        if os.path.exists(path):
            with open(path) as f:
                rows[spec.name] = json.load(f)
    return rows


# --- The plan before running ---------------------------------------------------------------


def _done_steps(workdir: str) -> int:
    return max(workdir_lib.snapshot_steps(workdir), default=0) if os.path.isdir(workdir) else 0


def status(settings: ml_collections.ConfigDict, spec: RunSpec, steps: int) -> str:
    workdir = plan.run_dir(settings.out, spec.name)
    if os.path.exists(os.path.join(workdir, plan.ROW_FILE)):
        return "done"
    done = _done_steps(plan.trained_dir(settings.out, spec))
    if done >= steps:
        return "trained"
    if not done and spec.first_phase is not None:  # not seeded yet: its first phase's progress
        done = _done_steps(plan.first_phase_dir(settings.out, spec))
    return f"at {done}" if done else "new"


def _second_phase_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    second = copy.deepcopy(config)
    second.phases = list(config.phases[1:])
    return second


def plan_text(settings: ml_collections.ConfigDict) -> str:
    """The dry run: every run with its parameters, FLOPs, data and estimated wall time (with
    shared first phases: each first phase once, on a line of its own, and each run's time
    its second phase, its evaluation and its forgetting curve)."""
    specs = plan.expand(settings)
    plan.check_settings(settings, specs)
    est = settings.estimate
    split = plan.split_phases(settings)
    curves = plan.curve_runs(settings, specs)
    per_point = float(est.get("seconds_per_history_point") or 0.0)
    header = (
        f"sweep {settings.name}: {len(specs)} runs, {sweep_cost.total_steps(specs)} steps, out "
        f"{settings.out}"
    )
    if split:
        firsts = {s.first_phase for s in specs}
        header = (
            f"sweep {settings.name}: {len(specs)} runs sharing {len(firsts)} first phases of "
            f"{plan.first_phase_steps(settings)} steps (trained and evaluated once each), "
            f"second phases of {', '.join(map(str, plan.second_phase_budgets(settings)))} "
            f"steps; {sweep_cost.steps_to_train(specs)} steps to train, out {settings.out}"
        )
    lines = [
        header,
        f"time estimate: {est.seconds_per_run:g} s per run + {est.seconds_per_step:g} s per "
        f"step + FLOPs at {human(float(est.flops_per_second), 'FLOP/s')} (settings.estimate)"
        + (
            f"; {per_point:g} s per forgetting-curve point ({len(curves)} curve runs, every "
            f"{int(settings.study.run.eval_every)} steps)"
            if curves
            else ""
        ),
        "",
        "| run | params (encoder / total) | FLOPs/step | compute | audio h | frames | est. time "
        "| status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total_compute = total_seconds = left_seconds = 0.0

    def add(name, cost, seconds, state, compute):
        nonlocal total_compute, total_seconds, left_seconds
        total_compute += compute
        total_seconds += seconds
        left_seconds += 0.0 if state in ("done", "trained") else seconds
        p = cost["parameters"]
        lines.append(
            f"| {name} | {human(p['encoder'])} / {human(p['total'])} | "
            f"{human(cost['flops_per_step'])} | {human(cost['compute'])} | "
            f"{cost['audio_hours']:.3g} | {human(cost['frames'])} | {_minutes(seconds)} | "
            f"{state} |"
        )

    listed: set[str] = set()
    for spec in specs:
        config = plan.run_config_of(settings, spec)
        cost = sweep_cost.cost(config)
        state = status(settings, spec, cost["steps"])
        if spec.first_phase is None:
            add(spec.name, cost, sweep_cost.estimated_seconds(cost, est), state, cost["compute"])
            continue
        if spec.first_phase not in listed:  # trained and evaluated once, before its runs
            listed.add(spec.first_phase)
            first = sweep_cost.cost(plan.first_phase_config_of(settings, spec))
            first_dir = plan.first_phase_dir(settings.out, spec)
            done = _done_steps(first_dir)
            first_state = (
                "trained" if done >= spec.first_steps else (f"at {done}" if done else "new")
            )
            if first_state == "trained" and study_run.cached_evaluation(
                plan.study_settings(settings, spec), first_dir
            ):
                first_state = "done"
            seconds = sweep_cost.estimated_seconds(first, est)
            add(
                f"{plan.FIRST_DIR}/{spec.first_phase}",
                first,
                seconds,
                first_state,
                first["compute"],
            )
        if not spec.second_steps:  # the switch: its first phase's evaluation
            add(spec.name, cost, 0.0, state, 0.0)
            continue
        second = sweep_cost.cost(_second_phase_config(config))
        seconds = sweep_cost.estimated_seconds(second, est)
        if spec.name in curves:
            seconds += per_point * (spec.second_steps // int(config.eval_every) + 1)
        add(spec.name, cost, seconds, state, second["compute"])
    if not _prepared(settings):  # the corpus build and the image tower come first
        prepare_seconds = float(est.get("seconds_to_prepare", 0.0))
        total_seconds += prepare_seconds
        left_seconds += prepare_seconds
    lines += [
        "",
        f"total: {human(total_compute, 'FLOP')}, estimated {_minutes(total_seconds)} "
        f"({_minutes(left_seconds)} left)"
        + (f"; {total_seconds / 60:.0f} min in all" if total_seconds >= 5400 else ""),
    ]
    return "\n".join(lines)


def _prepared(settings: ml_collections.ConfigDict) -> bool:
    """Whether the embedded corpus (if read) is built and the image tower (if any) trained."""
    study = plan.study_settings(settings)
    data = study.run.data
    if registry.uses_embedded(data) and not build.is_built(
        data.data_dir, data.preset, seed=data.corpus_seed
    ):
        return False
    return not study_plan.tower_enabled(study) or os.path.exists(
        study_plan.image_tower_path(settings.out)
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
