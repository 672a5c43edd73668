"""What a sweep runs: its runs (size × data fraction × step budget × schedule × seed), their
stable names, each run's config, and its cost before it runs.

Layout under ``settings.out``::

    runs/<run>/                  one trainer workdir per run (+ evaluation.json, sweep_row.json)
    image_tower/tower.msgpack    the pretrained image tower every run reads frozen (as the study)
    sweep.jsonl, sweep.md        one row per finished run, in plan order
    emit/                        what --emit writes: run configs, sweep settings, scripts

A run is named ``<size>-frac<fraction>-steps<steps>-<schedule>-seed<seed>``, e.g.
``s-frac0.5-steps300-w2v2_vgs-seed0``: the name only depends on those five values, so a rerun
(or a larger grid) finds the runs an earlier one finished. Its config is built as the study
builds a model's (``study.plan.model_config``) from the sweep's ``study`` settings, with the
model sized by ``family`` (``models/family.py``) and the training streams reading
``data_fraction`` of their examples.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence

import ml_collections

from fastvgs_jax.models import family, speech
from fastvgs_jax.study import plan as study_plan
from fastvgs_jax.train import config as run_config
from fastvgs_jax.train import flops as flops_lib
from fastvgs_jax.train import phases as phases_lib

ROW_FILE = "sweep_row.json"  # a finished, evaluated run's row (its presence: the run is done)
TABLE_JSONL, TABLE_MD = "sweep.jsonl", "sweep.md"
STREAMS = ("audio_image", "audio_only")
RUN_FIELDS = ("size", "fraction", "steps", "schedule", "seed")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a sweep."""

    size: str  # a name in the sweep's family table
    data_fraction: float  # share of each training stream's examples, in (0, 1]
    steps: int  # optimiser steps (the whole schedule)
    schedule: str  # a study model: w2v2, vgs, vgsplus, w2v2_vgs, ...
    seed: int

    @property
    def name(self) -> str:
        return (
            f"{self.size}-frac{self.data_fraction:g}-steps{self.steps}-{self.schedule}"
            f"-seed{self.seed}"
        )


# --- Settings -------------------------------------------------------------------------------


def parse_list(value, cast: Callable, what: str) -> list:
    """ "a,b" or a sequence (or one value) as a list of ``cast`` values."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        items = [value]
    try:
        return [cast(v) for v in items]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}={value!r}: {error}") from error


def _int(value) -> int:
    number = float(value)
    if number != int(number):
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _run_entries(value) -> list[str]:
    if isinstance(value, str):
        return [e.strip() for e in value.split(";") if e.strip()]
    return [str(e) for e in value or ()]


def _parse_run(entry: str, defaults: Mapping[str, object]) -> RunSpec:
    """``size=s,fraction=0.5,steps=300,schedule=w2v2_vgs,seed=0`` (missing parts: the first
    value of the grid's list for it)."""
    values = dict(defaults)
    for part in entry.split(","):
        key, has_value, value = part.strip().partition("=")
        if not has_value or key not in RUN_FIELDS:
            raise ValueError(
                f"runs entry {entry!r}: expected {','.join(f + '=…' for f in RUN_FIELDS)}"
            )
        values[key] = value.strip()
    return RunSpec(
        size=str(values["size"]),
        data_fraction=float(values["fraction"]),
        steps=_int(values["steps"]),
        schedule=str(values["schedule"]),
        seed=_int(values["seed"]),
    )


def expand(settings: ml_collections.ConfigDict) -> list[RunSpec]:
    """The sweep's runs in the order they run: the grid (sizes outermost, then data
    fractions, step budgets, schedules, seeds), or ``settings.runs`` when it lists runs."""
    grid = {
        "size": parse_list(settings.sizes, str, "sizes"),
        "fraction": parse_list(settings.data_fractions, float, "data_fractions"),
        "steps": parse_list(settings.steps, _int, "steps"),
        "schedule": parse_list(settings.schedules, str, "schedules"),
        "seed": parse_list(settings.seeds, _int, "seeds"),
    }
    entries = _run_entries(settings.get("runs"))
    if entries:
        defaults = {k: v[0] for k, v in grid.items() if v}
        specs = [_parse_run(entry, defaults) for entry in entries]
    else:
        empty = [f"{k}s" for k, v in grid.items() if not v]
        if empty:
            raise ValueError(f"the sweep's grid has no values for {', '.join(empty)}")
        specs = [RunSpec(*values) for values in itertools.product(*grid.values())]
    return specs


def check_settings(settings: ml_collections.ConfigDict, specs: Sequence[RunSpec]) -> None:
    """Every run is valid (known size and schedule, budget, fraction), names are unique and
    the data fractions below 1 can be honoured."""
    if not specs:
        raise ValueError("the sweep has no runs")
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"run {spec.name} is listed twice")
        seen.add(spec.name)
        if spec.size not in settings.family:
            raise ValueError(
                f"run {spec.name}: size {spec.size!r} is not in the sweep's family "
                f"(have {sorted(settings.family)}; add family.{spec.size}.width=… etc.)"
            )
        if spec.schedule not in study_plan.MODELS:
            raise ValueError(
                f"run {spec.name}: schedule {spec.schedule!r}; expected one of "
                f"{list(study_plan.MODELS)}"
            )
        if not 0.0 < spec.data_fraction <= 1.0:
            raise ValueError(f"run {spec.name}: data fraction {spec.data_fraction} not in (0, 1]")
        run_config.study_phases(spec.schedule, spec.steps)  # enough steps for the phases


# --- Each run's config ---------------------------------------------------------------------


def run_dir(out: str, name: str) -> str:
    return os.path.join(out, "runs", name)


def model_config(settings: ml_collections.ConfigDict, size: str) -> ml_collections.ConfigDict:
    """The run template's model section sized as ``family.<size>`` says."""
    knobs = {k: settings.family[size].get(k) for k in family.KNOB_NAMES}
    config = family.model_config(knobs, settings.study.run.model)
    config.size = size
    return config


def study_settings(
    settings: ml_collections.ConfigDict, spec: RunSpec | None = None
) -> ml_collections.ConfigDict:
    """The study settings that build (and evaluate) a run: the sweep's ``study`` block with
    the sweep's folder (the image tower lives there) and, given ``spec``, its budget, model
    and data fraction."""
    s = copy.deepcopy(settings.study)
    s.out = settings.out
    s.name = settings.name
    if spec is None:
        return s
    s.models, s.seeds, s.steps = spec.schedule, str(spec.seed), int(spec.steps)
    s.run.model = model_config(settings, spec.size)
    for stream in STREAMS:
        s.run.data[stream].fraction = float(spec.data_fraction)
    return s


def run_config_of(settings: ml_collections.ConfigDict, spec: RunSpec) -> ml_collections.ConfigDict:
    """The run config of ``spec``: as the study builds a model's (phases, lrs per objective,
    warm-up and temperature shares, image tower), its model and data the run's."""
    return study_plan.model_config(study_settings(settings, spec), spec.schedule, spec.seed)


# --- Cost before running -------------------------------------------------------------------


def _stream_shape(config: ml_collections.ConfigDict, stream: str) -> tuple[int, int]:
    data = config.data[stream]
    return int(data.batch_size), int(round(float(data.crop_seconds) * int(config.data.sample_rate)))


def cost(config: ml_collections.ConfigDict) -> dict:
    """A run's analytic cost: parameters by part, FLOPs per step (the mean over its phases and
    batch kinds, weighted by steps and mix shares: ``train/flops.py``'s count), total
    training FLOPs (``compute``), and the audio and frames of the crops it reads (padding
    included: the estimate; the run's table reports what it read)."""
    model = config.model
    parameters = family.estimate_parameters(model)  # = flops.parameter_counts (tested), untraced
    geometry = speech.frame_geometry(model)
    frame_rate = int(config.data.sample_rate) / geometry.stride
    total_flops = audio_seconds = frames = 0.0
    steps = 0
    for phase in phases_lib.phases_from_config(config):
        shares = {k: v for k, v in phase.mix if v > 0}
        norm = sum(shares.values())
        for kind, share in shares.items():
            ssl, vgs = phase.needs(kind)
            if not (ssl or vgs):
                continue
            batch, samples = _stream_shape(config, kind)
            step = flops_lib.step_flops(
                model, batch, samples, ssl=ssl, vgs=vgs, sample_rate=int(config.data.sample_rate)
            )
            weight = phase.steps * share / norm
            total_flops += weight * step["total"]
            audio_seconds += weight * batch * samples / int(config.data.sample_rate)
            frames += weight * batch * geometry.num_frames(samples)
        steps += phase.steps
    return {
        "parameters": {k: int(parameters[k]) for k in ("encoder", "vgs_branch", "image", "total")},
        "steps": steps,
        "flops_per_step": total_flops / max(steps, 1),
        "compute": total_flops,
        "audio_hours": audio_seconds / 3600.0,
        "frames": frames,
        "frame_rate": frame_rate,
    }


def estimated_seconds(cost_: Mapping, estimate: ml_collections.ConfigDict) -> float:
    """Wall time of a run from its cost: per run (compile, evaluation), per step (host,
    input pipeline), per FLOP (``estimate.flops_per_second``: the rate the device sustains)."""
    rate = float(estimate.flops_per_second)
    per_step = float(estimate.seconds_per_step) + cost_["flops_per_step"] / rate
    return float(estimate.seconds_per_run) + cost_["steps"] * per_step


# --- Configs as JSON (what --emit writes; configs/resolved.py reads) ----------------------


def config_json(config: ml_collections.ConfigDict) -> str:
    return config.to_json_best_effort(indent=1, sort_keys=False)


def _restore(value):
    if isinstance(value, Mapping):
        return ml_collections.ConfigDict({k: _restore(v) for k, v in value.items()})
    if isinstance(value, list):
        items = [_restore(v) for v in value]
        # Lists of sections (the run's phases) stay lists; lists of values were tuples.
        return (
            items if any(isinstance(v, ml_collections.ConfigDict) for v in items) else tuple(items)
        )
    return value


def config_from_json(text: str) -> ml_collections.ConfigDict:
    """A config written by ``config_json`` (or a run manifest's ``config``) as a ConfigDict:
    sections as ConfigDicts, the phases as a list of them, other lists as tuples."""
    value = json.loads(text)
    if isinstance(value, Mapping) and "config" in value and "started" in value:
        value = value["config"]  # a run's manifest.json
    return _restore(value)


def total_steps(specs: Sequence[RunSpec]) -> int:
    return sum(s.steps for s in specs)


def human(value: float | None, unit: str = "") -> str:
    """3.2e12 → "3.2 T" (k, M, G, T, P, E); None → "–"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    for scale, prefix in (
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
    ):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}".rstrip()
    return f"{value:.3g} {unit}".rstrip()
