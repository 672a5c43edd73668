"""A run on two simulated hosts (two processes, gloo collectives) matches the one-process
run on the same 8-device mesh: same global batches, same losses, same parameters."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "train", "multiprocess_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(workdir) -> list[float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines]


def test_two_process_run_matches_the_one_process_run(uninterrupted, tiny_data_dir, tmp_path):
    reference_dir, reference, _ = uninterrupted
    port, out = str(_free_port()), str(tmp_path / "params.npz")
    env = dict(os.environ, PYTHONPATH=ROOT)
    workers = [
        subprocess.Popen(
            [sys.executable, WORKER, port, str(i), tiny_data_dir, str(tmp_path / "run"), out],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-3000:]
    np.testing.assert_allclose(_losses(tmp_path / "run"), _losses(reference_dir), rtol=1e-5)
    saved = np.load(out)
    for path, leaf in jax.tree_util.tree_flatten_with_path(reference.params)[0]:
        np.testing.assert_allclose(
            saved[jax.tree_util.keystr(path)], np.asarray(leaf), atol=1e-5, err_msg=str(path)
        )
