"""A run's workdir as the readers of finished runs see it (evaluation, the study): where the
snapshots and the manifest are, which snapshot a name means, and the model variables of one.

The trainer writes these (``train.snapshots``, ``train.manifest``); readers import only this
module, so evaluation never depends on the trainer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp

SNAPSHOT_DIR = "snapshots"
MANIFEST = "manifest.json"
# The model's variables: what evaluation reads and --init_from restores (never the
# optimiser state or the step).
MODEL_SUBTREES = ("params", "batch_stats")


class SnapshotError(RuntimeError):
    """No usable snapshot, or one that does not fit the model it should initialise."""


def snapshot_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), SNAPSHOT_DIR)


def snapshot_steps(workdir: str) -> list[int]:
    """The steps of the workdir's complete snapshots, oldest first (none: [])."""
    directory = snapshot_dir(workdir)
    return sorted(ocp.utils.checkpoint_steps(directory)) if os.path.isdir(directory) else []


class NewRun:
    """What ``removed_unless_started`` yields: call ``started()`` once the run has work worth
    keeping (its first step), after which a failure leaves the workdir in place."""

    def __init__(self) -> None:
        self.is_started = False

    def started(self) -> None:
        self.is_started = True


@contextlib.contextmanager
def removed_unless_started(workdir: str) -> Iterator[NewRun]:
    """Removes ``workdir`` when the block fails, if the block created it and neither started
    training (``NewRun.started``) nor wrote a snapshot: a failed start leaves no empty run
    behind. A workdir that existed before is never touched."""
    existed = os.path.lexists(workdir)
    run = NewRun()
    try:
        yield run
    except BaseException:
        if not existed and not run.is_started and not snapshot_steps(workdir):
            shutil.rmtree(workdir, ignore_errors=True)
        raise


def read_manifest(workdir: str) -> dict | None:
    """The workdir's manifest, or None when it has none."""
    path = os.path.join(workdir, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _snapshot_meta(directory: str, step: int) -> dict:
    with open(os.path.join(directory, str(step), "meta", "metadata")) as f:
        return json.load(f)


def resolve_snapshot(workdir: str, name: str | None = None) -> tuple[int, dict]:
    """``(step, meta)`` of a snapshot named by step number, by phase name (that phase's last
    snapshot: the one closing it, when the phase finished) or None/"latest" (the newest).

    Raises:
      SnapshotError: no snapshots, or none of that name (listing what there is).
    """
    directory = snapshot_dir(workdir)
    steps = snapshot_steps(workdir)
    if not steps:
        wanted = "" if name in (None, "latest") else f"no snapshot {name!r}: "
        raise SnapshotError(f"{wanted}no snapshots under {directory}")
    metas = {s: _snapshot_meta(directory, s) for s in steps}
    if name in (None, "latest"):
        return steps[-1], metas[steps[-1]]
    if name.isdigit() and int(name) in metas:
        return int(name), metas[int(name)]
    of_phase = [s for s in steps if metas[s].get("phase") == name]
    if of_phase:
        return of_phase[-1], metas[of_phase[-1]]
    have = ", ".join(f"{s} ({metas[s].get('phase')})" for s in steps)
    raise SnapshotError(f"no snapshot {name!r} under {directory}; have: {have}")


def load_variables(workdir: str, name: str | None = None) -> tuple[dict, int, dict]:
    """The model variables ``{"params", "batch_stats"}`` of a snapshot, as host numpy
    arrays, with its step and meta (for evaluation: no optimiser state is read)."""
    step, meta = resolve_snapshot(workdir, name)
    path = os.path.join(snapshot_dir(workdir), str(step), "state")
    saved = ocp.StandardCheckpointer().metadata(path).item_metadata.tree
    target = {k: saved[k] for k in MODEL_SUBTREES if k in saved}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    restored = ocp.PyTreeCheckpointer().restore(
        path,
        args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True),
    )
    variables = {k: restored.get(k, {}) for k in MODEL_SUBTREES}
    return variables, step, meta
