"""What a user sees while a run trains: metric lines in ``metrics.jsonl`` and TensorBoard
event files in the workdir, and a console progress bar with ETA per phase."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping

import jax
import tqdm

from fastvgs_jax.train.tensorboard import EventWriter


def quiet_library_logs() -> None:
    """Orbax and TFDS log every checkpoint write and dataset open at INFO through absl's
    logger; WARNING keeps the console for progress bars and our own log lines."""
    logging.getLogger("absl").setLevel(logging.WARNING)


METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class RunReporter:
    """Writes metric lines from process 0; other processes only keep time."""

    def __init__(self, workdir: str, progress: bool = True, peak_flops: float | None = None):
        self.workdir = workdir
        self.peak_flops = peak_flops  # FLOP/s of all the run's devices: MFU's denominator
        self.main = jax.process_index() == 0
        self.progress = progress and self.main
        self._events = EventWriter(os.path.join(workdir, TENSORBOARD_DIR)) if self.main else None
        self._bar = None
        self._window_start = time.perf_counter()
        self._window_steps = 0
        self._window_audio_seconds = 0.0
        self._window_flops = 0.0
        # What the run has seen since its step 0 (snapshots carry it across restarts).
        self.totals = {"audio_seconds": 0.0, "frames": 0, "model_flops": 0.0, "train_seconds": 0.0}
        self._last_step_time = time.perf_counter()

    def restore_totals(self, totals: Mapping | None) -> None:
        """Continue the totals a snapshot recorded (a resumed run)."""
        if totals:
            self.totals.update(
                {k: type(self.totals[k])(v) for k, v in totals.items() if k in self.totals}
            )

    def start_phase(self, index: int, count: int, name: str, done: int, steps: int) -> None:
        self._close_bar()
        if self.progress:
            self._bar = tqdm.tqdm(
                total=steps, initial=done, desc=f"phase {index + 1}/{count} {name}", unit="step"
            )
        self._window_start = time.perf_counter()
        self._window_steps, self._window_audio_seconds, self._window_flops = 0, 0.0, 0.0
        self._last_step_time = time.perf_counter()

    def step_done(self, audio_seconds: float, model_flops: float = 0.0, frames: int = 0) -> None:
        self._window_steps += 1
        self._window_audio_seconds += audio_seconds
        self._window_flops += model_flops
        now = time.perf_counter()
        self.totals["audio_seconds"] += audio_seconds
        self.totals["frames"] += int(frames)
        self.totals["model_flops"] += model_flops
        self.totals["train_seconds"] += now - self._last_step_time
        self._last_step_time = now
        if self._bar is not None:
            self._bar.update(1)

    def write(self, step: int, phase: str, metrics: Mapping[str, float]) -> dict:
        """Log a metric line; adds throughput over the steps since the previous line."""
        elapsed = max(time.perf_counter() - self._window_start, 1e-9)
        line = dict(metrics)
        line["steps_per_second"] = self._window_steps / elapsed
        line["audio_seconds_per_second"] = self._window_audio_seconds / elapsed
        if self._window_flops > 0 and self._window_steps:
            # Summed over the window: a mixed phase alternates steps of different cost.
            line["model_flops_per_step"] = self._window_flops / self._window_steps
            line["model_flops_per_second"] = self._window_flops / elapsed
            if self.peak_flops:
                line["mfu"] = line["model_flops_per_second"] / self.peak_flops
        line["audio_hours_seen"] = self.totals["audio_seconds"] / 3600
        line["frames_seen"] = self.totals["frames"]
        line["model_flops_seen"] = self.totals["model_flops"]
        line["train_seconds"] = self.totals["train_seconds"]
        self._window_start = time.perf_counter()
        self._window_steps, self._window_audio_seconds, self._window_flops = 0, 0.0, 0.0
        if self.main:
            with open(os.path.join(self.workdir, METRICS_FILE), "a") as f:
                f.write(json.dumps({"step": step, "phase": phase, **line}) + "\n")
            self._events.scalars(step, {f"train/{k}": v for k, v in line.items()})
            self._events.flush()
            if self._bar is not None:
                self._bar.set_postfix(loss=f"{line.get('loss', float('nan')):.3f}", refresh=False)
        return line

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self._close_bar()
        if self._events is not None:
            self._events.close()
