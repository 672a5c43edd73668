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
