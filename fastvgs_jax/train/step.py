"""Train state and the jitted train step: state in, state out, one compile per batch kind."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fastvgs_jax.models import fastvgs, sharding
from fastvgs_jax.train import objectives


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # [] int32, optimiser updates so far in the whole run
    params: Any
    batch_stats: Any
    opt_state: Any
    key: jax.Array  # the run's PRNG key; each step folds in its step number
    skipped: jax.Array  # [] int32, non-finite steps skipped (nonfinite="skip")


def _state_builder(model: fastvgs.FaSTVGSPlus, tx: optax.GradientTransformation):
    inputs = fastvgs.example_inputs(model.config)

    def build(key):
        init_key, run_key = fastvgs.split_run_key(key)
        variables = model.init({"params": init_key}, *inputs)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=variables["params"],
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(variables["params"]),
            key=run_key,
            skipped=jnp.zeros((), jnp.int32),
        )

    return build


def state_shardings(
    model: fastvgs.FaSTVGSPlus,
    tx: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
    key: jax.Array,
    rules=sharding.DEFAULT_RULES,
):
    """NamedShardings of a TrainState: parameters (and the optimiser moments that mirror
    them) by their logical axes, everything else replicated."""
    abstract = jax.eval_shape(_state_builder(model, tx), key)
    return sharding.logical_shardings(abstract, mesh, rules)


def init_state(
    model: fastvgs.FaSTVGSPlus,
    tx: optax.GradientTransformation,
    key: jax.Array,
    mesh: jax.sharding.Mesh,
    rules=sharding.DEFAULT_RULES,
) -> TrainState:
    """A fresh state created directly in its shards (see ``state_shardings``)."""
    build = _state_builder(model, tx)
    shardings = state_shardings(model, tx, mesh, key, rules)
    return jax.jit(lambda k: nn.meta.unbox(build(k)), out_shardings=shardings)(key)


def make_train_step(
    model: fastvgs.FaSTVGSPlus,
    tx: optax.GradientTransformation,
    *,
    ssl: bool,
    vgs: bool,
    skip_nonfinite: bool = False,
):
    """``step(state, batch, coarse_weight, ssl_weight, lr, branch_lr) -> (state, metrics)``
    (not jitted).

    ``tx`` gives the update direction; the step scales it by ``-branch_lr`` on the VGS
    branch (``fastvgs.VGS_BRANCH``) and by ``-lr`` everywhere else. The loss weights and
    the rates are traced scalars, so α and learning-rate schedules never recompile; ``ssl``/``vgs``
    are static (which heads run). A non-finite loss or gradient norm leaves the state
    unchanged (the caller stops the run, or counts the skip when ``skip_nonfinite``), so a
    bad state never exists to be saved.
    """

    # A stopped gradient is not enough: decoupled weight decay would still shrink those
    # parameters every step; frozen means they never change.
    frozen = fastvgs.frozen_prefixes(model.config)

    def step(state: TrainState, batch: dict, coarse_weight, ssl_weight, lr, branch_lr):
        key = jax.random.fold_in(state.key, state.step)

        def loss_fn(params):
            return objectives.joint_loss(
                model,
                params,
                state.batch_stats,
                batch,
                key,
                state.step,
                coarse_weight,
                ssl_weight,
                ssl=ssl,
                vgs=vgs,
            )

        (loss, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        grad_norm = optax.tree.norm(grads)
        direction, opt_state = tx.update(grads, state.opt_state, state.params)
        updates = scale_updates(direction, lr, branch_lr, frozen)
        params = optax.apply_updates(state.params, updates)
        update_norm = optax.tree.norm(updates)
        # An update can overflow even when the loss and gradient are finite (a huge lr).
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(update_norm)
        keep = lambda new, old: jax.tree.map(  # noqa: E731
            lambda n, o: jnp.where(finite, n, o), new, old
        )
        new_state = state.replace(
            step=state.step + jnp.where(finite | skip_nonfinite, 1, 0).astype(jnp.int32),
            params=keep(params, state.params),
            batch_stats=keep(batch_stats, state.batch_stats),
            opt_state=keep(opt_state, state.opt_state),
            skipped=state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32),
        )
        metrics = dict(metrics, grad_norm=grad_norm, update_norm=update_norm, finite=finite)
        return new_state, metrics

    return step


def scale_updates(direction, lr, branch_lr, frozen: Sequence[tuple[str, ...]] = ()):
    """``-rate · direction`` per parameter: ``branch_lr`` under the top-level subtrees of
    ``fastvgs.VGS_BRANCH``, ``lr`` elsewhere (scalars, traced or not), and 0 under every
    path prefix in ``frozen`` (``fastvgs.frozen_prefixes``)."""

    def scale(path, d):
        keys = tuple(p.key for p in path)
        if any(keys[: len(prefix)] == tuple(prefix) for prefix in frozen):
            return jnp.zeros_like(d)
        rate = branch_lr if path[0].key in fastvgs.VGS_BRANCH else lr
        return (-rate * d).astype(d.dtype)

    return jax.tree_util.tree_map_with_path(scale, direction)


def state_digest(state: TrainState) -> str:
    """SHA-256 of the parameters, BatchNorm statistics and optimiser state: equal digests
    mean bitwise-identical runs (fetches the whole state to the host)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves((state.params, state.batch_stats, state.opt_state)):
        h.update(np.asarray(jax.device_get(leaf)).tobytes())
    return h.hexdigest()
