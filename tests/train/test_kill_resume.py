"""Exact resume after SIGKILL: a run killed at the phase switch, during a snapshot save and at
a random step, restarted each time with the same command, ends bitwise identical to an
uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

from fastvgs_jax.train.step import state_digest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _command(data_dir: str, workdir: str) -> list[str]:
    """launch/train.py with the overrides that make it tests.train.test_loop.tiny_run_config."""
    overrides = {
        "data.data_dir": data_dir,
        "data.read_threads": 1,
        "log_every": 1,
        "snapshot_every": 3,
        "eval_every": 100,
        "progress": False,
    }
    for kind in ("audio_image", "audio_only"):
        overrides[f"data.{kind}.batch_size"] = 8
        overrides[f"data.{kind}.crop_seconds"] = 1.0
        overrides[f"data.{kind}.min_seconds"] = 0.0
    return [
        sys.executable,
        os.path.join(ROOT, "launch", "train.py"),
        "--config=" + os.path.join(ROOT, "configs", "w2v2_vgs.py") + ":tiny,tiny,7",
        f"--workdir={workdir}",
        "--noeval_history",
        *(f"--config.{k}={v}" for k, v in overrides.items()),
    ]


def _steps_logged(workdir: str) -> int:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = [json.loads(x) for x in f.read().splitlines() if x.endswith("}")]
    return max((x["step"] for x in lines), default=0)


def _saving(workdir: str) -> bool:
    snaps = os.path.join(workdir, "snapshots")
    return os.path.isdir(snaps) and any("tmp" in name for name in os.listdir(snaps))


def _run_until(command, env, condition, timeout: float = 300.0) -> bool:
    """Start the run; SIGKILL it as soon as ``condition()`` holds. True if it was killed."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if condition():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.001)
    assert process.poll() is not None, "the run did not finish in time"
    return False


def test_runs_killed_anywhere_resume_bitwise_identical(uninterrupted, tiny_data_dir, tmp_path):
    _, reference, _ = uninterrupted
    workdir = str(tmp_path / "run")
    command = _command(tiny_data_dir, workdir)
    # conftest's compilation cache: restarts reuse the compiled steps (same executables).
    env = dict(os.environ, PYTHONPATH=ROOT)
    kill_at = random.Random().randint(4, 6)
    kills = [
        lambda: _steps_logged(workdir) >= 2,  # right at the switch from w2v2 to vgs
        lambda: _steps_logged(workdir) >= 3 and _saving(workdir),  # during the save at 3 or 6
        lambda: _steps_logged(workdir) >= kill_at,
    ]
    for number, condition in enumerate(kills):
        assert _run_until(command, env, condition), f"kill {number} came too late"
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    digest = re.search(r"state sha256 ([0-9a-f]{64})", final.stdout)
    assert digest, final.stdout[-3000:] + final.stderr[-3000:]
    assert digest.group(1) == state_digest(reference), f"killed at 2, in a save, at {kill_at}"
