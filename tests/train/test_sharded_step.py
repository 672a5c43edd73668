"""The jitted train step on a device mesh: 8-way data parallel and FSDP give the loss of one
device with the same global batch."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from fastvgs_jax.data import pipelines
from fastvgs_jax.models import fastvgs, sharding
from fastvgs_jax.train import loop
from fastvgs_jax.train import optimizer as optimizer_lib
from fastvgs_jax.train.step import init_state
from tests.train.conftest import tiny_run_config


@pytest.fixture(scope="module")
def setup(tiny_data_dir):
    config = tiny_run_config(tiny_data_dir, "vgsplus", 4)
    loop.prepare(config)
    mix = {"audio_image": 1.0}
    batch = next(iter(pipelines.mixed_stream_from_config(config.data, mix, pipelines.Shard())))
    return config, batch


def _one_step(config, batch, mesh_shape):
    """(state after one VGS+ step, its metrics) on the first prod(mesh_shape) devices."""
    mesh = sharding.make_mesh(mesh_shape, devices=jax.devices()[: math.prod(mesh_shape)])
    model = fastvgs.FaSTVGSPlus(config.model)
    tx, _ = optimizer_lib.make_optimizer(config.optimizer, 4)
    key = jax.random.key(config.seed, impl=config.prng_impl)
    state = init_state(model, tx, key, mesh)
    direction = optimizer_lib.direction_key(config.optimizer)
    step = loop._jitted_step(
        config.model.to_json(), config.precision, direction, True, True, False, mesh, "threefry2x32"
    )
    with jax.set_mesh(mesh):
        state, metrics = step(state, loop._device_batch(batch, mesh), 0.5, 0.5, 1e-3, 1e-3)
        state, metrics = step(state, loop._device_batch(batch, mesh), 0.5, 0.5, 1e-3, 1e-3)
    return state, jax.device_get(metrics)


@pytest.fixture(scope="module")
def single_device(setup):
    return _one_step(*setup, (1, 1, 1))


def _assert_same_metrics(a, b):
    for key in ("loss", "coarse", "contrastive", "diversity", "grad_norm"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_eight_way_data_parallel_matches_one_device(setup, single_device):
    state, metrics = _one_step(*setup, (8, 1, 1))
    _assert_same_metrics(metrics, single_device[1])
    assert len(state.params["speech_encoder"]["cls"].sharding.device_set) == 8


def test_fsdp_shards_parameters_and_matches_one_device(setup, single_device):
    state, metrics = _one_step(*setup, (2, 4, 1))
    _assert_same_metrics(metrics, single_device[1])
    # Parameters with an "embed" axis are split over fsdp; so are their Adam moments.
    cls = state.params["speech_encoder"]["cls"]
    assert "fsdp" in str(cls.sharding.spec)
    assert cls.addressable_shards[0].data.shape[0] == cls.shape[0] // 4
    mu = state.opt_state[1].mu["speech_encoder"]["cls"]
    assert mu.sharding.spec == cls.sharding.spec


@pytest.mark.parametrize("prng_impl", ["threefry2x32", "rbg"])
def test_random_init_baseline_is_the_encoder_a_run_starts_from(prng_impl):
    from fastvgs_jax.train.config import base_config

    config = base_config("tiny", "tiny")
    model = fastvgs.FaSTVGSPlus(config.model)
    tx, _ = optimizer_lib.make_optimizer(config.optimizer, 4)
    key = jax.random.key(3, impl=prng_impl)
    state = init_state(model, tx, key, sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1]))
    # What evaluate_run scores as the random-init row of a run with seed 3.
    baseline = fastvgs.init_variables(config.model, fastvgs.split_run_key(key)[0])["params"]
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), state.params, baseline)
    assert all(jax.tree.leaves(same))
