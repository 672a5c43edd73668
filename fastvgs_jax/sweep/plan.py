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
model sized by ``family`` (``models/family.py``; the size ``template`` keeps the run
template's model as it is) and the training streams reading ``data_fraction`` of their
examples.

Two more axes, off unless set:

- ``alphas``: the VGS+ phases' α (a list). A schedule with a VGS+ phase gets one run per
  value, named ``…-<schedule>-a<α>-seed<seed>``.
- ``second_phase_steps`` (the forgetting sweep): two-phase runs whose phases have lengths of
  their own, the first fixed (``first_phase_steps``, default the study's 20/70 of the one
  ``steps`` value, which the study's shares of the budget still refer to) and the second one
  of a list of budgets, 0 allowed (the first phase alone: the run is evaluated at the
  switch). Named ``<size>-frac<f>-p<first>+<second>-<schedule>[-a<α>]-seed<seed>``, e.g.
  ``template-frac1-p200+250-vgsplus_w2v2-a0.1-seed0``. Runs sharing a first phase (size,
  fraction, first objective, its α when it is VGS+, seed) train it once, under
  ``runs/_first/<size>-frac<f>-p<first>-<objective>[-a<α>]-seed<seed>/``, and each resumes
  from a copy of its closing snapshot (the study's first-phase sharing: bitwise a run from
  scratch). The switch is evaluated there once, for every budget.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence

import ml_collections

from fastvgs_jax.models import family
from fastvgs_jax.study import plan as study_plan
from fastvgs_jax.train import config as run_config

ROW_FILE = "sweep_row.json"  # a finished, evaluated run's row (its presence: the run is done)
TABLE_JSONL, TABLE_MD = "sweep.jsonl", "sweep.md"
STREAMS = ("audio_image", "audio_only")
RUN_FIELDS = ("size", "fraction", "steps", "schedule", "seed", "alpha", "second")
TEMPLATE_SIZE = "template"  # a size that keeps the run template's model unchanged
FIRST_DIR = "_first"  # runs/_first/<first phase>/: the shared first phases
JOINT = "vgsplus"  # the phase objective whose α the alphas axis sets


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a sweep."""

    size: str  # a name in the sweep's family table (or "template")
    data_fraction: float  # share of each training stream's examples, in (0, 1]
    steps: int  # optimiser steps (the whole schedule)
    schedule: str  # a study model: w2v2, vgs, vgsplus, w2v2_vgs, ...
    seed: int
    alpha: float | None = None  # the VGS+ phases' α (None: the study's vgsplus_alpha)
    # Phases of their own length: the first's steps (the second's: steps − first_steps).
    first_steps: int | None = None

    @property
    def second_steps(self) -> int | None:
        return None if self.first_steps is None else self.steps - self.first_steps

    @property
    def objectives(self) -> list[str]:
        return self.schedule.split("_")

    def _alpha_part(self, objective: str | None = None) -> str:
        shown = self.alpha is not None and (objective is None or objective == JOINT)
        return f"-a{self.alpha:g}" if shown else ""

    @property
    def name(self) -> str:
        steps = (
            f"steps{self.steps}"
            if self.first_steps is None
            else f"p{self.first_steps}+{self.second_steps}"
        )
        return (
            f"{self.size}-frac{self.data_fraction:g}-{steps}-{self.schedule}"
            f"{self._alpha_part()}-seed{self.seed}"
        )

    @property
    def first_phase(self) -> str | None:
        """The name of the first-phase run it shares (phase lengths of their own only)."""
        if self.first_steps is None:
            return None
        first = self.objectives[0]
        return (
            f"{self.size}-frac{self.data_fraction:g}-p{self.first_steps}-{first}"
            f"{self._alpha_part(first)}-seed{self.seed}"
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


def alphas(settings: ml_collections.ConfigDict) -> list[float]:
    """``settings.alphas`` as a list (empty: the study's vgsplus_alpha, no α axis)."""
    return parse_list(settings.get("alphas") or "", float, "alphas")


def second_phase_budgets(settings: ml_collections.ConfigDict) -> list[int]:
    """``settings.second_phase_steps`` as a list (empty: runs split ``steps`` 20 : 50)."""
    return parse_list(settings.get("second_phase_steps") or "", _int, "second_phase_steps")


def split_phases(settings: ml_collections.ConfigDict) -> bool:
    """Whether the runs' phases have lengths of their own (``second_phase_steps`` set)."""
    return bool(second_phase_budgets(settings))


def reference_steps(settings: ml_collections.ConfigDict) -> int:
    """With ``second_phase_steps``: the one ``steps`` value, the budget that the study's
    shares (warm-up floor, temperature anneal, history points) and the default first phase
    refer to."""
    steps = parse_list(settings.steps, _int, "steps")
    if len(steps) != 1:
        raise ValueError(
            f"steps={settings.steps!r}: with second_phase_steps, steps is one budget (the one "
            "the study's shares of the budget refer to), not a list"
        )
    return steps[0]


def first_phase_steps(settings: ml_collections.ConfigDict) -> int:
    """The first phase's length with ``second_phase_steps``: ``first_phase_steps``, or the
    study's 20 : 50 split of ``steps`` (the demo's 200 of 700)."""
    given = settings.get("first_phase_steps")
    if given is not None:
        return _int(given)
    return int(run_config.study_phases("w2v2_vgs", reference_steps(settings))[0].steps)


def has_joint_phase(schedule: str) -> bool:
    return JOINT in schedule.split("_")


def _run_entries(value) -> list[str]:
    if isinstance(value, str):
        return [e.strip() for e in value.split(";") if e.strip()]
    return [str(e) for e in value or ()]


def _spec(settings, size, fraction, steps, schedule, seed, alpha, second) -> RunSpec:
    """A run; ``second`` (phases of their own length) makes ``steps`` first + second."""
    alpha = None if alpha is None else float(alpha)
    if second is None:
        return RunSpec(size, fraction, steps, schedule, seed, alpha)
    first = first_phase_steps(settings)
    return RunSpec(size, fraction, first + second, schedule, seed, alpha, first)


def _parse_run(entry: str, defaults: Mapping[str, object], settings) -> RunSpec:
    """``size=s,fraction=0.5,steps=300,schedule=w2v2_vgs,seed=0`` (missing parts: the first
    value of the grid's list for it; ``alpha=`` for a schedule with a VGS+ phase,
    ``second=`` the second phase's steps with ``second_phase_steps``)."""
    values = dict(defaults)
    given = set()
    for part in entry.split(","):
        key, has_value, value = part.strip().partition("=")
        if not has_value or key not in RUN_FIELDS:
            raise ValueError(
                f"runs entry {entry!r}: expected {','.join(f + '=…' for f in RUN_FIELDS)}"
            )
        values[key] = value.strip()
        given.add(key)
    schedule = str(values["schedule"])
    alpha = values.get("alpha")
    if "alpha" not in given and not has_joint_phase(schedule):
        alpha = None  # the grid's first α only goes to schedules with a VGS+ phase
    if "second" in given and not split_phases(settings):
        raise ValueError(f"runs entry {entry!r}: second=… needs second_phase_steps")
    second = values.get("second")
    return _spec(
        settings,
        str(values["size"]),
        float(values["fraction"]),
        _int(values["steps"]),
        schedule,
        _int(values["seed"]),
        None if alpha in (None, "") else float(alpha),
        None if second is None else _int(second),
    )


def expand(settings: ml_collections.ConfigDict) -> list[RunSpec]:
    """The sweep's runs in the order they run: the grid (sizes outermost, then data
    fractions, step budgets (with ``second_phase_steps``: the second phase's), schedules,
    α where a schedule has a VGS+ phase, seeds), or ``settings.runs`` when it lists runs."""
    split = split_phases(settings)
    grid = {
        "size": parse_list(settings.sizes, str, "sizes"),
        "fraction": parse_list(settings.data_fractions, float, "data_fractions"),
        "steps": parse_list(settings.steps, _int, "steps"),
        "schedule": parse_list(settings.schedules, str, "schedules"),
        "seed": parse_list(settings.seeds, _int, "seeds"),
    }
    if split:
        reference_steps(settings)  # one value
    budgets: list[int | None] = list(second_phase_budgets(settings)) if split else [None]
    joint_alphas = alphas(settings)
    entries = _run_entries(settings.get("runs"))
    if entries:
        defaults: dict[str, object] = {k: v[0] for k, v in grid.items() if v}
        if joint_alphas:
            defaults["alpha"] = joint_alphas[0]
        if split:
            defaults["second"] = budgets[0]
        return [_parse_run(entry, defaults, settings) for entry in entries]
    empty = [f"{k}s" for k, v in grid.items() if not v]
    if empty:
        raise ValueError(f"the sweep's grid has no values for {', '.join(empty)}")
    specs = []
    for size, fraction, steps in itertools.product(grid["size"], grid["fraction"], grid["steps"]):
        for second in budgets:
            for schedule in grid["schedule"]:
                joint = joint_alphas if joint_alphas and has_joint_phase(schedule) else [None]
                for alpha in joint:
                    for seed in grid["seed"]:
                        specs.append(
                            _spec(settings, size, fraction, steps, schedule, seed, alpha, second)
                        )
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
        if spec.size not in settings.family and spec.size != TEMPLATE_SIZE:
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
        if spec.alpha is not None:
            if not has_joint_phase(spec.schedule):
                raise ValueError(f"run {spec.name}: α given, but {spec.schedule} has no VGS+ phase")
            if not 0.0 < spec.alpha < 1.0:
                raise ValueError(f"run {spec.name}: VGS+ needs 0 < α < 1, not {spec.alpha}")
        if spec.first_steps is None:
            run_config.study_phases(spec.schedule, spec.steps)  # enough steps for the phases
            continue
        if len(spec.objectives) != 2:
            raise ValueError(
                f"run {spec.name}: second_phase_steps needs two-phase schedules (a_b), "
                f"not {spec.schedule!r}"
            )
        if spec.first_steps < 1 or spec.second_steps < 0:
            raise ValueError(
                f"run {spec.name}: phases of {spec.first_steps} and {spec.second_steps} steps; "
                "the first needs at least 1, the second at least 0"
            )


# --- Each run's config ---------------------------------------------------------------------


def run_dir(out: str, name: str) -> str:
    return os.path.join(out, "runs", name)


def first_phase_dir(out: str, spec: RunSpec) -> str:
    """The run of ``spec``'s first phase alone, shared by every run that starts with it."""
    if spec.first_phase is None:
        raise ValueError(f"run {spec.name} has no shared first phase")
    return os.path.join(out, "runs", FIRST_DIR, spec.first_phase)


def trained_dir(out: str, spec: RunSpec) -> str:
    """The workdir holding the run's last snapshot: its own, or (a second phase of 0 steps)
    its first phase's."""
    if spec.second_steps == 0:
        return first_phase_dir(out, spec)
    return run_dir(out, spec.name)


def model_config(settings: ml_collections.ConfigDict, size: str) -> ml_collections.ConfigDict:
    """The run template's model section sized as ``family.<size>`` says (``template``: as
    it is)."""
    if size == TEMPLATE_SIZE:
        return copy.deepcopy(settings.study.run.model)
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
    s.models, s.seeds = spec.schedule, str(spec.seed)
    s.steps = int(spec.steps) if spec.first_steps is None else reference_steps(settings)
    if spec.alpha is not None:
        s.vgsplus_alpha = float(spec.alpha)
    s.run.model = model_config(settings, spec.size)
    for stream in STREAMS:
        s.run.data[stream].fraction = float(spec.data_fraction)
    return s


def run_config_of(settings: ml_collections.ConfigDict, spec: RunSpec) -> ml_collections.ConfigDict:
    """The run config of ``spec``: as the study builds a model's (phases, lrs per objective,
    warm-up and temperature shares, image tower), its model, data and α the run's; with
    phases of their own length, the study's phases cut to them (everything else as the
    study's budget ``steps`` gives it; a second phase of 0 steps: the first phase alone)."""
    config = study_plan.model_config(study_settings(settings, spec), spec.schedule, spec.seed)
    if spec.first_steps is not None:
        first, second = config.phases
        first.steps = int(spec.first_steps)
        second.steps = int(spec.second_steps)
        config.phases = [first, second] if spec.second_steps else [first]
    return config


def first_phase_config_of(
    settings: ml_collections.ConfigDict, spec: RunSpec
) -> ml_collections.ConfigDict:
    """The run config of ``spec``'s shared first phase: its run config, first phase only."""
    config = run_config_of(settings, spec)
    config.phases = [config.phases[0]]
    return config


def curve_runs(settings: ml_collections.ConfigDict, specs: Sequence[RunSpec]) -> set[str]:
    """The runs that record forgetting curves over their second phase (``curves.seeds``, at
    ``curves.budgets``, default the largest second-phase budget): names."""
    curves = settings.get("curves")
    if curves is None or not split_phases(settings):
        return set()
    seeds = set(parse_list(curves.get("seeds") or "", _int, "curves.seeds"))
    budgets = set(parse_list(curves.get("budgets") or "", _int, "curves.budgets"))
    if not budgets:
        budgets = {max(s.second_steps for s in specs if s.second_steps is not None)}
    return {
        s.name
        for s in specs
        if s.seed in seeds and s.second_steps in budgets and s.second_steps and s.first_steps
    }
