"""Shared fixtures: one tiny corpus per test session, built with the real generator."""

from __future__ import annotations

import os
import sys
import tempfile

# Simulated devices must be configured before JAX starts a backend. Backend optimisation
# level 0 compiles the tiny test models ~3x faster; their run time is negligible either way.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
)

# One persistent compilation cache for the session, shared with the subprocesses the tests
# start (kill-and-resume, multi-process): a restarted run reuses the compiled steps.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="fastvgs-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest  # noqa: E402
from absl import flags  # noqa: E402

# Grain's multiprocessing reads absl flags; outside absl.app they must be parsed once.
flags.FLAGS(sys.argv[:1], known_only=True)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """A data dir holding spoken_scenes/tiny (seed 0), built once for the whole session."""
    from fastvgs_jax.data.build import ensure_built

    data_dir = str(tmp_path_factory.mktemp("data"))
    ensure_built(data_dir, "tiny", seed=0)
    return data_dir


@pytest.fixture(scope="session")
def uninterrupted(tiny_data_dir, tmp_path_factory):
    """The reference tiny run: (W2V2, VGS), 2 + 5 steps, never interrupted."""
    from fastvgs_jax.train import loop
    from tests.train.conftest import tiny_run_config

    workdir = tmp_path_factory.mktemp("run")
    calls = []
    state = loop.train(
        tiny_run_config(tiny_data_dir),
        str(workdir),
        eval_hook=lambda state, step, phase: calls.append((step, phase)),
    )
    return workdir, state, calls


@pytest.fixture(scope="session")
def tiny_study(tiny_data_dir, tmp_path_factory):
    """A finished two-model study ((W2V2, VGS) and VGS, 7 steps, the reference run's
    template, history every 3 steps): for the study, evaluation and notebook tests."""
    import configs.study
    from fastvgs_jax import study
    from tests.train.conftest import tiny_run_config

    settings = configs.study.get_config("quick")
    settings.out = str(tmp_path_factory.mktemp("study"))
    settings.models = "w2v2_vgs,vgs"
    settings.steps = 7
    settings.progress = False
    settings.run = tiny_run_config(tiny_data_dir)
    settings.image_tower.enabled = False  # the reference run's ViT image side
    settings.temperature_anneal_share = None  # keep the reference run's temperature schedule
    settings.history.points = None  # the run's own eval_every below
    settings.run.eval_every = 3
    settings.history.num_images = 4
    settings.history.num_abx_utterances = 4
    results = study.run_study(settings)
    return settings, results


@pytest.hookimpl(tryfirst=True)  # xdist's own hook turns the mark into the node id after it
def pytest_collection_modifyitems(items):
    """Under pytest-xdist, every test that needs the session's tiny study (directly or through
    another fixture) runs on one worker, which builds the study once."""
    for item in items:
        if "tiny_study" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("tiny_study"))
