"""The launch commands a sweep emits for a cluster (SLURM, TPU VM, plain hosts), checked for
a two-host example, the configs they load, and the launcher that writes them."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

import configs.resolved
from fastvgs_jax.sweep import emit, plan
from tests.test_sweep import ROOT, _settings

# --- Emitted commands for a two-host example -----------------------------------------------


def _train_lines(lines):
    return [shlex.split(line) for line in lines if "launch/train.py" in line]


def _flag(argv, name):
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    return values[0] if values else None


def test_emitted_slurm_jobs_span_two_hosts_with_one_process_each(tmp_path):
    settings = _settings(tmp_path)
    settings.cluster.slurm.partition = "gpu"
    settings.cluster.setup = "source .venv/bin/activate"
    files = emit.files(settings, "slurm", hosts=2)
    specs = plan.expand(settings)
    assert set(files) == {
        "slurm/prepare.sbatch",
        "slurm/collect.sbatch",
        "slurm/submit.sh",
        *(f"slurm/{s.name}.sbatch" for s in specs),
    }
    for spec in specs:
        lines = files[f"slurm/{spec.name}.sbatch"].splitlines()
        assert "#SBATCH --nodes=2" in lines and "#SBATCH --ntasks-per-node=1" in lines
        assert "#SBATCH --partition=gpu" in lines and "#SBATCH --gpus-per-node=8" in lines
        assert "source .venv/bin/activate" in lines
        (argv,) = _train_lines(lines)
        assert argv[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "python"]
        assert argv[5] == "launch/train.py" and "--multihost" in argv
        assert _flag(argv, "workdir") == plan.run_dir(settings.out, spec.name)
        assert (
            _flag(argv, "config") == f"configs/resolved.py:{emit.config_path(settings, spec.name)}"
        )
    prepare = files["slurm/prepare.sbatch"].splitlines()
    assert "#SBATCH --nodes=1" in prepare and "--stage=prepare" in prepare[-1]
    submit = files["slurm/submit.sh"]
    assert submit.count("--dependency=afterok:$prepare") == len(specs)
    assert "sbatch --dependency=afterany:$ids collect.sbatch" in submit
    # One host: no --multihost, one task.
    (argv,) = _train_lines(
        emit.files(settings, "slurm", 1)[f"slurm/{specs[0].name}.sbatch"].splitlines()
    )
    assert "--ntasks=1" in argv and "--multihost" not in argv


def test_emitted_tpu_vm_lines_run_each_run_on_every_worker(tmp_path):
    settings = _settings(tmp_path)
    settings.cluster.tpu_vm.name, settings.cluster.tpu_vm.zone = "pod", "europe-west4-a"
    script = emit.files(settings, "tpu_vm", hosts=2)["tpu_vm.sh"]
    lines = [shlex.split(line) for line in script.splitlines() if line.startswith("gcloud")]
    ssh = [argv for argv in lines if argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]]
    assert [argv for argv in lines if "scp" in argv][0][-1] == "--worker=all"
    runs = [argv for argv in ssh if "launch/train.py" in _flag(argv, "command")]
    assert len(runs) == len(plan.expand(settings))
    for argv, spec in zip(runs, plan.expand(settings), strict=True):
        assert argv[5] == "pod" and "--zone=europe-west4-a" in argv
        assert _flag(argv, "worker") == "all"
        remote = shlex.split(_flag(argv, "command").split(" && ")[-1])
        assert remote[:2] == ["python", "launch/train.py"] and "--multihost" in remote
        assert _flag(remote, "workdir") == plan.run_dir(settings.out, spec.name)
    assert "--stage=prepare" in _flag(ssh[1], "command") and _flag(ssh[1], "worker") == "all"
    assert "--stage=collect" in _flag(ssh[-1], "command") and _flag(ssh[-1], "worker") == "0"


def test_emitted_shell_scripts_give_each_host_its_process_id(tmp_path):
    settings = _settings(tmp_path)
    files = emit.files(settings, "shell", hosts=2)
    assert set(files) == {"shell/host0.sh", "shell/host1.sh"}
    specs = plan.expand(settings)
    for index in (0, 1):
        text = files[f"shell/host{index}.sh"]
        runs = _train_lines(text.splitlines())
        assert len(runs) == len(specs)
        for argv in runs:
            assert _flag(argv, "num_processes") == "2" and _flag(argv, "process_id") == str(index)
            assert _flag(argv, "coordinator_address") == "${COORDINATOR:-localhost:8476}"
            assert "--multihost" not in argv
        assert ("--stage=collect" in text) == (index == 0)
    # The coordinator stays a shell expansion: bash gives the default without COORDINATOR.
    line = next(ln for ln in files["shell/host1.sh"].splitlines() if "launch/train.py" in ln)
    expanded = subprocess.run(
        ["bash", "-c", "printf '%s\\n' " + line.split(" ", 2)[2]],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout.split()
    assert "--coordinator_address=localhost:8476" in expanded


def test_emission_refuses_hosts_that_do_not_split_the_batch(tmp_path):
    with pytest.raises(ValueError, match="batch_size=8 does not split over 3 hosts"):
        emit.files(_settings(tmp_path), "slurm", hosts=3)


def test_written_configs_give_the_runs_configs_back(tmp_path):
    settings = _settings(tmp_path, sizes="xs")
    paths = emit.write(settings, "shell", hosts=1)
    assert paths == [os.path.join(settings.out, "emit", "shell", "host0.sh")]
    loaded = configs.resolved.get_config(emit.settings_path(settings))
    for spec in plan.expand(settings):
        expected = plan.run_config_of(settings, spec).to_json()
        from_file = configs.resolved.get_config(emit.config_path(settings, spec.name))
        assert from_file.to_json() == expected
        assert plan.run_config_of(loaded, spec).to_json() == expected
        assert type(from_file.phases) is list and type(from_file.model.cnn.kernels) is tuple


def test_launcher_prints_the_plan_and_writes_the_scripts(tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run(
        [
            sys.executable,
            "launch/sweep.py",
            "--config=configs/sweep.py:tiny",
            "--dry_run",
            "--emit=slurm",
            "--hosts=2",
            f"--out={out}",
            "--config.sizes=xs",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "xs-frac1-steps30-w2v2_vgs-seed0" in done.stdout
    paths = [line for line in done.stdout.splitlines() if line.startswith(str(out))]
    assert paths[0] == str(out / "emit" / "slurm" / "submit.sh") and len(paths) == 5
    sbatch = (out / "emit" / "slurm" / "xs-frac1-steps60-w2v2_vgs-seed0.sbatch").read_text()
    assert "--multihost" in sbatch and "#SBATCH --nodes=2" in sbatch
