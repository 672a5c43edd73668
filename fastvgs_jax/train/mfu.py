"""Model FLOPs utilisation: the step's FLOPs per second over the devices' peak.

``PEAK_FLOPS`` holds the published dense (no structured sparsity) peak FLOP/s per chip, by the
precision a matmul runs at. ``device_peak`` picks the row for ``jax.devices()[0].device_kind``
(matched by pattern: jax says "TPU v5 lite" for v5e, "TPU v5" for v5p, "TPU v6 lite" for v6e,
and the CUDA name for GPUs, e.g. "NVIDIA H100 80GB HBM3"), or measures this host's matmul
peak on CPU and on devices the table does not know, or takes an override.

A run's ``precision`` is the compute dtype of its activations: "bf16" reads the bf16 row;
"fp32" reads what an fp32 matmul runs at under jax's default matmul precision: bf16 passes on
TPU, TF32 on GPUs (A100 and newer), and slower rows when ``jax_default_matmul_precision``
asks for more (docs.jax.dev/en/latest/201/precision.html).
"""

from __future__ import annotations

import functools
import re
import statistics
import time

import jax
import jax.numpy as jnp

PEAK_FLOPS: dict[str, dict[str, float]] = {
    # Google Cloud TPU docs, "TPU v4" (cloud.google.com/tpu/docs/v4): peak compute per chip
    # 275 TFLOPs (bf16). One jax device per chip (its two TensorCores act as one).
    "TPU v4": {"bf16": 275e12},
    # cloud.google.com/tpu/docs/v5e: peak compute per chip 197 TFLOPs (bf16).
    "TPU v5e": {"bf16": 197e12},
    # cloud.google.com/tpu/docs/v5p: peak compute per chip 459 TFLOPs (bf16).
    "TPU v5p": {"bf16": 459e12},
    # cloud.google.com/tpu/docs/v6e (Trillium): peak compute per chip 918 TFLOPs (bf16).
    "TPU v6e": {"bf16": 918e12},
    # NVIDIA A100 datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf), dense:
    # BF16 Tensor Core 312, TF32 Tensor Core 156, FP32 19.5 TFLOPS; SXM4 and PCIe, 40 and 80 GB.
    "A100": {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
    # NVIDIA H100 datasheet / Hopper whitepaper, H100 SXM5: BF16 Tensor Core 1979 TFLOPS with
    # sparsity = 989.4 dense; TF32 989 sparse = 494.7 dense; FP32 66.9 TFLOPS.
    "H100 SXM": {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12},
    # NVIDIA H100 datasheet, H100 PCIe: BF16 1513 TFLOPS sparse = 756.5 dense; TF32 756 sparse =
    # 378 dense; FP32 51.2 TFLOPS.
    "H100 PCIe": {"bf16": 756.5e12, "tf32": 378e12, "fp32": 51.2e12},
    # NVIDIA H200 datasheet (SXM): the H100 SXM's GH100 compute with more, faster memory:
    # BF16 1979 TFLOPS sparse = 989.4 dense; TF32 494.7 dense; FP32 66.9 TFLOPS.
    "H200": {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12},
}

# device_kind (lower case) → PEAK_FLOPS row; first match wins. Kinds matching none (TPU v4 lite,
# H100 NVL, H200 NVL, GH200, ...) fall back to a measured matmul peak rather than a wrong row.
DEVICE_KINDS: tuple[tuple[str, str], ...] = (
    (r"\btpu v4\b(?! ?lite)", "TPU v4"),
    (r"\btpu v5 ?(lite|e)\b", "TPU v5e"),
    (r"\btpu v5p?\b", "TPU v5p"),
    (r"\btpu v6 ?(lite|e)\b", "TPU v6e"),
    (r"\ba100\b", "A100"),
    (r"\bh100\b.*\bpcie\b", "H100 PCIe"),
    (r"\bh100\b(?!.*\bnvl\b)", "H100 SXM"),
    (r"\bh200\b(?!.*\bnvl\b)", "H200"),
)

PRECISIONS = ("bf16", "fp32")


def table_entry(device_kind: str) -> str | None:
    """The ``PEAK_FLOPS`` row for a jax ``device_kind`` string, or None."""
    kind = device_kind.strip().lower()
    for pattern, entry in DEVICE_KINDS:
        if re.search(pattern, kind):
            return entry
    return None


def _fp32_matmul_mode() -> str:
    """How fp32 matmuls run under jax's default precision: "fast" (1 bf16 pass on TPU, TF32
    on GPU), "3pass" (bf16_3x on TPU, TF32 on GPU) or "full"."""
    mode = str(jax.config.jax_default_matmul_precision or "default").lower()
    if mode in ("highest", "float32", "f32_f32_f32"):
        return "full"
    if mode in ("high", "bfloat16_3x", "tensorfloat32"):
        return "3pass"
    return "fast"


def table_peak(entry: str, precision: str) -> tuple[float, str]:
    """(peak FLOP/s per chip, which figure) of a ``PEAK_FLOPS`` row at a run's precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {PRECISIONS}")
    row = PEAK_FLOPS[entry]
    if precision == "bf16":
        return row["bf16"], "bf16"
    mode = _fp32_matmul_mode()
    if entry.startswith("TPU"):  # fp32 matmuls run as 1, 3 or 6 bf16 passes
        passes = {"fast": 1, "3pass": 3, "full": 6}[mode]
        return row["bf16"] / passes, "bf16" if passes == 1 else f"bf16/{passes} (fp32 {mode})"
    if mode == "full":
        return row["fp32"], "fp32"
    return row["tf32"], "tf32 (jax's default fp32 matmuls)"


@functools.lru_cache(maxsize=8)
def _measured(dtype_name: str, size: int, repeats: int, device) -> float:
    dtype = jnp.dtype(dtype_name)
    a = jax.device_put(jnp.ones((size, size), dtype), device)
    b = jax.device_put(jnp.full((size, size), 0.5, dtype), device)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, b).block_until_ready()  # compile and warm up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        rates.append(2 * size**3 / max(time.perf_counter() - start, 1e-9))
    return statistics.median(rates)


def measured_matmul_peak(dtype=jnp.float32, size: int = 2048, repeats: int = 5) -> float:
    """This host's (or device 0's) matmul FLOP/s: the median of ``repeats`` timed jitted
    ``size`` × ``size`` matmuls (2·size³ FLOPs each) after a warm-up; about a second on a
    few CPU cores (size 2048). Cached per (dtype, size, repeats, device)."""
    return _measured(jnp.dtype(dtype).name, int(size), int(repeats), jax.devices()[0])


def device_peak(precision: str, override: float | None = None) -> tuple[float, str]:
    """(peak FLOP/s of all devices of the run, where the figure comes from).

    ``override``: a peak FLOP/s per device (e.g. a config field), times the device count.
    Accelerators in ``PEAK_FLOPS``: the row's figure at ``precision`` × ``jax.device_count()``
    (every process's devices). Accelerators the table does not know: device 0's measured
    matmul peak (at ``precision``'s dtype) × the device count. CPU: this host's measured
    matmul peak, not multiplied (simulated CPU devices share the host's cores; a run of
    several CPU hosts is credited with one host's peak).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {PRECISIONS}")
    devices = jax.devices()
    count = len(devices)
    if override is not None:
        if not override > 0:
            raise ValueError(f"peak FLOP/s override must be positive, not {override!r}")
        return float(override) * count, f"override: {override:.4g} FLOP/s per device × {count}"
    kind = devices[0].device_kind
    entry = None if devices[0].platform == "cpu" else table_entry(kind)
    if entry is not None:
        peak, figure = table_peak(entry, precision)
        return peak * count, f"table: {entry} {figure} × {count}"
    dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
    name = jnp.dtype(dtype).name
    if devices[0].platform == "cpu":
        return measured_matmul_peak(dtype), f"measured CPU matmul ({name}, this host)"
    peak = measured_matmul_peak(dtype)
    return peak * count, f"measured {kind} matmul ({name}, not in the table) × {count}"


def mfu(flops_per_step: float, steps_per_second: float, peak: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s (``flops_per_step`` × ``steps_per_second``)
    over ``peak`` FLOP/s (same scope: global FLOPs over the peak of all devices)."""
    if not peak > 0:
        raise ValueError(f"peak FLOP/s must be positive, not {peak!r}")
    return flops_per_step * steps_per_second / peak
