"""The sequential-vs-simultaneous study: train the nine models for some seeds, evaluate each,
and report it like the paper (retrieval table, ABX table, per-layer curves, training curves).

Layout under ``settings.out``::

    runs/<model>/seed<k>/          one trainer workdir per model and seed (+ evaluation.json)
    runs/_first/<A>/seed<k>/       the shared first phase of the two-phase models (A, ·)
    baselines/seed<k>.json         MFCC and randomly initialised encoder ABX rows
    image_tower/tower.msgpack      the pretrained image tower every model reads frozen
    results.json, table.md, plots/ the report (results.json is identical for identical runs)

A two-phase model (A, B) starts its B phase from the snapshot that closes a run of phase A
alone: its first phase is the same computation for every B (same seed, data, schedule), so
it is trained once per A and seed, and exact resume makes (A, B) bitwise what a run from
scratch would be. A finished model (evaluation.json written) is never retrained.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence

import ml_collections
import numpy as np

from fastvgs_jax import workdir as workdir_lib
from fastvgs_jax.data import build
from fastvgs_jax.eval import evaluate
from fastvgs_jax.train import config as run_config
from fastvgs_jax.train import image_tower, loop, manifest

log = logging.getLogger(__name__)

# The nine models, in the paper's table order; "a_b" is the sequential (A, B).
MODELS = (
    "w2v2",
    "vgs",
    "vgsplus",
    "w2v2_vgsplus",
    "vgs_vgsplus",
    "w2v2_vgs",
    "vgs_w2v2",
    "vgsplus_w2v2",
    "vgsplus_vgs",
)
LABELS = {"w2v2": "W2V2", "vgs": "VGS", "vgsplus": "VGS+"}
EVALUATION_FILE = "evaluation.json"


def label(model: str) -> str:
    """W2V2, VGS+, (W2V2, VGS) …: the paper's names."""
    parts = [LABELS[p] for p in model.split("_")]
    return parts[0] if len(parts) == 1 else f"({', '.join(parts)})"


def study_models(settings: ml_collections.ConfigDict) -> list[str]:
    """``settings.models`` ("w2v2,vgs" or a sequence) as a list of names."""
    models = settings.models
    return (
        [m.strip() for m in models.split(",") if m.strip()]
        if isinstance(models, str)
        else list(models)
    )


def study_seeds(settings: ml_collections.ConfigDict) -> list[int]:
    """``settings.seeds`` ("0,1" or a sequence) as a list of ints."""
    seeds = settings.seeds
    if isinstance(seeds, str):
        seeds = [s for s in seeds.split(",") if s.strip()]
    elif isinstance(seeds, int):
        seeds = [seeds]
    try:
        return [int(s) for s in seeds]
    except ValueError as error:
        raise ValueError(f"seeds={settings.seeds!r}: expected integers like '0,1'") from error


def check_settings(settings: ml_collections.ConfigDict) -> None:
    unknown = [m for m in study_models(settings) if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown study models {unknown}; expected some of {list(MODELS)}")
    if not study_models(settings):
        raise ValueError("a study needs at least one model")
    if not study_seeds(settings):
        raise ValueError("a study needs at least one seed")
    if settings.steps < 2:
        raise ValueError(f"steps={settings.steps}: a two-phase model needs at least 2 steps")


# Study settings given per objective → the phase field each sets.
PER_OBJECTIVE_PHASE_FIELDS = {
    "learning_rates": "learning_rate",
    "vgs_branch_lr_scales": "vgs_branch_lr_scale",
}


def model_config(
    settings: ml_collections.ConfigDict, model: str, seed: int
) -> ml_collections.ConfigDict:
    """The run config of one model and seed: the study's run template, the model's phases."""
    config = copy.deepcopy(settings.run)
    config.seed = seed
    config.data.seed = seed
    config.phases = run_config.study_phases(model, int(settings.steps))
    if tower_enabled(settings):  # every model reads the same pretrained convs, frozen
        config.image_tower_init = image_tower_path(settings.out)
        config.model.image.cnn_frozen = True
    joint_alpha = settings.get("vgsplus_alpha")
    if joint_alpha is not None and not 0.0 < joint_alpha < 1.0:
        raise ValueError(f"vgsplus_alpha={joint_alpha}: VGS+ needs 0 < α < 1")
    delay_share = settings.get("vgsplus_alpha_delay_share")
    if delay_share is not None and not 0.0 <= delay_share < 1.0:
        raise ValueError(f"vgsplus_alpha_delay_share={delay_share}: needs a share in [0, 1)")
    alpha_delay = int(round((delay_share or 0.0) * int(settings.steps)))
    pool_shares = settings.get("audio_only_shares")
    for p in config.phases:
        for key, field in PER_OBJECTIVE_PHASE_FIELDS.items():
            values = settings.get(key)  # per objective: the phase is named for it
            if values is not None and values.get(p.name) is not None:
                p[field] = float(values[p.name])
        if p.name == "vgsplus" and joint_alpha is not None:
            p.alpha.start = p.alpha.end = float(joint_alpha)
        if p.name == "vgsplus" and alpha_delay:  # SSL alone first, then the joint loss
            joint = float(p.alpha.start)
            p.alpha.kind, p.alpha.start = "steps", 0.0
            p.alpha.boundaries, p.alpha.values = (alpha_delay,), (joint,)
        pool_share = None if pool_shares is None else pool_shares.get(p.name)
        if pool_share:  # that share of the phase's batches: audio-only sentences, SSL alone
            has_ssl = run_config.OBJECTIVE_ALPHA[p.name] < 1.0
            if not 0.0 < pool_share < 1.0 or not has_ssl:
                raise ValueError(
                    f"audio_only_shares.{p.name}={pool_share}: only the SSL phases (w2v2, "
                    "vgsplus) take audio-only batches, at a share in [0, 1)"
                )
            p.mix = {"audio_image": 1.0 - float(pool_share), "audio_only": float(pool_share)}
    points = settings.history.get("points")
    if points:  # the history's resolution follows --config.steps
        config.eval_every = max(1, int(settings.steps) // int(points))
    warmup_share = settings.get("min_warmup_share")
    if warmup_share:  # short phases warm up as long as a one-phase model's schedule does
        config.optimizer.min_warmup_steps = int(round(warmup_share * int(settings.steps)))
    share = settings.get("temperature_anneal_share")
    if share:  # the Gumbel temperature reaches its floor at this share of the step budget
        q = config.model.quantizer
        anneal_steps = max(1.0, share * int(settings.steps))
        q.temperature_decay = (q.temperature_end / q.temperature_start) ** (1.0 / anneal_steps)
    return config


def tower_enabled(settings: ml_collections.ConfigDict) -> bool:
    tower = settings.get("image_tower")
    return bool(tower is not None and tower.enabled)


def image_tower_path(out: str) -> str:
    return os.path.join(out, "image_tower", "tower.msgpack")


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


def first_phase_config(
    settings: ml_collections.ConfigDict, objective: str, seed: int
) -> ml_collections.ConfigDict:
    """Phase A of every (A, ·) model, alone (the same phase, schedule and data)."""
    config = model_config(settings, f"{objective}_{objective}", seed)
    config.phases = [config.phases[0]]
    return config


def run_dir(out: str, model: str, seed: int) -> str:
    return os.path.join(out, "runs", model, f"seed{seed}")


def first_phase_dir(out: str, objective: str, seed: int) -> str:
    """The run of phase ``objective`` alone that every (objective, ·) model resumes from."""
    return os.path.join(out, "runs", "_first", objective, f"seed{seed}")


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
    changed = manifest.config_differences(recorded["config"], new)
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


def baselines_path(out: str, seed: int) -> str:
    return os.path.join(out, "baselines", f"seed{seed}.json")


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


def run_study(settings: ml_collections.ConfigDict) -> dict:
    """Train and evaluate every model × seed, then write the report; returns results.json.

    Wall times (corpus build, each model's training + evaluation, baselines, total) go to
    ``timing.json``, not results.json, which must not change between identical runs.
    """
    check_settings(settings)
    started = time.monotonic()
    data = settings.run.data
    corpus_reused = build.is_built(data.data_dir, data.preset, seed=data.corpus_seed)
    build.ensure_built(data.data_dir, data.preset, seed=data.corpus_seed)
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


def _read_timing(path: str) -> dict[str, float]:
    """An earlier run's timing.json, or {} (absent or unreadable: timings are informative)."""
    try:
        with open(path) as f:
            timing = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(timing, dict):
        return {}
    return {k: v for k, v in timing.items() if isinstance(v, (int, float))}


# --------------------------------------------------------------------------------------------
# Summary and report
# --------------------------------------------------------------------------------------------

RETRIEVAL_COLUMNS = (
    ("speech_to_image", "r1"),
    ("speech_to_image", "r5"),
    ("speech_to_image", "r10"),
    ("image_to_speech", "r1"),
    ("image_to_speech", "r5"),
    ("image_to_speech", "r10"),
)


def _layer_order(name: str) -> int:
    """frontend, layer_1, layer_2, …, layer_12 (not the string order)."""
    return 0 if not name.startswith("layer_") else int(name.split("_")[1])


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite)), "n": len(finite)}


def _best(rows: Mapping[str, Mapping[str, float]], mode: str) -> tuple[str | None, float | None]:
    finite = {k: v[mode] for k, v in rows.items() if v.get(mode) is not None}
    finite = {k: v for k, v in finite.items() if math.isfinite(v)}
    if not finite:
        return None, None
    layer = min(finite, key=finite.get)
    return layer, finite[layer]


def summarise(
    settings,
    per_model: Mapping[str, list[dict]],
    baselines: list[dict],
    tower_metrics: Mapping[str, float] | None = None,
) -> dict:
    """Means ± std over seeds; deterministic (no timestamps or paths)."""
    models = {}
    for model, runs in per_model.items():
        retrieval = {
            f"{d}_{k}": _mean_std([r["retrieval"][d][k] for r in runs])
            for d, k in RETRIEVAL_COLUMNS
        }
        layers = sorted(runs[0]["abx"]["trained"], key=_layer_order)
        abx = {
            layer: {
                mode: _mean_std([r["abx"]["trained"][layer][mode] for r in runs])
                for mode in ("within", "across")
            }
            for layer in layers
        }
        best = {}
        for mode in ("within", "across"):
            picks = [_best(r["abx"]["trained"], mode) for r in runs]
            best[mode] = {
                "layers": [p[0] for p in picks],
                **_mean_std([p[1] for p in picks]),
            }
        models[model] = {"label": label(model), "retrieval": retrieval, "abx": abx, "best": best}
    reference = {}
    for name in ("mfcc", "random_init"):
        if name == "mfcc":
            rows = [{"mfcc": b["mfcc"]} for b in baselines]
        else:
            rows = [b["random_init"] for b in baselines]
        reference[name] = {
            mode: {
                "layers": [_best(r, mode)[0] for r in rows],
                **_mean_std([_best(r, mode)[1] for r in rows]),
            }
            for mode in ("within", "across")
        }
        reference[name]["per_layer"] = {
            layer: {m: _mean_std([r[layer][m] for r in rows]) for m in ("within", "across")}
            for layer in sorted(rows[0], key=_layer_order)
        }
    return {
        "study": settings.name,
        "seeds": study_seeds(settings),
        "steps": int(settings.steps),
        "model": {
            "size": str(settings.run.model.size),
            "frontend": str(settings.run.model.frontend),
            "num_layers": int(settings.run.model.num_layers),
            "hidden_dim": int(settings.run.model.hidden_dim),
        },
        "data": {"preset": str(settings.run.data.preset), "split": settings.test_split},
        # The pretrained, frozen image tower's held-out scores (None: trained from scratch).
        "image_tower": None if tower_metrics is None else dict(tower_metrics),
        "units": "percent",
        "models": models,
        "reference": reference,
    }


def _cell(stat: Mapping, digits: int = 1) -> str:
    if stat.get("mean") is None:
        return "–"
    if stat.get("n", 1) > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def _layer_note(layers: Sequence[str | None]) -> str:
    names = sorted({evaluate._layer_label(x) for x in layers if x not in (None, "mfcc")})
    return f" ({', '.join(names)})" if names else ""


def tables_markdown(results: Mapping) -> str:
    seeds = results["seeds"]
    lines = [
        f"# Study {results['study']}: {len(results['models'])} models, seeds {seeds}, "
        f"{results['steps']} steps each",
        "",
        f"Model: {results['model']['size']} ({results['model']['frontend']} frontend, "
        f"{results['model']['num_layers']} × {results['model']['hidden_dim']}); corpus "
        f"spoken_scenes/{results['data']['preset']}, {results['data']['split']} split. "
        "Values in %, mean ± std over seeds.",
        "",
    ]
    tower = results.get("image_tower")
    if tower:
        lines += [
            "Image side: a conv tower pretrained on rendered scenes' object attributes and read "
            f"frozen by every model (held-out attribute F1 {tower['attribute_f1']:.1f} %, "
            f"every attribute of a scene right {tower['scene_exact_match']:.1f} %).",
            "",
        ]
    lines += [
        "## Cross-modal retrieval (coarse embeddings)",
        "",
        "| model | S→I R@1 | S→I R@5 | S→I R@10 | I→S R@1 | I→S R@5 | I→S R@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in results["models"].values():
        cells = [_cell(m["retrieval"][f"{d}_{k}"]) for d, k in RETRIEVAL_COLUMNS]
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "S→I: speech → image (each caption ranks all images); I→S: image → speech (a hit when "
        "any of the image's captions is in the top K).",
        "",
        "## ABX phone discriminability (error %, best layer in parentheses)",
        "",
        "| model | within speaker | across speaker |",
        "|---|---|---|",
    ]
    for m in results["models"].values():
        w, a = m["best"]["within"], m["best"]["across"]
        lines.append(
            f"| {m['label']} | {_cell(w, 2)}{_layer_note(w['layers'])} | "
            f"{_cell(a, 2)}{_layer_note(a['layers'])} |"
        )
    for name, title in (("random_init", "random init"), ("mfcc", "MFCC (13 + Δ + ΔΔ)")):
        r = results["reference"][name]
        lines.append(
            f"| {title} | {_cell(r['within'], 2)}{_layer_note(r['within']['layers'])} | "
            f"{_cell(r['across'], 2)}{_layer_note(r['across']['layers'])} |"
        )
    return "\n".join(lines) + "\n"


def write_plots(settings, results: Mapping) -> list[str]:
    """Per-layer ABX curves (one line per model, like the paper's figure) and each run's
    history plot (retrieval and ABX over steps, phase switch marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = os.path.join(settings.out, "plots")
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, mode in zip(axes, ("within", "across"), strict=True):
        for m in results["models"].values():
            layers = list(m["abx"])
            values = [m["abx"][layer][mode]["mean"] for layer in layers]
            ax.plot(range(len(layers)), values, marker="o", label=m["label"])
        random_rows = results["reference"]["random_init"]["per_layer"]
        ax.plot(
            range(len(random_rows)),
            [random_rows[layer][mode]["mean"] for layer in random_rows],
            color="grey",
            linestyle="--",
            label="random init",
        )
        mfcc = results["reference"]["mfcc"][mode]["mean"]
        if mfcc is not None:
            ax.axhline(mfcc, color="black", linestyle=":", label="MFCC")
        ax.set_xticks(range(len(layers)), [evaluate._layer_label(x) for x in layers])
        ax.set_title(f"ABX error, {mode} speaker")
        ax.set_xlabel("layer")
    axes[0].set_ylabel("error (%)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out_dir, "abx_per_layer.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    if settings.history.enabled:
        for model in study_models(settings):
            for seed in study_seeds(settings):
                workdir = run_dir(settings.out, model, seed)
                paths.append(
                    evaluate.plot_history(
                        workdir, os.path.join(out_dir, f"history_{model}_seed{seed}.png")
                    )
                )
    return paths
