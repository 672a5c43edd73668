"""The losses on global arrays sharded over 8 (simulated) devices equal the one-device values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from fastvgs_jax.losses import coarse, wav2vec2
from fastvgs_jax.models import masking, sharding


def test_coarse_loss_uses_every_device_s_embeddings_as_negatives():
    rng = np.random.default_rng(0)
    audio = jnp.asarray(rng.standard_normal((16, 8)), jnp.float32)
    image = jnp.asarray(rng.standard_normal((16, 8)), jnp.float32)
    ids = jnp.asarray(np.arange(16) // 2)
    expected = coarse.coarse_margin_infonce(audio, image, ids)
    mesh = sharding.make_mesh((8, 1, 1))
    rows = NamedSharding(mesh, PartitionSpec("data", None))
    loss = jax.jit(coarse.coarse_margin_infonce)(
        jax.device_put(audio, rows),
        jax.device_put(image, rows),
        jax.device_put(ids, NamedSharding(mesh, PartitionSpec("data"))),
    )
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6)
    # Two rows per device: a per-device loss would see 2 candidates, not 16.
    per_device = np.mean(
        [
            float(coarse.coarse_margin_infonce(audio[i : i + 2], image[i : i + 2], ids[i : i + 2]))
            for i in range(0, 16, 2)
        ]
    )
    assert abs(per_device - float(expected)) > 1e-3


def test_contrastive_loss_sharded_over_the_batch_matches():
    rng = np.random.default_rng(1)
    context = jnp.asarray(rng.standard_normal((8, 20, 4)), jnp.float32)
    targets = jnp.asarray(rng.standard_normal((8, 20, 4)), jnp.float32)
    codes = jnp.asarray(rng.integers(0, 5, (8, 20, 2)), jnp.int32)
    masked = masking.mask_spans(jax.random.key(0), jnp.ones((8, 20), bool), 0.5, 3, 2)
    negatives = masking.sample_negatives(jax.random.key(1), masked, 5)
    expected = wav2vec2.contrastive_loss(context, targets, codes, masked, negatives).loss
    mesh = sharding.make_mesh((8, 1, 1))
    put = lambda x: jax.device_put(x, sharding.batch_sharding(mesh, x.ndim))  # noqa: E731
    loss = jax.jit(lambda *a: wav2vec2.contrastive_loss(*a).loss)(
        *map(put, (context, targets, codes, masked, negatives))
    )
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6)
