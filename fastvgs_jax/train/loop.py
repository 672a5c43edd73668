"""The training loop: phases in order, one jitted step per batch kind, Orbax snapshots,
resume from the latest snapshot of the workdir.

Stages (top to bottom): validate config → mesh → model and optimiser → restore or init →
per phase: data stream, jitted steps → steps with logging → snapshot at phase end.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Callable

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from fastvgs_jax.data import pipelines
from fastvgs_jax.models import fastvgs, sharding, speech
from fastvgs_jax.train import optimizer as optimizer_lib
from fastvgs_jax.train import phases as phases_lib
from fastvgs_jax.train.step import TrainState, init_state, make_train_step, state_shardings

log = logging.getLogger(__name__)

# Batch entries that go to the device (the rest, e.g. the "kind" tag, stay on the host).
DEVICE_KEYS = ("audio", "frame_mask", "image", "image_id")
TRACES: dict = {}  # traces of every step _jitted_step built (tests check for retraces)


class NonFiniteError(FloatingPointError):
    """A non-finite loss or gradient; no snapshot of the bad state is written."""


def resolve_mesh_shape(shape, num_devices: int) -> tuple[int, int, int]:
    shape = list(shape)
    if shape.count(-1) > 1:
        raise ValueError(f"mesh_shape {tuple(shape)}: at most one -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
        raise ValueError(f"mesh_shape {tuple(shape)} does not use the {num_devices} devices")
    return tuple(shape)


def prepare(config: ml_collections.ConfigDict) -> list[phases_lib.Phase]:
    """Validate everything before anything is compiled or written; align data with model."""
    fastvgs.check_model_config(config.model)
    plan = phases_lib.phases_from_config(config)
    geometry = speech.frame_geometry(config.model)
    config.data.frame_kernels = geometry.kernels
    config.data.frame_strides = geometry.strides
    if config.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision={config.precision!r}; expected 'fp32' or 'bf16'")
    if config.nonfinite not in ("stop", "skip"):
        raise ValueError(f"nonfinite={config.nonfinite!r}; expected 'stop' or 'skip'")
    return plan


def _device_batch(batch: dict, mesh) -> dict:
    out = {}
    for key in DEVICE_KEYS:
        if key in batch:
            value = np.asarray(batch[key])
            out[key] = jax.make_array_from_process_local_data(
                sharding.batch_sharding(mesh, value.ndim), value
            )
    return out


def _snapshot_args(state: TrainState, iterator, meta: dict):
    return ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(iterator),
        meta=ocp.args.JsonSave(meta),
    )


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    eval_hook: Callable[[TrainState, int, str], None] | None = None,
    stop_after: int | None = None,
) -> TrainState:
    """Run (or resume) every phase of ``config`` in ``workdir``; returns the final state.

    ``stop_after`` ends the process's work after that many global steps (tests, budgets);
    the run resumes from its snapshots when called again.
    """
    plan = prepare(config)
    os.makedirs(workdir, exist_ok=True)
    mesh = sharding.make_mesh(resolve_mesh_shape(config.mesh_shape, jax.device_count()))
    dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
    model = fastvgs.FaSTVGSPlus(config.model, dtype=dtype)
    schedule_lengths = phases_lib.schedule_lengths(plan)
    manager = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "snapshots"),
        options=ocp.CheckpointManagerOptions(
            # The latest N, plus the snapshot that closes every phase (the handoff points).
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(
                [
                    checkpoint_managers.LatestN(config.keep_snapshots),
                    checkpoint_managers.CustomSteps(sorted(_phase_ends(plan))),
                ]
            ),
            create=True,
        ),
    )
    total = sum(p.steps for p in plan)
    base_key = jax.random.key(config.seed, impl=config.prng_impl)

    latest = manager.latest_step()
    start_step = 0 if latest is None else int(latest)
    phase_index, _ = phases_lib.locate(plan, start_step)
    state = None
    while phase_index < len(plan):
        phase = plan[phase_index]
        phase_start = sum(p.steps for p in plan[:phase_index])
        tx, schedule = optimizer_lib.make_optimizer(config.optimizer, schedule_lengths[phase_index])
        iterator = iter(pipelines.mixed_stream_from_config(config.data, dict(phase.mix)))
        if state is None:
            state = init_state(model, tx, base_key, mesh)
            if latest is not None:
                state, iterator = _restore(manager, latest, state, iterator, phase_index)
        if phase.reset_optimizer and int(state.step) == phase_start:
            state = state.replace(opt_state=jax.jit(tx.init)(state.params))
        # The layout the jitted steps produce, so their inputs never differ from it.
        state = jax.device_put(state, state_shardings(model, tx, mesh, base_key))
        steps = {}
        for kind, _ in phase.mix:
            ssl, vgs = phase.needs(kind)
            steps[kind] = _jitted_step(
                config.model.to_json(),
                config.precision,
                config.optimizer.to_json(),
                schedule_lengths[phase_index],
                ssl,
                vgs,
                config.nonfinite == "skip",
                mesh,
                config.prng_impl,
            )
        with jax.set_mesh(mesh):
            while int(state.step) < phase_start + phase.steps:
                global_step = int(state.step)
                if stop_after is not None and global_step >= stop_after:
                    manager.wait_until_finished()
                    return state
                batch = next(iterator)
                kind = str(batch["kind"])
                coarse_w, ssl_w = phase.loss_weights(global_step - phase_start, kind)
                state, metrics = steps[kind](state, _device_batch(batch, mesh), coarse_w, ssl_w)
                if not bool(metrics["finite"]) and config.nonfinite == "stop":
                    bad = [k for k, v in metrics.items() if not np.all(np.isfinite(v))]
                    manager.wait_until_finished()
                    raise NonFiniteError(
                        f"step {global_step} ({phase.name}): non-finite {', '.join(bad)}"
                    )
                done = int(state.step)
                if done % config.log_every == 0 or done == total:
                    line = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
                    line.update(step=done, phase=phase.name, lr=float(schedule(done - phase_start)))
                    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
                        f.write(json.dumps(line) + "\n")
                phase_end = done == phase_start + phase.steps
                if done % config.snapshot_every == 0 or phase_end:
                    meta = {"phase_index": phase_index, "phase": phase.name, "step": done}
                    manager.save(done, args=_snapshot_args(state, iterator, meta))
                if eval_hook is not None and (done % config.eval_every == 0 or phase_end):
                    eval_hook(state, done, phase.name)
        phase_index += 1
    manager.wait_until_finished()
    return state


def _restore(manager, step: int, state: TrainState, iterator, phase_index: int):
    """The snapshot's state, and the data position when it was taken inside this phase (a
    phase-end snapshot belongs to the previous phase's data mix: this phase starts afresh)."""
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    if meta["phase_index"] == phase_index:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(state),
                data=grain.checkpoint.CheckpointRestore(iterator),
            ),
        )
    else:
        restored = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(state))
        )
    log.info("resumed from snapshot %d (%s)", step, meta["phase"])
    return restored["state"], iterator


@functools.lru_cache(maxsize=32)
def _jitted_step(
    model_json, precision, optimizer_json, schedule_length, ssl, vgs, skip, mesh, prng_impl
):
    """One jitted step per (architecture, optimiser, schedule, heads, mesh): a resumed or
    repeated run in the same process reuses the compiled executable. The state keeps its
    shardings from step to step (``out_shardings``), so the step never recompiles."""
    model = fastvgs.FaSTVGSPlus(
        ml_collections.ConfigDict(json.loads(model_json)),
        dtype=jnp.bfloat16 if precision == "bf16" else jnp.float32,
    )
    optimizer_config = ml_collections.ConfigDict(json.loads(optimizer_json))
    tx, _ = optimizer_lib.make_optimizer(optimizer_config, schedule_length)
    shardings = state_shardings(model, tx, mesh, jax.random.key(0, impl=prng_impl))
    step = make_train_step(model, tx, ssl=ssl, vgs=vgs, skip_nonfinite=skip)
    key = (model_json, optimizer_json, schedule_length, ssl, vgs, skip)
    TRACES[key] = 0

    def counted_step(*args):
        TRACES[key] += 1  # runs once per trace, not per call
        return step(*args)

    return jax.jit(counted_step, out_shardings=(shardings, None), donate_argnums=0)


def _phase_ends(plan) -> set[int]:
    ends, total = set(), 0
    for p in plan:
        total += p.steps
        ends.add(total)
    return ends
