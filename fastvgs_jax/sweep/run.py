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
block (``sweep/forgetting_rows.py``: the switch and the end, retention, the first phase's closing
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
from fastvgs_jax.eval import evaluate, features
from fastvgs_jax.study import plan as study_plan
from fastvgs_jax.study import run as study_run
from fastvgs_jax.sweep import forgetting_rows, plan
from fastvgs_jax.sweep.measure import measured, row_of
from fastvgs_jax.sweep.plan import RunSpec
from fastvgs_jax.sweep.table import _done_steps, read_rows, status, write_tables
from fastvgs_jax.train import loop, reporting
from fastvgs_jax.train import phases as phases_lib

log = logging.getLogger(__name__)

STAGES = ("run", "prepare", "collect")
TIMING_FILE = "timing.json"


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
    """The row's ``forgetting`` block (``sweep/forgetting_rows.py``) from the two evaluations, the
    first phase's metrics and the two snapshots."""
    first_dir = plan.first_phase_dir(settings.out, spec)
    first_config = copy.deepcopy(config)
    first_config.phases = [config.phases[0]]
    phase = phases_lib.phases_from_config(first_config)[0]
    losses = measured(first_dir, first_config)["final"]
    before, _, _ = workdir_lib.load_variables(first_dir, str(spec.first_steps))
    after, _, _ = workdir_lib.load_variables(plan.trained_dir(settings.out, spec))
    history = os.path.join(plan.run_dir(settings.out, spec.name), evaluate.HISTORY_FILE)
    return forgetting_rows.block(
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
        layer_distance=forgetting_rows.layer_distance(before["params"], after["params"]),
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
