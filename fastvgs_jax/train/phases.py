"""Training phases as data: lengths, loss weights (α schedules), optimiser resets, data mix.

A run is an ordered list of phases. The study's sequential models are two phases
(e.g. W2V2 → VGS: α = 0 for 20 parts, then α = 1 for 50 with the optimiser reset);
simultaneous models are one phase with 0 < α < 1; FaST-VGS+ uses separate weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import ml_collections

ALPHA_KINDS = ("constant", "linear", "cosine", "steps")


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    steps: int
    alpha_kind: str = "constant"  # how α moves over the phase
    alpha_start: float = 0.0  # α at the phase's first step (constant: α throughout)
    alpha_end: float = 0.0  # α at its last step (linear, cosine)
    alpha_boundaries: tuple[int, ...] = ()  # "steps": α = alpha_values[i] from boundary i−1
    alpha_values: tuple[float, ...] = ()
    # Separate weights (FaST-VGS+) replace α when given: coarse on audio-image batches,
    # SSL on captions, SSL on audio-only batches.
    weights: tuple[float, float, float] | None = None
    reset_optimizer: bool = True  # fresh optimiser state and lr schedule at the phase start
    learning_rate: float | None = None  # this phase's peak lr (None: optimizer.learning_rate)
    vgs_branch_lr_scale: float = 1.0  # lr share of the parameters only the coarse loss trains
    mix: tuple[tuple[str, float], ...] = (("audio_image", 1.0),)  # batch kinds and shares

    def alpha(self, step_in_phase: int) -> float:
        """α (the coarse weight; SSL gets 1 − α) at a step of this phase."""
        t = step_in_phase / max(1, self.steps - 1)
        if self.alpha_kind == "constant":
            return self.alpha_start
        if self.alpha_kind == "linear":
            return self.alpha_start + t * (self.alpha_end - self.alpha_start)
        if self.alpha_kind == "cosine":
            return self.alpha_end + 0.5 * (self.alpha_start - self.alpha_end) * (
                1 + math.cos(math.pi * t)
            )
        value = self.alpha_start
        for boundary, v in zip(self.alpha_boundaries, self.alpha_values, strict=True):
            if step_in_phase >= boundary:
                value = v
        return value

    def alpha_range(self) -> tuple[float, float]:
        values = (
            [self.alpha_start, self.alpha_end]
            if self.alpha_kind in ("linear", "cosine")
            else [
                self.alpha_start,
                *self.alpha_values,
            ]
        )
        return min(values), max(values)

    def loss_weights(self, step_in_phase: int, kind: str) -> tuple[float, float]:
        """(coarse weight, SSL weight) for a batch of ``kind`` at a step."""
        if self.weights is not None:
            coarse, caption_ssl, audio_only_ssl = self.weights
            return (coarse, caption_ssl) if kind == "audio_image" else (0.0, audio_only_ssl)
        a = self.alpha(step_in_phase)
        return (a, 1.0 - a) if kind == "audio_image" else (0.0, 1.0 - a)

    def needs(self, kind: str) -> tuple[bool, bool]:
        """Static (run SSL head, run VGS branch) for batches of ``kind`` in this phase."""
        if self.weights is not None:
            coarse, caption_ssl, audio_only_ssl = self.weights
            if kind == "audio_image":
                return caption_ssl > 0, coarse > 0
            return audio_only_ssl > 0, False
        low, high = self.alpha_range()
        if kind == "audio_image":
            return low < 1.0, high > 0.0
        return low < 1.0, False


def phases_from_config(
    config: ml_collections.ConfigDict, epoch_steps: Callable[[str, float], int] | None = None
) -> list[Phase]:
    """Validated phases from the run config's ``phases`` list.

    ``epoch_steps(kind, epochs)`` turns a phase given in epochs of its first stream into
    steps (it needs the built corpus); without it such phases are validated with a
    placeholder length.

    Raises:
      ValueError: naming the phase, for a non-positive length, an unknown α kind, α outside
        [0, 1], all-zero loss weights, a VGS weight with no audio-image data, an SSL-only
        phase fed only images it does not need, a stream in the mix that no loss weight
        reaches, or an empty or unknown mix.
    """
    raw = config.phases
    if not raw:
        raise ValueError("config.phases is empty: a run needs at least one phase")
    phases = []
    for i, p in enumerate(raw):
        where = f"phases[{i}] ({p.get('name', '?')!r})"
        mix = tuple((str(k), float(v)) for k, v in dict(p.mix).items())
        weights = tuple(p.weights) if p.get("weights") is not None else None
        steps = int(p.steps)
        if p.get("epochs") is not None:
            if not p.epochs > 0:
                raise ValueError(f"{where}: epochs must be positive, got {p.epochs}")
            first = next((k for k, v in mix if k == "audio_image" and v > 0), mix[0][0])
            steps = epoch_steps(first, float(p.epochs)) if epoch_steps else 1
        phase = Phase(
            name=p.name,
            steps=steps,
            alpha_kind=p.alpha.kind,
            alpha_start=float(p.alpha.start),
            alpha_end=float(p.alpha.get("end", p.alpha.start)),
            alpha_boundaries=tuple(int(b) for b in p.alpha.get("boundaries", ())),
            alpha_values=tuple(float(v) for v in p.alpha.get("values", ())),
            weights=weights,
            reset_optimizer=bool(p.reset_optimizer),
            learning_rate=(float(p.learning_rate) if p.get("learning_rate") is not None else None),
            vgs_branch_lr_scale=float(p.get("vgs_branch_lr_scale", 1.0)),
            mix=mix,
        )
        _validate(phase, where)
        phases.append(phase)
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        raise ValueError(f"phase names must be unique, got {names}")
    return phases


def _validate(phase: Phase, where: str) -> None:
    if phase.learning_rate is not None and not phase.learning_rate > 0:
        raise ValueError(f"{where}: learning_rate must be positive, got {phase.learning_rate}")
    if not 0.0 <= phase.vgs_branch_lr_scale < float("inf"):
        raise ValueError(
            f"{where}: vgs_branch_lr_scale must be finite and ≥ 0, got {phase.vgs_branch_lr_scale}"
        )
    if phase.steps <= 0:
        raise ValueError(f"{where}: steps must be positive, got {phase.steps}")
    if phase.alpha_kind not in ALPHA_KINDS:
        raise ValueError(f"{where}: alpha.kind {phase.alpha_kind!r} not in {ALPHA_KINDS}")
    if len(phase.alpha_boundaries) != len(phase.alpha_values):
        raise ValueError(f"{where}: alpha.boundaries and alpha.values differ in length")
    low, high = phase.alpha_range()
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"{where}: α must stay within [0, 1], got range [{low}, {high}]")
    shares = dict(phase.mix)
    unknown = set(shares) - {"audio_image", "audio_only"}
    if unknown:
        raise ValueError(f"{where}: unknown mix streams {sorted(unknown)}")
    if any(v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
        raise ValueError(f"{where}: mix shares must be ≥ 0 with a positive sum, got {shares}")
    kinds = [k for k, v in shares.items() if v > 0]
    if phase.weights is not None:
        if len(phase.weights) != 3 or any(w < 0 for w in phase.weights):
            raise ValueError(f"{where}: weights must be 3 non-negative numbers")
        if sum(phase.weights) == 0:
            raise ValueError(f"{where}: all loss weights are zero")
    idle = [k for k in kinds if not any(phase.needs(k))]
    if idle == kinds:
        raise ValueError(f"{where}: all loss weights are zero for its data mix {shares}")
    if idle:  # their steps would apply only weight decay and stale Adam momentum
        raise ValueError(
            f"{where}: its {' and '.join(idle)} batches carry no loss (every weight on them "
            f"is zero, e.g. a VGS-only phase fed audio-only batches); drop them from the mix "
            f"{shares}"
        )
    coarse_weighted = high > 0 or (phase.weights is not None and phase.weights[0] > 0)
    if coarse_weighted and "audio_image" not in kinds:
        raise ValueError(f"{where}: a VGS (coarse) weight needs audio-image data in its mix")


def schedule_lengths(phases: Sequence[Phase]) -> list[int]:
    """Per phase: the length of the lr schedule it runs in (phases that keep the optimiser
    share one schedule with the phases before them)."""
    lengths = [0] * len(phases)
    start = 0
    for i in range(len(phases) + 1):
        if i == len(phases) or (i > 0 and phases[i].reset_optimizer):
            total = sum(p.steps for p in phases[start:i])
            for j in range(start, i):
                lengths[j] = total
            start = i
    return lengths


def locate(phases: Sequence[Phase], step: int) -> tuple[int, int]:
    """(phase index, step within the phase) of a global step; past the end → (len, 0)."""
    for i, phase in enumerate(phases):
        if step < phase.steps:
            return i, step
        step -= phase.steps
    return len(phases), 0
