"""A mistake on a launcher's command line ends with one ``error: …`` line on stderr and exit
status 2, no traceback, and a failed start leaves no workdir behind (fastvgs_jax/cli.py).

Each case is one launcher subprocess that fails before anything is built or compiled."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fastvgs_jax import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "--config=configs/w2v2_vgs.py:tiny,tiny,70"


def _fails(launcher: str, *args: str, **environ: str) -> str:
    """Runs ``launch/LAUNCHER.py ARGS`` and returns its error line, checking the contract."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **environ}
    env.pop("FASTVGS_VERBOSE", None)
    done = subprocess.run(
        [sys.executable, os.path.join("launch", f"{launcher}.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=180,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: "), done.stderr[-3000:]
    return last


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--config.optimizer.learnin_rate=1e-3"],
            ["--config.optimizer.learnin_rate", "did you mean 'optimizer.learning_rate'"],
        ),
        (["--init_from=runs/does_not_exist"], ["--init_from=runs/does_not_exist"]),
    ],
    ids=["mistyped-key", "missing-init-from"],
)
def test_train_mistakes_leave_no_workdir(tmp_path, args, expected):
    workdir = tmp_path / "run"
    line = _fails("train", TINY, f"--workdir={workdir}", *args)
    for text in expected:
        assert text in line, line
    assert not workdir.exists()


def test_an_unknown_host_memory_mode_is_named(tmp_path):
    line = _fails("train", TINY, f"--workdir={tmp_path}/r", FASTVGS_HOST_MEMORY="huge")
    assert "'huge'" in line and "keep" in line, line
    assert not (tmp_path / "r").exists()


def test_train_with_zero_steps_names_the_config_argument(tmp_path):
    line = _fails("train", "--config=configs/w2v2_vgs.py:tiny,tiny,0", f"--workdir={tmp_path}/r")
    assert "--config=configs/w2v2_vgs.py:tiny,tiny,0" in line and "STEPS=0" in line, line
    assert "at least 2 steps" in line, line
    assert not (tmp_path / "r").exists()


def test_a_workdir_that_existed_is_kept(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("mine")
    line = _fails("train", TINY, f"--workdir={workdir}", f"--init_from={tmp_path}/none")
    assert "--init_from" in line and "no such directory" in line, line
    assert (workdir / "notes.txt").read_text() == "mine"


def _fake_run(workdir, snapshots: dict[int, str]) -> None:
    """A run directory as evaluation reads it: manifest and snapshot metadata, no arrays."""
    import configs.w2v2_vgs  # noqa: PLC0415

    os.makedirs(workdir)
    config = configs.w2v2_vgs.get_config("tiny,tiny,7").to_dict()
    with open(os.path.join(workdir, workdir_lib.MANIFEST), "w") as f:
        json.dump({"config": config}, f, default=list)
    for step, phase in snapshots.items():
        meta = os.path.join(workdir_lib.snapshot_dir(str(workdir)), str(step), "meta")
        os.makedirs(meta)
        with open(os.path.join(meta, "metadata"), "w") as f:
            json.dump({"phase": phase, "step": step}, f)


@pytest.mark.parametrize(
    ("snapshots", "expected"),
    [({2: "w2v2"}, "no snapshot 'nonexistent'"), ({}, "no snapshots under")],
    ids=["unknown-snapshot", "no-snapshots"],
)
def test_evaluate_names_the_snapshot(tmp_path, snapshots, expected):
    workdir = tmp_path / "run"
    _fake_run(workdir, snapshots)
    line = _fails("evaluate", f"--workdir={workdir}", "--snapshot=nonexistent")
    assert expected in line, line
    if snapshots:
        assert "have: 2 (w2v2)" in line, line


def test_study_with_zero_steps(tmp_path):
    line = _fails("study", "--steps=0", f"--out={tmp_path}/study")
    assert "steps=0" in line and "at least 2 steps" in line, line
    assert not (tmp_path / "study").exists()


def test_a_failed_start_removes_only_the_workdir_it_created(tmp_path):
    """The guard loop.train runs in (no launcher: plain files)."""
    new, existing, started = tmp_path / "new", tmp_path / "existing", tmp_path / "started"
    existing.mkdir()
    for path in (new, existing, started):
        with pytest.raises(KeyError), workdir_lib.removed_unless_started(str(path)) as run:
            os.makedirs(path, exist_ok=True)
            (path / "manifest.json").write_text("{}")
            if path == started:
                run.started()
            raise KeyError("boom")
    assert not new.exists()
    assert (existing / "manifest.json").exists() and (started / "manifest.json").exists()
