"""Orbax snapshots of a run: save (async, atomic, keep-N plus every phase end), restore the
newest readable one, and start a new run from a subtree of another run's snapshot.

A snapshot holds three items: ``state`` (the whole ``TrainState``: parameters, optimiser
state, step, PRNG key), ``data`` (the Grain iterator position) and ``meta`` (phase index and
name, JSON). Orbax writes each snapshot to a temporary directory and renames it when
complete, so a process killed during a save leaves no partial snapshot behind; a snapshot
damaged afterwards (a truncated file) fails to restore and the previous one is used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from fastvgs_jax.convert.mapping import ImportReport
from fastvgs_jax.workdir import (  # noqa: F401 - re-exported for the trainer's callers
    MODEL_SUBTREES,
    SNAPSHOT_DIR,
    SnapshotError,
    load_variables,
    resolve_snapshot,
    snapshot_dir,
    snapshot_steps,
)

log = logging.getLogger(__name__)


def make_manager(workdir: str, keep: int, kept_steps: Iterable[int]) -> ocp.CheckpointManager:
    """A manager keeping the latest ``keep`` snapshots plus those at ``kept_steps`` (phase
    ends: the handoff points between phases)."""
    policy = checkpoint_managers.AnyPreservationPolicy(
        [
            checkpoint_managers.LatestN(keep),
            checkpoint_managers.CustomSteps(sorted(kept_steps)),
        ]
    )
    return ocp.CheckpointManager(
        snapshot_dir(workdir),
        options=ocp.CheckpointManagerOptions(preservation_policy=policy, create=True),
    )


def save(manager: ocp.CheckpointManager, step: int, state, iterator, meta: dict) -> None:
    """Start an async save of ``state``, the iterator position and ``meta`` at ``step``."""
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(iterator),
            meta=ocp.args.JsonSave(meta),
        ),
    )


def restore_latest(manager: ocp.CheckpointManager, state) -> tuple[object, dict] | None:
    """The newest snapshot that restores, as ``(state, meta)``; None when there is none.

    ``state`` is the (abstract or freshly initialised) target whose shapes and shardings
    the restored arrays take. Unreadable snapshots are skipped with a warning naming them.
    """
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(state), meta=ocp.args.JsonRestore()
                ),
            )
            if int(restored["state"].step) != step:
                raise SnapshotError(f"it holds step {int(restored['state'].step)}")
        except Exception as error:  # noqa: BLE001 - any failure means: try the one before
            first_line = str(error).splitlines()[0][:300] if str(error) else ""
            log.warning(
                "snapshot %d in %s is unreadable (%s: %s); using the one before it",
                step,
                manager.directory,
                type(error).__name__,
                first_line,
            )
            continue
        return restored["state"], dict(restored["meta"])
    return None


def restore_data(manager: ocp.CheckpointManager, step: int, iterator) -> None:
    """Move ``iterator`` to the data position saved with snapshot ``step``."""
    try:
        manager.restore(
            step, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(iterator))
        )
    except Exception as error:
        raise SnapshotError(
            f"snapshot {step} in {manager.directory}: its data position does not restore "
            f"({type(error).__name__}: {error})"
        ) from error


def _path_name(path) -> str:
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
    return "/".join(parts)


def _flat(tree) -> dict[str, object]:
    return {_path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_init_from(source_workdir: str) -> int:
    """The newest snapshot step of ``--init_from``'s workdir (checked before any work).

    Raises:
      SnapshotError: the directory is missing or holds no snapshot.
    """
    if not os.path.isdir(source_workdir):
        raise SnapshotError(f"--init_from={source_workdir}: no such directory")
    steps = snapshot_steps(source_workdir)
    if not steps:
        directory = snapshot_dir(source_workdir)
        raise SnapshotError(f"--init_from={source_workdir}: no snapshots under {directory}")
    return steps[-1]


def init_from(
    source_workdir: str, state, subtrees: Iterable[str] = MODEL_SUBTREES
) -> tuple[object, ImportReport]:
    """``state`` with every array under ``subtrees`` that another run's newest snapshot also
    has (same path) taken from it; the rest keep their initial values.

    Raises:
      SnapshotError: no snapshot in ``source_workdir`` (``check_init_from``), or an array
        whose shape differs (naming the path and both shapes).
    """
    directory = snapshot_dir(source_workdir)
    step = check_init_from(source_workdir)
    path = os.path.join(directory, str(step), "state")
    saved = _flat(ocp.StandardCheckpointer().metadata(path).item_metadata.tree)
    subtrees = tuple(subtrees)
    ours = {
        k: v
        for k, v in _flat(state).items()
        if any(k == s or k.startswith(s + "/") for s in subtrees)
    }
    matched = sorted(set(ours) & set(saved))
    for name in matched:
        if tuple(saved[name].shape) != tuple(ours[name].shape):
            raise SnapshotError(
                f"--init_from={source_workdir} (step {step}): {name} has shape "
                f"{tuple(saved[name].shape)} there but {tuple(ours[name].shape)} in this model"
            )
    if not matched:
        raise SnapshotError(
            f"--init_from={source_workdir}: nothing under {subtrees} matches this model"
        )
    target = _nested({k: _abstract(ours[k]) for k in matched})
    restored = ocp.PyTreeCheckpointer().restore(
        path,
        args=ocp.args.PyTreeRestore(
            item=target,
            restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True,
        ),
    )
    values = _flat(restored)
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(state)
    new_leaves = [values.get(_path_name(p), leaf) for p, leaf in leaves_with_paths]
    report = ImportReport(
        restored=matched,
        kept_initial=sorted(set(ours) - set(saved)),
        unused_keys=sorted(
            k
            for k in set(saved) - set(ours)
            if any(k == s or k.startswith(s + "/") for s in subtrees)
        ),
    )
    log.info("initialised from %s step %d:\n%s", source_workdir, step, report.summary())
    return jax.tree_util.tree_unflatten(treedef, new_leaves), report


def _abstract(leaf) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(
        np.shape(leaf), leaf.dtype, sharding=getattr(leaf, "sharding", None)
    )


def _nested(flat: dict[str, object]) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        node = tree
        *parents, last = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree
