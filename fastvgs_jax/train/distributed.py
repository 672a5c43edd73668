"""Joining a multi-process (multi-host) run: one process per host, every process running the
same command, before JAX starts a backend.

On Cloud TPU pods (and under SLURM or Open MPI) JAX finds the coordinator, the process count
and this process's index itself; elsewhere (GPU hosts, or several CPU processes simulating
hosts) they are given explicitly.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from fastvgs_jax.data import build


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins this process to the run; every later global array spans all processes' devices.

    Args:
      coordinator_address: ``host:port`` of process 0; None: detected (TPU pod, SLURM, MPI).
      num_processes: processes in the run; None: detected.
      process_id: this process's index in ``[0, num_processes)``; None: detected.

    Raises:
      ValueError: only some of the three are given, or ``process_id`` is out of range.
    """
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            "give all of coordinator_address, num_processes and process_id, or none "
            "(detected on TPU pods, SLURM and Open MPI)"
        )
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id {process_id} is not in [0, {num_processes})")
    # Cross-process collectives on the CPU backend (simulated hosts): gloo unless the user
    # chose another (e.g. JAX_CPU_COLLECTIVES_IMPLEMENTATION=mpi); TPU and GPU ignore it.
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def ensure_corpus(data_dir: str, preset: str, seed: int) -> None:
    """Builds the corpus if missing: in a multi-process run only process 0 builds (the others
    wait for it), so processes sharing a disk do not race; each then needs the build.

    Raises:
      FileNotFoundError: a process other than 0 does not see the build (hosts with disks of
        their own: build on each first, ``python launch/build_corpus.py``).
      RuntimeError: on the other processes, when process 0's build failed (process 0 raises
        the build's own error).
    """
    if jax.process_count() == 1:
        build.ensure_built(data_dir, preset, seed=seed)
        return
    failure = None
    if jax.process_index() == 0:
        try:
            build.ensure_built(data_dir, preset, seed=seed)
        except Exception as error:  # every process must hear of it, not wait for process 0
            failure = error
    built_on_0 = multihost_utils.broadcast_one_to_all(np.int32(failure is None))
    if failure is not None:
        raise failure
    if not built_on_0:
        raise RuntimeError(f"process 0 failed to build spoken_scenes/{preset} under {data_dir}")
    if not build.is_built(data_dir, preset, seed=seed):
        raise FileNotFoundError(
            f"process {jax.process_index()}: no built spoken_scenes/{preset} under {data_dir} "
            "(process 0 built it on its own disk); build it on every host first with "
            f"`python launch/build_corpus.py --size {preset} --seed {seed} --data_dir "
            f"{data_dir}`, or put data_dir on a disk they share"
        )
