"""The run under evaluation: EvaluationError, its manifest and config, one snapshot's variables."""

from __future__ import annotations

import dataclasses

import ml_collections

from fastvgs_jax import workdir as workdir_lib


class EvaluationError(RuntimeError):
    """A run that cannot be evaluated as asked (no manifest, unknown task, no history)."""


@dataclasses.dataclass(frozen=True)
class LoadedRun:
    workdir: str
    config: ml_collections.ConfigDict  # the resolved run config from the manifest
    variables: dict  # {"params", "batch_stats"} as numpy arrays
    step: int
    phase: str | None
    requested: str  # the snapshot name asked for ("latest" when none)


def read_manifest(workdir: str) -> dict:
    """The workdir's ``manifest.json`` (EvaluationError naming the path when missing)."""
    manifest = workdir_lib.read_manifest(workdir)
    if manifest is None:
        raise EvaluationError(f"{workdir} is not a run directory: no {workdir_lib.MANIFEST}")
    return manifest


def run_config(workdir: str) -> ml_collections.ConfigDict:
    """The run config recorded in the manifest (tuples come back as lists; every reader of
    these fields converts with ``tuple(...)``)."""
    return ml_collections.ConfigDict(read_manifest(workdir)["config"])


def load_run(workdir: str, snapshot: str | int | None = None) -> LoadedRun:
    """Config and model variables of one snapshot (a step, a phase name, or None = latest).

    Raises:
      EvaluationError: no manifest. workdir_lib.SnapshotError: no such snapshot (listing those
        there are).
    """
    config = run_config(workdir)
    name = None if snapshot is None else str(snapshot)
    variables, step, meta = workdir_lib.load_variables(workdir, name)
    return LoadedRun(workdir, config, variables, step, meta.get("phase"), name or "latest")
