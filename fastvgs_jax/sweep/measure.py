"""What a finished sweep run measured (its metrics, final losses, MFU) and its table row."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import ml_collections

from fastvgs_jax import workdir as workdir_lib
from fastvgs_jax.sweep import cost as sweep_cost
from fastvgs_jax.sweep.plan import RunSpec
from fastvgs_jax.train import phases as phases_lib
from fastvgs_jax.train import reporting

FINAL_SHARE = 0.1  # final losses: the mean over this share of the final phase's steps

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
    cost = sweep_cost.cost(config)
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
