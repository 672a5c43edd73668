"""The training loop: phases in order, one jitted step per batch kind, Orbax snapshots,
resume from the newest readable snapshot of the workdir.

Stages (top to bottom): validate config → mesh → model and optimiser → init in shards →
restore (or ``init_from``) → manifest → per phase: data stream (restored position),
optimiser reset, jitted steps → steps with metrics, snapshots and the evaluation hook.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fastvgs_jax import workdir as workdir_lib
from fastvgs_jax.data import pipelines
from fastvgs_jax.data.corpora import registry
from fastvgs_jax.models import fastvgs, sharding, speech
from fastvgs_jax.train import image_tower, manifest, performance, reporting, snapshots
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


def epoch_steps(data_config: ml_collections.ConfigDict, kind: str, epochs: float) -> int:
    """Steps for ``epochs`` passes over stream ``kind`` (global batches; the built split's
    size, after the minimum-length filter)."""
    size = pipelines.stream_size(data_config, kind)
    spec = pipelines.stream_spec(data_config, kind)
    return max(1, math.ceil(epochs * size / spec.batch_size))


# What the image encoder (model.image.kind) reads for each image side of a real corpus
# (data.image.kind): decoded pixels, or stored per-image vectors (detector regions, or the
# cached tokens of a frozen pretrained ViT) read as regions.
IMAGE_ENCODERS = {"pixels": ("vit", "cnn"), "regions": ("regions",), "vit": ("regions",)}


def align_image_side(config: ml_collections.ConfigDict) -> None:
    """Checks that the model's image encoder reads what the audio-image corpus supplies, and
    sizes the ViT's position table for a real corpus's pixels (data.image.size).

    Raises:
      ValueError: naming both fields when they disagree.
    """
    corpus, _ = registry.role_config(config.data, "audio_image")
    if corpus == registry.EMBEDDED:
        return
    supplied = str(config.data.image.kind)
    if supplied not in IMAGE_ENCODERS:
        raise ValueError(f"data.image.kind={supplied!r}; expected one of {tuple(IMAGE_ENCODERS)}")
    if config.model.image.kind not in IMAGE_ENCODERS[supplied]:
        raise ValueError(
            f"data.image.kind={supplied!r} (from {corpus}) needs model.image.kind in "
            f"{IMAGE_ENCODERS[supplied]}, not {config.model.image.kind!r}"
        )
    if supplied == "pixels":
        config.model.image.image_size = int(config.data.image.size)
    if supplied == "vit":  # the cached embeddings' shape, from the checkpoint's config.json
        from fastvgs_jax.data.corpora import image_embeddings

        shape = image_embeddings.embedding_shape(config.data)
        model_shape = (int(config.model.image.num_regions), int(config.model.image.region_dim))
        if shape != model_shape:
            raise ValueError(
                f"data.image.kind='vit' gives {shape[0]} vectors of width {shape[1]} per image "
                f"(data.image.vit_tokens={config.data.image.vit_tokens!r}); set "
                f"model.image.num_regions={shape[0]} and model.image.region_dim={shape[1]}"
            )


def prepare(
    config: ml_collections.ConfigDict,
    resolve_epochs: bool = False,
    *,
    workdir: str | None = None,
    init_from: str | None = None,
) -> list[phases_lib.Phase]:
    """Validate everything before anything is compiled or written; align data with model.

    ``resolve_epochs`` turns phases given in epochs into steps (reads the built corpus);
    without it they are only validated. With ``init_from``, a run starting afresh in
    ``workdir`` (no snapshots there) checks that the other run has a snapshot.
    """
    if init_from and not (workdir and workdir_lib.snapshot_steps(workdir)):
        snapshots.check_init_from(init_from)
    fastvgs.check_model_config(config.model)
    geometry = speech.frame_geometry(config.model)
    config.data.frame_kernels = geometry.kernels
    config.data.frame_strides = geometry.strides
    align_image_side(config)
    resolver = functools.partial(epoch_steps, config.data) if resolve_epochs else None
    plan = phases_lib.phases_from_config(config, resolver)
    if config.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision={config.precision!r}; expected 'fp32' or 'bf16'")
    if config.nonfinite not in ("stop", "skip"):
        raise ValueError(f"nonfinite={config.nonfinite!r}; expected 'stop' or 'skip'")
    tower = config.get("image_tower_init")
    if (tower or config.model.image.get("cnn_frozen")) and config.model.image.kind != "cnn":
        what = f"image_tower_init={tower!r}" if tower else "model.image.cnn_frozen"
        raise ValueError(f"{what} needs model.image.kind='cnn', not {config.model.image.kind!r}")
    if tower and not os.path.exists(tower):
        raise image_tower.ImageTowerError(
            f"image_tower_init={tower}: no such file (launch/pretrain_image_tower.py trains "
            "one; the study trains its own)"
        )
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


def _phase_starts(plan) -> list[int]:
    starts, total = [], 0
    for p in plan:
        starts.append(total)
        total += p.steps
    return starts


def _phase_optimizer(optimizer: ml_collections.ConfigDict, phase) -> ml_collections.ConfigDict:
    """The optimiser section with the phase's own peak lr, if it sets one (the compiled step
    does not depend on it: the lr is a step input)."""
    if phase.learning_rate is None:
        return optimizer
    optimizer = copy.deepcopy(optimizer)
    optimizer.learning_rate = phase.learning_rate
    return optimizer


def _schedule_starts(plan, phase_starts) -> list[int]:
    """Per phase: the global step its lr schedule counts from (phases that keep the
    optimiser continue the schedule of the phase before)."""
    out = []
    for i, p in enumerate(plan):
        out.append(phase_starts[i] if i == 0 or p.reset_optimizer else out[-1])
    return out


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    init_from: str | None = None,
    eval_hook: Callable[[TrainState, int, str], None] | None = None,
    stop_after: int | None = None,
) -> TrainState:
    """Run (or resume) every phase of ``config`` in ``workdir``; returns the final state.

    A workdir with snapshots resumes from its newest readable one. Otherwise ``init_from``
    (another run's workdir) provides the model's parameters wherever paths and shapes match.
    ``eval_hook(state, step, phase_name)`` runs every ``eval_every`` steps, at every phase
    end, and at step 0 of a run that starts afresh (its starting point: the randomly
    initialised encoder, or ``init_from``'s, so that history curves show where they began).
    ``stop_after`` ends the process's work after that many global steps (tests, budgets);
    the run resumes from its snapshots when called again.

    A run that fails before its first step (or first snapshot) in a workdir it created
    removes that workdir again; a workdir that existed before is never removed.
    """
    # Everything that needs no data, before anything is written.
    prepare(config, workdir=workdir, init_from=init_from)
    plan = prepare(config, resolve_epochs=True)
    with workdir_lib.removed_unless_started(workdir) as new_run:
        return _train(config, workdir, plan, init_from, eval_hook, stop_after, new_run)


def _train(config, workdir, plan, init_from, eval_hook, stop_after, new_run) -> TrainState:
    os.makedirs(workdir, exist_ok=True)
    mesh = sharding.make_mesh(resolve_mesh_shape(config.mesh_shape, jax.device_count()))
    dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
    model = fastvgs.FaSTVGSPlus(config.model, dtype=dtype)
    lengths = phases_lib.schedule_lengths(plan)
    phase_starts = _phase_starts(plan)
    schedule_starts = _schedule_starts(plan, phase_starts)
    total = sum(p.steps for p in plan)
    manager = snapshots.make_manager(workdir, config.keep_snapshots, _phase_ends(plan))
    base_key = jax.random.key(config.seed, impl=config.prng_impl)

    # Every phase's optimiser has the same state structure; only its schedule differs.
    tx, _ = optimizer_lib.make_optimizer(config.optimizer, lengths[0])
    state = init_state(model, tx, base_key, mesh)
    restored = snapshots.restore_latest(manager, state)
    resume_meta = None
    if restored is not None:
        state, resume_meta = restored
        log.info("resumed from snapshot %d (%s)", int(state.step), resume_meta["phase"])
    else:
        if config.get("image_tower_init"):
            params = image_tower.load_into(state.params, config.image_tower_init)
            state = state.replace(params=params)
        if init_from:
            state, _ = snapshots.init_from(init_from, state)
    if int(state.step) >= total:
        manager.wait_until_finished()
        return state  # already finished: nothing to compile or record
    manifest.record(workdir, config, mesh, int(state.step))
    costs = performance.StepCosts(config, workdir, state.params)
    reporter = reporting.RunReporter(workdir, progress=config.progress, peak_flops=costs.peak)
    reporter.restore_totals(None if resume_meta is None else resume_meta.get("totals"))
    phase_index, _ = phases_lib.locate(plan, int(state.step))
    if eval_hook is not None and restored is None:
        eval_hook(state, 0, plan[0].name)
    try:
        for phase_index in range(phase_index, len(plan)):  # noqa: B020 - resumes mid-plan
            phase, phase_start = plan[phase_index], phase_starts[phase_index]
            phase_end = phase_start + phase.steps
            tx, schedule = optimizer_lib.make_optimizer(
                _phase_optimizer(config.optimizer, phase), lengths[phase_index]
            )
            iterator = iter(pipelines.mixed_stream_from_config(config.data, dict(phase.mix)))
            step_now = int(state.step)
            if resume_meta is not None and resume_meta["phase_index"] == phase_index:
                # A snapshot taken inside this phase: continue its data stream. (A phase-end
                # snapshot belongs to the previous phase's mix; this phase starts afresh.)
                snapshots.restore_data(manager, step_now, iterator)
            resume_meta = None
            if phase.reset_optimizer and step_now == phase_start:
                state = state.replace(opt_state=jax.jit(tx.init)(state.params))
            # The layout the jitted steps produce, so their inputs never differ from it.
            state = jax.device_put(state, state_shardings(model, tx, mesh, base_key))
            steps = {
                kind: _jitted_step(
                    config.model.to_json(),
                    config.precision,
                    optimizer_lib.direction_key(config.optimizer),
                    *phase.needs(kind),
                    config.nonfinite == "skip",
                    mesh,
                    config.prng_impl,
                )
                for kind, _ in phase.mix
            }
            reporter.start_phase(
                phase_index, len(plan), phase.name, step_now - phase_start, phase.steps
            )
            with jax.set_mesh(mesh):
                while int(state.step) < phase_end:
                    global_step = int(state.step)
                    if stop_after is not None and global_step >= stop_after:
                        return state
                    batch = next(iterator)
                    kind = str(batch["kind"])
                    in_phase = global_step - phase_start
                    coarse_w, ssl_w = phase.loss_weights(in_phase, kind)
                    lr = float(schedule(global_step - schedule_starts[phase_index]))
                    branch_lr = lr * phase.vgs_branch_lr_scale
                    device_batch = _device_batch(batch, mesh)
                    args = (state, device_batch, coarse_w, ssl_w, lr, branch_lr)
                    step_flops = costs.step_flops(phase, kind, steps[kind], args, device_batch)
                    state, metrics = steps[kind](*args)
                    if not bool(metrics["finite"]):
                        _non_finite(config, global_step, phase.name, metrics)
                    done = int(state.step)
                    new_run.started()  # a failure from here on keeps the run's logs
                    reporter.step_done(
                        _audio_seconds(batch, config.data.sample_rate),
                        step_flops,
                        int(np.sum(batch["frame_mask"])) * jax.process_count(),
                    )
                    if done % config.log_every == 0 or done in (phase_end, total):
                        line = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
                        line.update(
                            alpha=phase.alpha(in_phase),
                            coarse_weight=coarse_w,
                            ssl_weight=ssl_w,
                            lr=lr,
                            branch_lr=branch_lr,
                            skipped=int(state.skipped),
                        )
                        reporter.write(done, phase.name, line)
                    if done % config.snapshot_every == 0 or done == phase_end:
                        meta = {
                            "phase_index": phase_index,
                            "phase": phase.name,
                            "step": done,
                            "totals": dict(reporter.totals),
                        }
                        snapshots.save(manager, done, state, iterator, meta)
                    if eval_hook is not None and (
                        done % config.eval_every == 0 or done == phase_end
                    ):
                        eval_hook(state, done, phase.name)
    finally:
        manager.wait_until_finished()
        reporter.close()
        manifest.update(workdir, "seen", reporter.totals)  # audio, frames, FLOPs, seconds
    return state


def _audio_seconds(batch: dict, sample_rate: int) -> float:
    """Seconds of real (unpadded) audio in the global batch."""
    local = float(np.sum(batch["audio_mask"])) / sample_rate if "audio_mask" in batch else 0.0
    return local * jax.process_count()


def _non_finite(config, step: int, phase: str, metrics: dict) -> None:
    bad = [k for k, v in metrics.items() if not np.all(np.isfinite(np.asarray(v, float)))]
    message = f"step {step} ({phase}): non-finite {', '.join(bad) or 'values'}"
    if config.nonfinite == "stop":
        raise NonFiniteError(message + "; the state before it is unchanged and not saved")
    log.warning("%s; step skipped (nonfinite='skip')", message)


@functools.lru_cache(maxsize=32)
def _jitted_step(model_json, precision, direction, ssl, vgs, skip, mesh, prng_impl):
    """One jitted step per (architecture, optimiser direction, heads, mesh): every phase,
    schedule length and resumed run in the same process reuses the compiled executable
    (the lr and loss weights are traced inputs). The state keeps its shardings from step to
    step (``out_shardings``), so the step never recompiles."""
    model = fastvgs.FaSTVGSPlus(
        ml_collections.ConfigDict(json.loads(model_json)),
        dtype=jnp.bfloat16 if precision == "bf16" else jnp.float32,
    )
    tx = optimizer_lib.optimizer_direction(ml_collections.ConfigDict(dict(direction)))
    shardings = state_shardings(model, tx, mesh, jax.random.key(0, impl=prng_impl))
    step = make_train_step(model, tx, ssl=ssl, vgs=vgs, skip_nonfinite=skip)
    key = (model_json, direction, ssl, vgs, skip)
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
