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
  the evaluation reports them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence

import ml_collections

from fastvgs_jax import workdir as workdir_lib
from fastvgs_jax.data import build
from fastvgs_jax.data.corpora import registry
from fastvgs_jax.eval import evaluate
from fastvgs_jax.study import plan as study_plan
from fastvgs_jax.study import run as study_run
from fastvgs_jax.sweep import plan
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


def status(settings: ml_collections.ConfigDict, spec: RunSpec, steps: int) -> str:
    workdir = plan.run_dir(settings.out, spec.name)
    if os.path.exists(os.path.join(workdir, plan.ROW_FILE)):
        return "done"
    done = max(workdir_lib.snapshot_steps(workdir), default=0) if os.path.isdir(workdir) else 0
    if done >= steps:
        return "trained"
    return f"at {done}" if done else "new"


def plan_text(settings: ml_collections.ConfigDict) -> str:
    """The dry run: every run with its parameters, FLOPs, data and estimated wall time."""
    specs = plan.expand(settings)
    plan.check_settings(settings, specs)
    est = settings.estimate
    lines = [
        f"sweep {settings.name}: {len(specs)} runs, {plan.total_steps(specs)} steps, out "
        f"{settings.out}",
        f"time estimate: {est.seconds_per_run:g} s per run + {est.seconds_per_step:g} s per "
        f"step + FLOPs at {human(float(est.flops_per_second), 'FLOP/s')} (settings.estimate)",
        "",
        "| run | params (encoder / total) | FLOPs/step | compute | audio h | frames | est. time "
        "| status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total_compute = total_seconds = left_seconds = 0.0
    for spec in specs:
        config = plan.run_config_of(settings, spec)
        cost = plan.cost(config)
        seconds = plan.estimated_seconds(cost, est)
        state = status(settings, spec, cost["steps"])
        total_compute += cost["compute"]
        total_seconds += seconds
        left_seconds += 0.0 if state == "done" else seconds
        p = cost["parameters"]
        lines.append(
            f"| {spec.name} | {human(p['encoder'])} / {human(p['total'])} | "
            f"{human(cost['flops_per_step'])} | {human(cost['compute'])} | "
            f"{cost['audio_hours']:.3g} | {human(cost['frames'])} | {_minutes(seconds)} | "
            f"{state} |"
        )
    if not _prepared(settings):  # the corpus build and the image tower come first
        prepare_seconds = float(est.get("seconds_to_prepare", 0.0))
        total_seconds += prepare_seconds
        left_seconds += prepare_seconds
    lines += [
        "",
        f"total: {human(total_compute, 'FLOP')}, estimated {_minutes(total_seconds)} "
        f"({_minutes(left_seconds)} left)",
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


def _train(study: ml_collections.ConfigDict, config, workdir: str) -> None:
    hook = None
    if study.history.enabled:
        h = study.history
        hook = evaluate.EvaluationHook(
            config,
            workdir,
            num_images=h.num_images,
            captions_per_image=h.captions_per_image,
            num_abx_utterances=h.num_abx_utterances,
            layers=h.layers,
        )
    loop.train(config, workdir, eval_hook=hook)


def _write_json(path: str, value) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=1)
    os.replace(path + ".tmp", path)


def prepare(settings: ml_collections.ConfigDict) -> None:
    """The corpus (if a role reads the embedded one) and the sweep's image tower."""
    study = plan.study_settings(settings)
    study_run.ensure_corpora(study.run.data)
    study_run.ensure_image_tower(study)


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
    for spec in chosen:  # before anything trains: a kept run must be the run asked for
        study_run.check_unchanged(plan.run_dir(settings.out, spec.name), configs[spec.name])
    rows = read_rows(settings, specs)
    remaining = sum(
        s.steps for s in chosen if status(settings, s, s.steps) not in ("done", "trained")
    )
    clock = study_run.StudyClock(remaining, os.path.join(settings.out, TIMING_FILE))
    for spec in chosen:
        workdir = plan.run_dir(settings.out, spec.name)
        config = configs[spec.name]
        study = plan.study_settings(settings, spec)
        kept = spec.name in rows and study_run.cached_evaluation(study, workdir) is not None
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
        if trains:
            log.info("sweep %s: training %s", settings.name, spec.name)
            _train(study, config, workdir)
        evaluation = study_run.evaluate_model(study, workdir)
        rows[spec.name] = row_of(spec, config, workdir, evaluation)
        _write_json(os.path.join(workdir, plan.ROW_FILE), rows[spec.name])
        write_tables(settings, specs, rows)
        steps = spec.steps if trains else 0
        message = clock.finished(spec.name, steps, time.monotonic() - began, reused=False)
        log.info(message.replace("; study ", "; sweep "))
    write_tables(settings, specs, rows)
    clock.write_totals()
    return rows
