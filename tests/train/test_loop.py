"""The training loop on the tiny corpus: phases run in order, and a resumed run is bitwise
identical to an uninterrupted one."""

from __future__ import annotations

import hashlib
import json

import jax
import numpy as np
import pytest

from fastvgs_jax.train import config as run_config
from fastvgs_jax.train import loop


def _config(data_dir):
    c = run_config.base_config("tiny", "tiny")
    c.data.data_dir = data_dir
    for kind in ("audio_image", "audio_only"):
        c.data[kind].batch_size = 8
        c.data[kind].crop_seconds = 1.0
        c.data[kind].min_seconds = 0.0
    c.data.read_threads = 1
    c.phases = run_config.study_phases("w2v2_vgs", 7)  # 2 SSL steps, then 5 VGS steps
    c.log_every = 1
    c.snapshot_every = 3
    c.eval_every = 100
    return c


def _digest(state) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves((state.params, state.batch_stats, state.opt_state)):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def uninterrupted(tiny_data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    state = loop.train(_config(tiny_data_dir), str(workdir))
    return workdir, state


def test_phases_run_in_order_with_their_objectives(uninterrupted):
    workdir, state = uninterrupted
    assert int(state.step) == 7
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [x["phase"] for x in lines] == ["w2v2"] * 2 + ["vgs"] * 5
    assert "contrastive" in lines[0] and "coarse" not in lines[0]
    assert "coarse" in lines[-1] and "contrastive" not in lines[-1]
    assert all(np.isfinite(x["loss"]) for x in lines)
    # One trace per phase step (SSL-only, then VGS-only), reused at every step.
    assert sorted(loop.TRACES.values()) == [1, 1], loop.TRACES
    # Phase ends are kept beside the rolling snapshots.
    kept = sorted(int(p.name) for p in (workdir / "snapshots").iterdir() if p.name.isdigit())
    assert {2, 7} <= set(kept)


def test_resumed_run_is_bitwise_identical(uninterrupted, tiny_data_dir, tmp_path):
    _, reference = uninterrupted
    config = _config(tiny_data_dir)
    first = loop.train(config, str(tmp_path), stop_after=4)  # mid-phase: snapshot at 3
    assert int(first.step) == 4
    resumed = loop.train(_config(tiny_data_dir), str(tmp_path))
    assert int(resumed.step) == 7
    assert _digest(resumed) == _digest(reference)


def test_bad_config_fails_before_anything_is_written(tiny_data_dir, tmp_path):
    config = _config(tiny_data_dir)
    config.phases[1].steps = 0
    with pytest.raises(ValueError, match="steps must be positive"):
        loop.train(config, str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()
