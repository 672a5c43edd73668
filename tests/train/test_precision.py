"""bf16 compute (``precision="bf16"``): fp32 parameters and optimiser state, norms, softmax,
the Gumbel softmax and the losses in fp32, and losses within 2 % of an fp32 run."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastvgs_jax.models import fastvgs, sharding, speech
from fastvgs_jax.train import config as run_config
from fastvgs_jax.train import loop, objectives
from fastvgs_jax.train import optimizer as optimizer_lib
from fastvgs_jax.train.step import init_state

BATCH, SAMPLES = 8, 16_000


def _batches(config, count: int) -> list[dict]:
    rng = np.random.default_rng(0)
    frames = speech.frame_geometry(config.model).num_frames(SAMPLES)
    return [
        {
            "audio": rng.normal(size=(BATCH, SAMPLES)).astype(np.float32),
            "frame_mask": np.ones((BATCH, frames), bool),
            "image": rng.normal(size=(BATCH, 64, 64, 3)).astype(np.float32),
            "image_id": np.arange(BATCH),
        }
        for _ in range(count)
    ]


def _run(precision: str, steps: int = 3):
    """The trainer's jitted VGS+ step for ``steps`` steps from one initialisation."""
    config = run_config.base_config("tiny", "tiny")
    config.precision = precision
    mesh = sharding.make_mesh(loop.resolve_mesh_shape(config.mesh_shape, jax.device_count()))
    tx, _ = optimizer_lib.make_optimizer(config.optimizer, 1000)
    state = init_state(fastvgs.FaSTVGSPlus(config.model), tx, jax.random.key(0), mesh)
    direction = optimizer_lib.direction_key(config.optimizer)
    step = loop._jitted_step(
        config.model.to_json(), precision, direction, True, True, False, mesh, config.prng_impl
    )
    losses = []
    with jax.set_mesh(mesh):
        for batch in _batches(config, steps):
            state, metrics = step(state, loop._device_batch(batch, mesh), 0.5, 0.5, 1e-3, 1e-3)
            losses.append({k: float(metrics[k]) for k in ("loss", "contrastive", "coarse")})
    return state, losses


def test_bf16_losses_follow_fp32_within_two_percent_and_state_stays_fp32():
    _, fp32 = _run("fp32")
    state, bf16 = _run("bf16")
    for a, b in zip(fp32, bf16, strict=True):
        for term in a:
            assert b[term] == pytest.approx(a[term], rel=0.02), (term, a, b)
    dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state))}
    assert dtypes <= {jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}, dtypes


def test_bf16_step_keeps_norms_softmax_and_logs_in_fp32():
    """Every normalisation (rsqrt), softmax/logsumexp (reduce_max) and log (Gumbel noise,
    log-softmax, losses) of the bf16 training gradient reads fp32; the matmuls run in bf16."""
    config = run_config.base_config("tiny", "tiny")
    model = fastvgs.FaSTVGSPlus(config.model, dtype=jnp.bfloat16)
    variables = fastvgs.init_variables(config.model, jax.random.key(0))
    batch = _batches(config, 1)[0]

    def loss(params, stats, batch):
        return objectives.joint_loss(model, params, stats, batch, jax.random.key(0), 0, 0.5)[0]

    jaxpr = jax.make_jaxpr(jax.grad(loss))(variables["params"], variables["batch_stats"], batch)
    seen: collections.Counter = collections.Counter()

    def walk(closed):
        for eqn in closed.eqns:
            for value in eqn.params.values():
                inner = getattr(value, "jaxpr", value)
                if hasattr(inner, "eqns"):
                    walk(inner)
            name = eqn.primitive.name
            if name in ("rsqrt", "reduce_max", "log", "dot_general"):
                seen[name, str(eqn.invars[0].aval.dtype)] += 1

    walk(jaxpr.jaxpr)
    for name in ("rsqrt", "reduce_max", "log"):
        assert seen[name, "float32"] > 0 and seen[name, "bfloat16"] == 0, (name, seen)
    assert seen["dot_general", "bfloat16"] > seen["dot_general", "float32"]
