"""1-D convolutions over time whose gradients XLA:CPU computes slowly, with hand-written VJPs.

Both have the values of ``lax.conv_general_dilated``; only how the backward pass is laid out
changes, and only when the step is compiled for the CPU (``lax.platform_dependent``): GPUs and
TPUs keep XLA's own gradients (measured by ``benchmarks/step_profile.py``; docs/benchmarks.md):

- ``strided_conv1d`` (the wav2vec2 CNN): XLA computes a strided conv's input gradient as one
  convolution over the zero-interleaved output gradient, which XLA:CPU runs on a single core
  at under half the forward's rate. Split by output phase it is ``stride`` stride-1
  convolutions of the output gradient, which run as fast as the forward.
- ``grouped_conv1d`` (the 128-tap positional conv): the kernel gradient as one small matmul
  per tap, because XLA:CPU's gradient of a wide grouped conv is over 20× slower than its
  forward pass.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _conv(x: jax.Array, kernel: jax.Array, stride: int, padding, groups: int = 1) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride,),
        padding=padding,
        dimension_numbers=("NWC", "WIO", "NWC"),
        feature_group_count=groups,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def strided_conv1d(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Strided 1-D convolution without padding ("VALID").

    x: [batch, length, in]; kernel: [width, in, out]
    → [batch, (length − width) // stride + 1, out].
    """
    return _conv(x, kernel, stride, "VALID")


def _strided_fwd(x, kernel, stride):
    return _conv(x, kernel, stride, "VALID"), (x, kernel)


def input_gradient_by_phase(dy: jax.Array, kernel: jax.Array, stride: int, length: int):
    """The input gradient of ``strided_conv1d`` as ``stride`` stride-1 convolutions of dy.

    dy: [batch, out_length, out]; kernel: [width, in, out] → [batch, length, in].
    Input position s·m + p (phase p) is read by output m − j through tap p + s·j, so
    dx[s·m + p] = Σ_j dy[m − j] · W[p + s·j]ᵀ: a stride-1 conv of dy per phase, taps reversed.
    """
    batch, out_length, _ = dy.shape
    transposed = jnp.swapaxes(kernel, 1, 2)  # [width, out, in]
    phases = []
    for p in range(stride):
        taps = transposed[p::stride][::-1]
        if not taps.shape[0]:  # stride > width: no window reads this phase
            phases.append(jnp.zeros((batch, out_length + 1, kernel.shape[1]), dy.dtype))
            continue
        # Pads give every phase out_length + 1 rows: the last input rows a VALID conv reads.
        phases.append(_conv(dy, taps, 1, [(taps.shape[0] - 1, 1)]))
    dx = jnp.stack(phases, axis=2).reshape(batch, stride * (out_length + 1), -1)
    if dx.shape[1] >= length:
        return dx[:, :length]
    return jnp.pad(dx, ((0, 0), (0, length - dx.shape[1]), (0, 0)))  # inputs no window reads


def _strided_bwd(stride, residuals, dy):
    x, kernel = residuals
    _, conv_vjp = jax.vjp(lambda x, k: _conv(x, k, stride, "VALID"), x, kernel)
    dkernel = conv_vjp(dy)[1]
    dx = jax.lax.platform_dependent(
        dy,
        cpu=lambda dy: input_gradient_by_phase(dy, kernel, stride, x.shape[1]).astype(x.dtype),
        default=lambda dy: conv_vjp(dy)[0],  # each branch traced inside: XLA keeps only one
    )
    return dx, dkernel


strided_conv1d.defvjp(_strided_fwd, _strided_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def grouped_conv1d(x: jax.Array, kernel: jax.Array, pad: int, groups: int) -> jax.Array:
    """Grouped 1-D convolution, stride 1, ``pad`` zeros on both sides.

    x: [batch, length, channels]; kernel: [width, channels / groups, out_channels]
    → [batch, length + 2·pad − width + 1, out_channels].
    """
    return _conv(x, kernel, 1, [(pad, pad)], groups)


def _grouped_fwd(x, kernel, pad, groups):
    return _conv(x, kernel, 1, [(pad, pad)], groups), (x, kernel)


def kernel_gradient_by_tap(x: jax.Array, dy: jax.Array, width: int, pad: int, groups: int):
    """The kernel gradient of ``grouped_conv1d`` as one small matmul per tap (a scan).

    x: [batch, length, channels]; dy: [batch, out_length, out_channels]
    → [width, channels / groups, out_channels] in fp32.
    """
    batch, out_length, out_channels = dy.shape
    group_in = x.shape[-1] // groups
    padded = jnp.pad(x, ((0, 0), (pad, pad), (0, 0)))
    padded = padded.reshape(batch, padded.shape[1], groups, group_in)
    dy_groups = dy.reshape(batch, out_length, groups, out_channels // groups)

    def tap(_, k):
        window = jax.lax.dynamic_slice_in_dim(padded, k, out_length, axis=1)
        return None, jnp.einsum(
            "btgc,btgd->cgd", window, dy_groups, preferred_element_type=jnp.float32
        )

    _, dkernel = jax.lax.scan(tap, None, jnp.arange(width))
    return dkernel.reshape(width, group_in, out_channels)


def _grouped_bwd(pad, groups, residuals, dy):
    x, kernel = residuals
    _, conv_vjp = jax.vjp(lambda x, k: _conv(x, k, 1, [(pad, pad)], groups), x, kernel)
    dx = conv_vjp(dy)[0]
    dkernel = jax.lax.platform_dependent(
        dy,
        cpu=lambda dy: kernel_gradient_by_tap(x, dy, kernel.shape[0], pad, groups).astype(
            kernel.dtype
        ),
        default=lambda dy: conv_vjp(dy)[1],  # each branch traced inside: XLA keeps only one
    )
    return dx, dkernel


grouped_conv1d.defvjp(_grouped_fwd, _grouped_bwd)
