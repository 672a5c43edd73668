import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastvgs_jax.models import conv1d


def _gradients(conv, x, kernel):
    loss = lambda x, k: jnp.sum(jnp.sin(conv(x, k)))  # noqa: E731
    return jax.grad(loss, argnums=(0, 1))(x, kernel)


def _reference(stride, padding, groups=1):
    return lambda x, k: jax.lax.conv_general_dilated(
        x,
        k,
        (stride,),
        padding,
        dimension_numbers=("NWC", "WIO", "NWC"),
        feature_group_count=groups,
    )


def test_grouped_conv_custom_gradient_matches_autodiff():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 11, 8)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((6, 2, 8)), jnp.float32)
    ours = _gradients(lambda x, k: conv1d.grouped_conv1d(x, k, 3, 4), x, kernel)
    theirs = _gradients(_reference(1, [(3, 3)], 4), x, kernel)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


# wav2vec2's layers (10/5, 3/2, 2/2), a stride over the width (no overlap, unread inputs),
# lengths that leave trailing inputs unread, and a window as long as the input.
@pytest.mark.parametrize(
    "length, width, stride",
    [(41, 10, 5), (23, 3, 2), (24, 3, 2), (16, 2, 2), (20, 2, 3), (3, 3, 2)],
)
def test_strided_conv_values_and_gradients_match_autodiff(length, width, stride):
    rng = np.random.default_rng(length + width)
    x = jnp.asarray(rng.standard_normal((2, length, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((width, 3, 5)), jnp.float32)
    reference = _reference(stride, "VALID")
    np.testing.assert_allclose(
        conv1d.strided_conv1d(x, kernel, stride), reference(x, kernel), atol=1e-5
    )
    ours = _gradients(lambda x, k: conv1d.strided_conv1d(x, k, stride), x, kernel)
    theirs = _gradients(reference, x, kernel)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def _gradient_module(conv, x, kernel, platform: str) -> str:
    """The StableHLO of the gradient, lowered for ``platform`` (no such device needed)."""
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k)), argnums=(0, 1)))
    return jax.export.export(grad, platforms=(platform,))(x, kernel).mlir_module()


def test_hand_written_gradients_are_for_the_cpu_only():
    x, kernel = jnp.ones((2, 23, 8)), jnp.ones((6, 2, 8))
    grouped = lambda x, k: conv1d.grouped_conv1d(x, k, 3, 4)  # noqa: E731
    assert "stablehlo.while" in _gradient_module(grouped, x, kernel, "cpu")  # the per-tap scan
    assert "stablehlo.while" not in _gradient_module(grouped, x, kernel, "tpu")
    strided = lambda x, k: conv1d.strided_conv1d(x, k, 2)  # noqa: E731
    kernel = jnp.ones((3, 8, 5))
    assert "lhs_dilate" not in _gradient_module(strided, x, kernel, "cpu")  # phases
    assert "lhs_dilate" in _gradient_module(strided, x, kernel, "tpu")  # XLA's own
