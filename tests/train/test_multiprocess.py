"""A run on two simulated hosts (launch/train.py twice, --coordinator_address on 127.0.0.1,
gloo collectives) matches the one-process run on the same 8-device mesh: same global
batches, same losses, same parameters."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess

import jax
import numpy as np
import pytest

from fastvgs_jax.train import distributed, snapshots
from tests.train.test_kill_resume import _command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(workdir) -> list[float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines]


def test_two_process_launch_matches_the_one_process_run(uninterrupted, tiny_data_dir, tmp_path):
    reference_dir, reference, _ = uninterrupted
    port, workdir = _free_port(), tmp_path / "run"
    # 4 CPU devices per process: the two make the 8-device mesh of the 1-process reference.
    xla = "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
    env = dict(os.environ, XLA_FLAGS=xla, JAX_PLATFORMS="cpu")
    logs = [tmp_path / f"process{i}.log" for i in range(2)]
    with contextlib.ExitStack() as files:
        # stderr to files, not pipes: neither process can block on a full pipe.
        errors = [files.enter_context(open(log, "w")) for log in logs]
        workers = [
            subprocess.Popen(
                [
                    *_command(tiny_data_dir, str(workdir)),
                    f"--coordinator_address=127.0.0.1:{port}",
                    "--num_processes=2",
                    f"--process_id={i}",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=errors[i],
            )
            for i in range(2)
        ]
        try:
            for w, log in zip(workers, logs, strict=True):
                w.wait(timeout=600)
                assert w.returncode == 0, log.read_text()[-3000:]
        finally:
            for w in workers:  # one failed: do not leave its peer waiting for it
                w.kill()
                w.wait()
    np.testing.assert_allclose(_losses(workdir), _losses(reference_dir), rtol=1e-5)
    variables, step, _ = snapshots.load_variables(str(workdir))
    assert step == 7
    for path, leaf in jax.tree_util.tree_flatten_with_path(reference.params)[0]:
        node = variables["params"]
        for key in path:
            node = node[key.key]
        np.testing.assert_allclose(node, np.asarray(leaf), atol=1e-5, err_msg=str(path))


def test_partial_multihost_settings_are_refused():
    with pytest.raises(ValueError, match="or none"):
        distributed.initialize("127.0.0.1:1234", num_processes=2)
    with pytest.raises(ValueError, match=r"not in \[0, 2\)"):
        distributed.initialize("127.0.0.1:1234", num_processes=2, process_id=2)
