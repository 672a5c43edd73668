"""Run a sweep here, one run after another (resumable), and write its table.

``run_sweep(settings)`` builds the corpus and the image tower (once per sweep), checks that
every kept run was trained with the config the settings now give, then for each run in plan
order: trains it (``loop.train``; a run with snapshots resumes), evaluates it with the study's
evaluation (test-split retrieval, ABX on every layer; cached in ``evaluation.json``), writes
its row (``sweep_row.json``: the run is finished) and rewrites ``sweep.jsonl`` and
``sweep.md``. A rerun keeps finished runs; ``stage="collect"`` trains nothing (runs trained
elsewhere, e.g. on a cluster, are evaluated and tabulated; unfinished ones listed as pending).

A row (``sweep.jsonl``, one line per finished run; ``sweep/laws.py`` reads these keys)::

    {"run", "size", "schedule", "seed", "data_fraction", "steps",
     "parameters": {"encoder", "vgs_branch", "image", "total"},
     "flops_per_step", "compute", "audio_hours_seen", "frames_seen", "wall_seconds", "mfu",
     "final": {"ssl_loss", "coarse_loss"},
     "retrieval": {"s2i_r1", "s2i_r10", "i2s_r1", "i2s_r10"},
     "abx": {"within", "across", "within_layer", "across_layer"}}

- ``flops_per_step``, ``compute``: ``train/flops.py``'s analytic count of the run's steps (mean
  per step over its phases and batch kinds; total training FLOPs).
- ``audio_hours_seen``, ``frames_seen``: the real (unpadded) audio of the batches it trained
  on, from ``metrics.jsonl`` (audio-s/s ÷ steps/s over each logged window), and its frames
  at the frontend's frame rate.
- ``wall_seconds``: the training loop's time over the run's steps, from the same windows
  (compilation and in-loop evaluation included, setup and final evaluation not); the same
  measure for a run trained here or on a cluster. ``mfu``: ``compute`` over that time and
  the peak FLOP/s of the run's devices (the manifest's ``performance.peak_flops``, from
  ``train/mfu.py``: the device table, or the measured matmul peak on CPU); None without it.
- ``final``: each loss at the end of the last phase that trained it: the mean of its logged
  values over that phase's last 10 % of steps (at least its last logged value); None where
  the schedule has no phase training it (``ssl_loss`` of vgs). For (W2V2, VGS) the SSL loss
  is the one closing the W2V2 phase, the coarse loss the run's last.
- ``retrieval`` (test split, %) and ``abx`` (error %, the best layer per speaker mode) as
  the evaluation reports them (ABX on ``evaluation_layers``, default all).

With ``second_phase_steps`` (phases of their own length, ``plan``'s doc) each run's first
phase is trained once per first phase (``runs/_first/…``), evaluated there once (the
switch), and every run of it resumes from a copy of its closing snapshot and its metrics
(a second phase of 0 steps: the first phase is the run). Their rows add a ``forgetting``
block (``sweep/forgetting.py``: the switch and the end, retention, the first phase's closing
losses, each layer's parameter distance over the second phase); the runs of
``curves.seeds`` (at the largest budget) train with the study's EvaluationHook over their
second phase, the switch included (``eval_history.jsonl``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import time
import types
from collections.abc import Mapping, Sequence

import ml_collections

from fastvgs_jax import workdir as workdir_lib
from fastvgs_jax.data import build
from fastvgs_jax.data.corpora import registry
from fastvgs_jax.eval import evaluate, features
from fastvgs_jax.study import plan as study_plan
from fastvgs_jax.study import run as study_run
from fastvgs_jax.sweep import forgetting, plan
from fastvgs_jax.sweep.plan import RunSpec, human
from fastvgs_jax.train import loop, reporting
from fastvgs_jax.train import phases as phases_lib

log = logging.getLogger(__name__)

STAGES = ("run", "prepare", "collect")
FINAL_SHARE = 0.1  # final losses: the mean over this share of the final phase's steps
TIMING_FILE = "timing.json"


# --- What a finished run measured ---------------------------------------------------------


def _metric_lines(workdir: str) -> dict[int, dict]:
    """metrics.jsonl by step (a step logged again after a resume: its last line)."""
    path = os.path.join(workdir, reporting.METRICS_FILE)
    lines: dict[int, dict] = {}
    if not os.path.exists(path):
        return lines
    with open(path) as f:
        for text in f:
            text = text.strip()
            if text:
                line = json.loads(text)
                lines[int(line["step"])] = line
    return lines


def _phase_bounds(config: ml_collections.ConfigDict) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for phase in phases_lib.phases_from_config(config):
        bounds.append((start, start + phase.steps))
        start += phase.steps
    return bounds


def measured(workdir: str, config: ml_collections.ConfigDict) -> dict:
    """What the run's metrics say: training seconds, real audio seconds, final losses."""
    lines = _metric_lines(workdir)
    bounds = _phase_bounds(config)
    seconds = audio = 0.0
    previous = None
    for step in sorted(lines):
        line = lines[step]
        start = next((a for a, b in bounds if a < step <= b), 0)
        since = start if previous is None else max(previous, start)
        previous = step
        rate = float(line.get("steps_per_second") or 0.0)
        if step - since <= 0 or rate <= 0:
            continue
        seconds += (step - since) / rate
        audio += float(line.get("audio_seconds_per_second", 0.0)) / rate * (step - since)
    final = {}
    for key, name in (("ssl", "ssl_loss"), ("coarse", "coarse_loss")):
        final[name] = _final(lines, bounds, key)
    return {"wall_seconds": seconds if lines else None, "audio_seconds": audio, "final": final}


def _final(lines: Mapping[int, dict], bounds, key: str) -> float | None:
    """The mean of ``key`` over the last 10 % of the last phase that logged it (at least its
    last logged value); None when no phase did."""
    for first, last in reversed(bounds):
        have = [lines[s] for s in sorted(lines) if first < s <= last and _finite(lines[s].get(key))]
        if have:
            window = max(1, math.ceil(FINAL_SHARE * (last - first)))
            recent = [ln[key] for ln in have if ln["step"] > last - window] or [have[-1][key]]
            return sum(recent) / len(recent)
    return None


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _mfu(compute: float, seconds: float | None, manifest: Mapping | None) -> float | None:
    """Model FLOPs utilisation over the run: ``compute`` / (``seconds`` × the peak FLOP/s of
    all its devices, which the trainer recorded in the manifest's ``performance`` section:
    ``train/mfu.py``'s table, or the measured matmul peak on CPU); None without it."""
    peak = ((manifest or {}).get("performance") or {}).get("peak_flops")
    if not seconds or not peak:
        return None
    return compute / (seconds * float(peak))


def row_of(
    spec: RunSpec, config: ml_collections.ConfigDict, workdir: str, evaluation: Mapping
) -> dict:
    """The run's line of sweep.jsonl (see the module doc)."""
    cost = plan.cost(config)
    seen = measured(workdir, config)
    audio_seconds = seen["audio_seconds"]
    frames = int(round(audio_seconds * cost["frame_rate"]))
    totals = (workdir_lib.read_manifest(workdir) or {}).get("seen")
    if totals:  # what the trainer counted (kept across restarts); the windows otherwise
        audio_seconds, frames = float(totals["audio_seconds"]), int(totals["frames"])
        seen["wall_seconds"] = float(totals["train_seconds"])
    retrieval = evaluation.get("retrieval", {})
    s2i, i2s = retrieval.get("speech_to_image", {}), retrieval.get("image_to_speech", {})
    abx = evaluation.get("abx", {})
    trained, best = abx.get("trained", {}), abx.get("best_layer", {})
    within, across = best.get("within"), best.get("across")
    return {
        "run": spec.name,
        "size": spec.size,
        "schedule": spec.schedule,
        "seed": spec.seed,
        "data_fraction": spec.data_fraction,
        "steps": spec.steps,
        "parameters": cost["parameters"],
        "flops_per_step": cost["flops_per_step"],
        "compute": cost["compute"],
        "audio_hours_seen": audio_seconds / 3600.0,
        "frames_seen": frames,
        "wall_seconds": seen["wall_seconds"],
        "mfu": _mfu(cost["compute"], seen["wall_seconds"], workdir_lib.read_manifest(workdir)),
        "final": seen["final"],
        "retrieval": {
            "s2i_r1": s2i.get("r1"),
            "s2i_r10": s2i.get("r10"),
            "i2s_r1": i2s.get("r1"),
            "i2s_r10": i2s.get("r10"),
        },
        "abx": {
            "within": trained[within]["within"] if within else None,
            "across": trained[across]["across"] if across else None,
            "within_layer": within,
            "across_layer": across,
        },
    }


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
        f"sweep {settings.name}: {len(specs)} runs, {plan.total_steps(specs)} steps, out "
        f"{settings.out}"
    )
    if split:
        firsts = {s.first_phase for s in specs}
        header = (
            f"sweep {settings.name}: {len(specs)} runs sharing {len(firsts)} first phases of "
            f"{plan.first_phase_steps(settings)} steps (trained and evaluated once each), "
            f"second phases of {', '.join(map(str, plan.second_phase_budgets(settings)))} "
            f"steps; {plan.steps_to_train(specs)} steps to train, out {settings.out}"
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
        cost = plan.cost(config)
        state = status(settings, spec, cost["steps"])
        if spec.first_phase is None:
            add(spec.name, cost, plan.estimated_seconds(cost, est), state, cost["compute"])
            continue
        if spec.first_phase not in listed:  # trained and evaluated once, before its runs
            listed.add(spec.first_phase)
            first = plan.cost(plan.first_phase_config_of(settings, spec))
            first_dir = plan.first_phase_dir(settings.out, spec)
            done = _done_steps(first_dir)
            first_state = (
                "trained" if done >= spec.first_steps else (f"at {done}" if done else "new")
            )
            if first_state == "trained" and study_run.cached_evaluation(
                plan.study_settings(settings, spec), first_dir
            ):
                first_state = "done"
            seconds = plan.estimated_seconds(first, est)
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
        second = plan.cost(_second_phase_config(config))
        seconds = plan.estimated_seconds(second, est)
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


# --- Running -------------------------------------------------------------------------------


def _train(
    study: ml_collections.ConfigDict, config, workdir: str, history: bool | None = None
) -> None:
    """Train (or finish) one run; ``history`` (None: ``study.history.enabled``) adds the
    study's EvaluationHook, and for a run resuming at its switch, that point first."""
    hook = None
    if study.history.enabled if history is None else history:
        h = study.history
        hook = evaluate.EvaluationHook(
            config,
            workdir,
            num_images=h.num_images,
            captions_per_image=h.captions_per_image,
            num_abx_utterances=h.num_abx_utterances,
            layers=h.layers,
            plot=not history,  # a curve run's: the forgetting report draws them
        )
        if history:
            loop.prepare(config, workdir=workdir)  # the frame geometry the hook's batches need
            _record_switch(hook, config, workdir)
    loop.train(config, workdir, eval_hook=hook)


def _record_switch(hook, config, workdir: str) -> None:
    """The hook's evaluation of the snapshot closing the first phase, unless the history has
    it: a run resumed from a shared first phase starts its curve at the switch."""
    if len(config.phases) < 2:
        return
    step = int(config.phases[0].steps)
    if step not in workdir_lib.snapshot_steps(workdir):
        return
    path = os.path.join(workdir, evaluate.HISTORY_FILE)
    if os.path.exists(path) and any(e["step"] == step for e in evaluate.read_history(workdir)):
        return
    variables, _, _ = workdir_lib.load_variables(workdir, str(step))
    state = types.SimpleNamespace(params=variables["params"], batch_stats=variables["batch_stats"])
    hook(state, step, str(config.phases[0].name))


def _seed_from_first_phase(first_dir: str, workdir: str, step: int) -> None:
    """Give ``workdir`` its first phase: the metrics it logged and its closing snapshot (the
    study's sharing), so the run resumes at the switch as if it had trained it; a run with
    snapshots of its own is left as it is."""
    if workdir_lib.snapshot_steps(workdir):
        return
    leftover = os.path.join(workdir_lib.snapshot_dir(workdir), f"{step}.copying")
    shutil.rmtree(leftover, ignore_errors=True)  # an interrupted copy
    os.makedirs(workdir, exist_ok=True)
    metrics = os.path.join(first_dir, reporting.METRICS_FILE)
    if os.path.exists(metrics):
        target = os.path.join(workdir, reporting.METRICS_FILE)
        shutil.copyfile(metrics, target + ".tmp")
        os.replace(target + ".tmp", target)
    study_run._seed_from_first_phase(first_dir, workdir, step)  # noqa: SLF001 - the study's


def _evaluate(settings: ml_collections.ConfigDict, study, workdir: str) -> dict:
    """The study's final evaluation (test-split retrieval, ABX), on ``evaluation_layers``
    (default all), cached in ``workdir/evaluation.json``."""
    layers = settings.get("evaluation_layers") or "all"
    if layers == "all":
        return study_run.evaluate_model(study, workdir)
    cached = study_run.cached_evaluation(study, workdir)
    if cached is not None:
        return cached
    results = evaluate.evaluate_run(
        workdir,
        tasks=("retrieval", "abx"),
        layers=layers,
        split=study.test_split,
        baselines=False,
        progress=study.progress,
    )
    _write_json(os.path.join(workdir, study_plan.EVALUATION_FILE), results)
    return results


def forgetting_of(
    spec: RunSpec,
    config: ml_collections.ConfigDict,
    settings: ml_collections.ConfigDict,
    switch: Mapping,
    end: Mapping,
) -> dict:
    """The row's ``forgetting`` block (``sweep/forgetting.py``) from the two evaluations, the
    first phase's metrics and the two snapshots."""
    first_dir = plan.first_phase_dir(settings.out, spec)
    first_config = copy.deepcopy(config)
    first_config.phases = [config.phases[0]]
    phase = phases_lib.phases_from_config(first_config)[0]
    losses = measured(first_dir, first_config)["final"]
    before, _, _ = workdir_lib.load_variables(first_dir, str(spec.first_steps))
    after, _, _ = workdir_lib.load_variables(plan.trained_dir(settings.out, spec))
    history = os.path.join(plan.run_dir(settings.out, spec.name), evaluate.HISTORY_FILE)
    return forgetting.block(
        switch=switch,
        end=end,
        first_phase={
            "objective": phase.name,
            "alpha": float(phase.alpha(phase.steps - 1)),
            "steps": int(spec.first_steps),
            "coarse_loss_end": losses["coarse_loss"],
            "ssl_loss_end": losses["ssl_loss"],
            # The CLIP loss of embeddings that say nothing: ln(batch) in each direction.
            "coarse_loss_chance": math.log(int(config.data.audio_image.batch_size)),
        },
        second_phase={
            "objective": str(config.phases[1].name) if len(config.phases) > 1 else None,
            "steps": int(spec.second_steps),
        },
        layer_distance=forgetting.layer_distance(before["params"], after["params"]),
        vgs_layer=int(config.model.vgs_layer),
        history=(
            os.path.relpath(history, settings.out)
            if spec.second_steps and os.path.exists(history)
            else None
        ),
    )


def _write_json(path: str, value) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=1)
    os.replace(path + ".tmp", path)


def prepare(settings: ml_collections.ConfigDict) -> None:
    """The corpus (if a role reads the embedded one) and the sweep's image tower."""
    study = plan.study_settings(settings)
    study_run.ensure_corpora(study.run.data)
    study_run.ensure_image_tower(study)


def _first_phases(
    settings: ml_collections.ConfigDict, specs: Sequence[RunSpec]
) -> dict[str, tuple[str, ml_collections.ConfigDict]]:
    """Each shared first phase once: its workdir and config; runs that would share one with
    different first-phase configs are an error (their first phases are not one run)."""
    firsts: dict[str, tuple[str, ml_collections.ConfigDict, str]] = {}
    for spec in specs:
        if spec.first_phase is None:
            continue
        config = plan.first_phase_config_of(settings, spec)
        if spec.first_phase not in firsts:
            firsts[spec.first_phase] = (
                plan.first_phase_dir(settings.out, spec),
                config,
                spec.name,
            )
        elif config.to_json() != firsts[spec.first_phase][1].to_json():
            raise ValueError(
                f"runs {firsts[spec.first_phase][2]} and {spec.name} would share the first phase "
                f"{spec.first_phase}, but their first phases' configs differ"
            )
    return {name: (d, c) for name, (d, c, _) in firsts.items()}


def _steps_left(settings: ml_collections.ConfigDict, specs: Sequence[RunSpec]) -> int:
    """Training steps the runs still cost (shared first phases once)."""
    left, firsts = 0, set()
    for spec in specs:
        if status(settings, spec, spec.steps) in ("done", "trained"):
            continue
        if spec.first_phase is None:
            left += spec.steps
            continue
        if spec.first_phase not in firsts:
            firsts.add(spec.first_phase)
            done = _done_steps(plan.first_phase_dir(settings.out, spec))
            left += max(0, spec.first_steps - done)
        left += spec.second_steps
    return left


def run_sweep(
    settings: ml_collections.ConfigDict,
    stage: str = "run",
    only: Sequence[str] | None = None,
) -> dict[str, dict]:
    """Prepare, train, evaluate and tabulate the sweep's runs (``stage``: "run" all of it,
    "prepare" the corpus and image tower only, "collect" evaluate and tabulate runs already
    trained); ``only`` restricts it to those run names. Returns the finished runs' rows."""
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}; expected one of {STAGES}")
    specs = plan.expand(settings)
    plan.check_settings(settings, specs)
    if only:
        unknown = sorted(set(only) - {s.name for s in specs})
        if unknown:
            raise ValueError(f"runs {unknown} are not in the sweep")
        chosen = [s for s in specs if s.name in set(only)]
    else:
        chosen = specs
    if stage == "collect":  # evaluation reads the corpus; the runs are trained already
        study_run.ensure_corpora(settings.study.run.data)
    else:
        prepare(settings)
    if stage == "prepare":
        return {}
    configs = {s.name: plan.run_config_of(settings, s) for s in chosen}
    layers = settings.get("evaluation_layers") or "all"
    for config in configs.values():  # a layer the models lack: before anything trains
        features.parse_layers(layers, int(config.model.num_layers))
    firsts = _first_phases(settings, chosen)
    for first_dir, first_config in firsts.values():  # shared first phases: checked once
        study_run.check_unchanged(first_dir, first_config)
    for spec in chosen:  # before anything trains: a kept run must be the run asked for
        study_run.check_unchanged(plan.run_dir(settings.out, spec.name), configs[spec.name])
    curves = plan.curve_runs(settings, specs)
    rows = read_rows(settings, specs)
    clock = study_run.StudyClock(
        _steps_left(settings, chosen), os.path.join(settings.out, TIMING_FILE)
    )
    for spec in chosen:
        workdir = plan.run_dir(settings.out, spec.name)
        config = configs[spec.name]
        study = plan.study_settings(settings, spec)
        trained = plan.trained_dir(settings.out, spec)
        kept = spec.name in rows and study_run.cached_evaluation(study, trained) is not None
        if kept:
            clock.record(spec.name, 0.0, reused=True)
            continue
        began = time.monotonic()
        state = status(settings, spec, spec.steps)
        trains = state not in ("done", "trained")
        if trains and stage == "collect":
            log.info(
                "sweep %s: %s not finished (%s); left pending", settings.name, spec.name, state
            )
            continue
        steps = 0
        if spec.first_phase is None:
            if trains:
                log.info("sweep %s: training %s", settings.name, spec.name)
                _train(study, config, workdir)
                steps = spec.steps
            evaluation = _evaluate(settings, study, workdir)
            rows[spec.name] = row_of(spec, config, workdir, evaluation)
        else:
            first_dir, first_config = firsts[spec.first_phase]
            if trains and _done_steps(first_dir) < spec.first_steps:
                log.info("sweep %s: training the first phase %s", settings.name, spec.first_phase)
                _train(study, first_config, first_dir, history=False)
                steps += spec.first_steps
            switch = _evaluate(settings, study, first_dir)  # once per first phase (cached)
            if spec.second_steps:
                if trains:
                    log.info("sweep %s: training %s", settings.name, spec.name)
                    _seed_from_first_phase(first_dir, workdir, spec.first_steps)
                    _train(study, config, workdir, history=spec.name in curves)
                    steps += spec.second_steps
                end = _evaluate(settings, study, workdir)
            else:
                end = switch
            rows[spec.name] = row_of(spec, config, trained, end)
            rows[spec.name]["forgetting"] = forgetting_of(spec, config, settings, switch, end)
        os.makedirs(workdir, exist_ok=True)
        _write_json(os.path.join(workdir, plan.ROW_FILE), rows[spec.name])
        write_tables(settings, specs, rows)
        message = clock.finished(spec.name, steps, time.monotonic() - began, reused=False)
        log.info(message.replace("; study ", "; sweep "))
    write_tables(settings, specs, rows)
    clock.write_totals()
    return rows
