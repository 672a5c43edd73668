"""Train and evaluate each model of the study (cached, checked unchanged) and run it whole."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence

import ml_collections

from fastvgs_jax import workdir as workdir_lib
from fastvgs_jax.data import build
from fastvgs_jax.data.corpora import registry
from fastvgs_jax.eval import evaluate
from fastvgs_jax.models import config as model_presets
from fastvgs_jax.study.plan import (
    EVALUATION_FILE,
    baselines_path,
    check_settings,
    first_phase_config,
    first_phase_dir,
    image_tower_path,
    label,
    model_config,
    run_dir,
    study_models,
    study_seeds,
    tower_enabled,
)
from fastvgs_jax.study.report import _read_timing, summarise, tables_markdown, write_plots
from fastvgs_jax.train import config as run_config
from fastvgs_jax.train import image_tower, loop, manifest

log = logging.getLogger(__name__)


def ensure_image_tower(settings: ml_collections.ConfigDict) -> dict | None:
    """Pretrain the study's image tower unless it is there (one per study, like the paper's
    one detector for every model); returns its held-out metrics, or None when disabled."""
    if not tower_enabled(settings):
        return None
    run = settings.run
    if run.model.image.kind != "cnn":
        raise ValueError(
            f"image_tower.enabled needs run.model.image.kind='cnn', not {run.model.image.kind!r}"
        )
    tower = image_tower.TowerSettings.from_config(settings.image_tower, run.model, run.data.preset)
    return image_tower.ensure_pretrained(image_tower_path(settings.out), tower)


def _hook(settings, config, workdir) -> evaluate.EvaluationHook:
    h = settings.history
    return evaluate.EvaluationHook(
        config,
        workdir,
        num_images=h.num_images,
        captions_per_image=h.captions_per_image,
        num_abx_utterances=h.num_abx_utterances,
        layers=h.layers,
    )


def _train(settings, config, workdir: str) -> None:
    hook = _hook(settings, config, workdir) if settings.history.enabled else None
    loop.train(config, workdir, eval_hook=hook)


def _defaults(config: ml_collections.ConfigDict) -> dict:
    """The default run config of ``config``'s model size and data preset, as recorded (fields
    added since a kept run was trained are compared against it)."""
    size = str(config.model.get("size", "base"))
    if size not in model_presets.SIZES:  # a sweep's family size: its added fields' defaults
        size = "base"  # are the same in every preset
    default = run_config.base_config(size, str(config.data.preset))
    return json.loads(default.to_json_best_effort())


def check_unchanged(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Raise if ``workdir`` was started with a config other than ``config``.

    A rerun keeps what is already trained, so a changed setting (an lr, the step budget)
    would otherwise mix old runs into the new study's table without a word.
    """
    recorded = workdir_lib.read_manifest(workdir)
    if recorded is None:
        return
    resolved = copy.deepcopy(config)
    loop.prepare(resolved)  # the derived fields train() records (the frame geometry)
    new = json.loads(resolved.to_json_best_effort())
    changed = manifest.config_differences(recorded["config"], new, defaults=_defaults(config))
    if changed:
        raise ValueError(
            f"{workdir} was trained with another config ({', '.join(changed)} differ); "
            "delete that run to retrain it, or pass another --config.out"
        )


def check_existing_runs(
    settings: ml_collections.ConfigDict, models: Sequence[str], seeds: Sequence[int]
) -> None:
    """Every run a rerun would keep (models and shared first phases) matches ``settings``."""
    for seed in seeds:
        firsts = {model.split("_")[0] for model in models if "_" in model}
        for first in sorted(firsts):  # each shared first phase once, however many use it
            check_unchanged(
                first_phase_dir(settings.out, first, seed),
                first_phase_config(settings, first, seed),
            )
        for model in models:
            check_unchanged(run_dir(settings.out, model, seed), model_config(settings, model, seed))


def train_model(settings: ml_collections.ConfigDict, model: str, seed: int) -> str:
    """Train (or finish) one model; returns its workdir."""
    workdir = run_dir(settings.out, model, seed)
    if os.path.exists(os.path.join(workdir, EVALUATION_FILE)):
        return workdir  # finished and evaluated
    config = model_config(settings, model, seed)
    if "_" in model and not os.path.isdir(os.path.join(workdir, workdir_lib.SNAPSHOT_DIR)):
        first = model.split("_")[0]
        first_dir = first_phase_dir(settings.out, first, seed)
        first_config = first_phase_config(settings, first, seed)
        _train(settings, first_config, first_dir)
        _seed_from_first_phase(first_dir, workdir, int(first_config.phases[0].steps))
    _train(settings, config, workdir)
    return workdir


def _seed_from_first_phase(first_dir: str, workdir: str, step: int) -> None:
    """Give ``workdir`` the snapshot closing phase A (and its history): it resumes there."""
    source = os.path.join(workdir_lib.snapshot_dir(first_dir), str(step))
    target = os.path.join(workdir_lib.snapshot_dir(workdir), str(step))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copytree(source, target + ".copying")
    os.replace(target + ".copying", target)  # a half-copied snapshot never looks complete
    history = os.path.join(first_dir, evaluate.HISTORY_FILE)
    if os.path.exists(history):
        shutil.copy(history, os.path.join(workdir, evaluate.HISTORY_FILE))


def cached_evaluation(settings: ml_collections.ConfigDict, workdir: str) -> dict | None:
    """The run's ``evaluation.json`` if it holds an evaluation on ``test_split``, else None."""
    path = os.path.join(workdir, EVALUATION_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        cached = json.load(f)
    return cached if cached.get("retrieval", {}).get("split") == settings.test_split else None


def evaluate_model(settings: ml_collections.ConfigDict, workdir: str) -> dict:
    """Test-split retrieval and ABX on every layer, cached in ``workdir/evaluation.json``.

    A cached evaluation of another retrieval split (``test_split`` changed since) is redone:
    the model is kept, its numbers are not.
    """
    cached = cached_evaluation(settings, workdir)
    if cached is not None:
        return cached
    path = os.path.join(workdir, EVALUATION_FILE)
    results = evaluate.evaluate_run(
        workdir,
        tasks=("retrieval", "abx"),
        layers="all",
        split=settings.test_split,
        baselines=False,
        progress=settings.progress,
    )
    _write_json(path, results)
    return results


def baseline_rows(settings: ml_collections.ConfigDict, workdir: str, seed: int) -> dict:
    """MFCC and random-init ABX rows (per layer) for a seed, cached under ``baselines/``."""
    path = baselines_path(settings.out, seed)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    results = evaluate.evaluate_run(
        workdir,
        tasks=("abx",),
        layers="all",
        baselines=True,  # random init: the encoder every model of this seed started from
        progress=settings.progress,
    )
    rows = {"mfcc": results["abx"]["mfcc"], "random_init": results["abx"]["random_init"]}
    _write_json(path, rows)
    return rows


def _write_json(path: str, value) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=1)  # insertion order: models and layers as trained
    os.replace(path + ".tmp", path)


def remaining_steps(settings: ml_collections.ConfigDict, models: Sequence[str], seed: int) -> dict:
    """Training steps each model of ``seed`` still costs, in order (shared first phases are
    counted once, by the first model that needs them; finished models cost nothing)."""
    steps = int(settings.steps)
    first_done: set[str] = set()
    cost = {}
    for model in models:
        if os.path.exists(os.path.join(run_dir(settings.out, model, seed), EVALUATION_FILE)):
            cost[model] = 0
            continue
        cost[model] = steps
        if "_" in model:
            first = model.split("_")[0]
            done = os.path.isdir(
                workdir_lib.snapshot_dir(first_phase_dir(settings.out, first, seed))
            )
            if first in first_done or done:
                cost[model] -= run_config.study_phases(model, steps)[0].steps
            first_done.add(first)
    return cost


class StudyClock:
    """Elapsed time and an overall ETA, from the training steps done so far (evaluation time
    is folded into the rate: it grows with the models, as training does), and the wall time
    of each part in ``timing.json``."""

    TOTALS = ("total", "this run")

    def __init__(self, total_steps: int, path: str, began: float | None = None):
        self.start = time.monotonic()  # the ETA's rate counts training and evaluation only
        self.began = self.start if began is None else began  # the run's start, for "this run"
        self.total, self.done = max(total_steps, 1), 0
        self.path = path
        self.previous = _read_timing(path)
        self.timing: dict[str, float] = {}
        self.carried = 0.0  # seconds earlier runs spent on the parts this run reused

    def record(self, name: str, seconds: float, reused: bool = False) -> None:
        """A reused part (done by an earlier run) keeps the time that run recorded, so a rerun
        of a finished study leaves timing.json as the run that did the work wrote it."""
        if reused and name in self.previous:
            self.timing[name] = self.previous[name]
            self.carried += self.previous[name] - seconds
        else:
            self.timing[name] = round(seconds, 1)
        # Written after every part, so that a study interrupted later keeps these times.
        parts = {k: v for k, v in self.previous.items() if k not in self.TOTALS}
        _write_json(self.path, {**parts, **self.timing})

    def finished(self, name: str, steps: int, seconds: float, reused: bool) -> str:
        self.done += steps
        self.record(name, seconds, reused)
        if reused:
            return f"{name}: trained and evaluated by an earlier run"
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        return (
            f"{name}: {seconds / 60:.1f} min; study {elapsed / 60:.1f} min elapsed, "
            f"{self.done}/{self.total} steps, ETA {left / 60:.1f} min"
        )

    def write_totals(self) -> None:
        """``total``: the whole study's wall time, reused parts at the times their runs
        recorded; ``this run``: this invocation's."""
        this_run = time.monotonic() - self.began
        self.timing["total"] = round(this_run + self.carried, 1)
        self.timing["this run"] = round(this_run, 1)
        _write_json(self.path, self.timing)


def ensure_corpora(data: ml_collections.ConfigDict) -> bool:
    """Builds the embedded corpus if a role reads it; returns whether it was there already.
    (A real corpus's index is built at its first use, by the first model that reads it.)"""
    if not registry.uses_embedded(data):
        return True
    reused = build.is_built(data.data_dir, data.preset, seed=data.corpus_seed)
    build.ensure_built(data.data_dir, data.preset, seed=data.corpus_seed)
    return reused


def run_study(settings: ml_collections.ConfigDict) -> dict:
    """Train and evaluate every model × seed, then write the report; returns results.json.

    Wall times (corpus build, each model's training + evaluation, baselines, total) go to
    ``timing.json``, not results.json, which must not change between identical runs.
    """
    check_settings(settings)
    started = time.monotonic()
    data = settings.run.data
    corpus_reused = ensure_corpora(data)
    models, seeds = study_models(settings), study_seeds(settings)
    check_existing_runs(settings, models, seeds)
    tower_reused = os.path.exists(image_tower_path(settings.out))
    begun = time.monotonic()
    tower_metrics = ensure_image_tower(settings)
    tower_seconds = time.monotonic() - begun
    costs = {seed: remaining_steps(settings, models, seed) for seed in seeds}
    clock = StudyClock(
        sum(sum(c.values()) for c in costs.values()),
        os.path.join(settings.out, "timing.json"),
        began=started,
    )
    clock.record("corpus", time.monotonic() - started - tower_seconds, corpus_reused)
    if tower_metrics is not None:
        clock.record("image tower", tower_seconds, tower_reused)
    per_model: dict[str, list[dict]] = {m: [] for m in models}
    baselines: list[dict] = []
    for seed in seeds:
        for model in models:
            log.info("study %s: %s, seed %d", settings.name, label(model), seed)
            begun = time.monotonic()
            reused = costs[seed][model] == 0 and (
                cached_evaluation(settings, run_dir(settings.out, model, seed)) is not None
            )
            workdir = train_model(settings, model, seed)
            per_model[model].append(evaluate_model(settings, workdir))
            took = time.monotonic() - begun
            name = f"{label(model)} seed {seed}"
            log.info(clock.finished(name, costs[seed][model], took, reused))
        begun = time.monotonic()
        reused = os.path.exists(baselines_path(settings.out, seed))
        baselines.append(baseline_rows(settings, run_dir(settings.out, model, seed), seed))
        clock.record(f"baselines seed {seed}", time.monotonic() - begun, reused)
    results = summarise(settings, per_model, baselines, tower_metrics)
    _write_json(os.path.join(settings.out, "results.json"), results)
    with open(os.path.join(settings.out, "table.md"), "w") as f:
        f.write(tables_markdown(results))
    write_plots(settings, results)
    clock.write_totals()
    return results
