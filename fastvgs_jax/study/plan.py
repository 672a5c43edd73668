"""What the study trains: its models, their labels and configs, and where each run lives.

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
import os

import ml_collections

from fastvgs_jax.train import config as run_config

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


def baselines_path(out: str, seed: int) -> str:
    return os.path.join(out, "baselines", f"seed{seed}.json")
