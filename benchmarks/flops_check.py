"""Analytic step FLOPs against XLA's cost analysis of the trainer's step, one JSON line.

    python benchmarks/flops_check.py                         # tiny, small, base2, base
    python benchmarks/flops_check.py --configs=base --heads=vgsplus
    python benchmarks/flops_check.py --time=tiny,small       # + measured steps/s and MFU

Per config and head set (``vgsplus``: SSL + VGS, ``ssl``, ``vgs``): ``train.flops.step_flops``
(the analytic count) and ``xla_step_flops`` of the step lowered from abstract shapes
(``train.flops.lower_train_step``: XLA's global count, nothing compiled), their ratio, FLOPs per
audio second, the parts, and the parameter counts. Configs: ``tiny`` (8 × 1 s, the tests'
shape), ``small`` (8 × 2 s), ``base2`` (base width, 2 layers, 2 × 1 s), ``base`` (the paper's
12 layers, 2 × 4 s). ``--compile`` adds the compiled executable's count; ``--time`` runs the
named configs' SSL + VGS step (jitted as the trainer jits it) and adds steps/s, achieved
FLOP/s and MFU against ``train.mfu.device_peak``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("tiny", "small", "base2", "base")
HEADS = {"vgsplus": (True, True), "ssl": (True, False), "vgs": (False, True)}

flags.DEFINE_list("configs", list(CONFIGS), f"Which of {CONFIGS}.")
flags.DEFINE_list("heads", list(HEADS), f"Which of {tuple(HEADS)}.")
flags.DEFINE_bool("compile", False, "Also compile each step and report the compiled count.")
flags.DEFINE_list("time", [], "Configs whose SSL + VGS step is timed for MFU.")
flags.DEFINE_integer("steps", 3, "Timed steps (after the compiling one).")
FLAGS = flags.FLAGS


def run_config(name: str):
    """(run config, batch, seconds) of a named check."""
    from fastvgs_jax.train import config as run_config_lib

    size = {"tiny": "tiny", "small": "small", "base2": "base", "base": "base"}[name]
    config = run_config_lib.base_config(size, "tiny")
    batch, seconds = {"tiny": (8, 1.0), "small": (8, 2.0), "base2": (2, 1.0), "base": (2, 4.0)}[
        name
    ]
    if name == "base2":
        config.model.num_layers = 2
        config.model.vgs_layer = 2
    for kind in ("audio_image", "audio_only"):
        config.data[kind].batch_size = batch
        config.data[kind].crop_seconds = seconds
    return config, batch, seconds


def _gflops(x):
    return None if x is None else round(x / 1e9, 3)


def check(name: str, heads: str) -> dict:
    from fastvgs_jax.train import flops

    config, batch, seconds = run_config(name)
    samples = round(seconds * 16_000)
    ssl, vgs = HEADS[heads]
    analytic = flops.step_flops(config.model, batch, samples, ssl=ssl, vgs=vgs)
    start = time.perf_counter()
    lowered = flops.lower_train_step(config, batch, samples, ssl=ssl, vgs=vgs)
    lower_seconds = time.perf_counter() - start
    xla = flops.xla_step_flops(lowered)
    hardware = analytic["total"] + analytic["recompute"]
    out = {
        "analytic_gflops": _gflops(analytic["total"]),
        "xla_gflops": _gflops(xla),
        "ratio": None if not xla else round(hardware / xla, 4),
        "analytic_gflops_per_audio_second": _gflops(analytic["per_audio_second"]),
        "parts_gflops": {k: _gflops(v["total"]) for k, v in analytic["parts"].items()},
        "lower_seconds": round(lower_seconds, 1),
    }
    if heads == "vgsplus":
        out["expected_masked_share"] = round(analytic["expected_masked_share"], 4)
    if FLAGS.compile:
        start = time.perf_counter()
        compiled = lowered.compile()
        out["compile_seconds"] = round(time.perf_counter() - start, 1)
        out["xla_compiled_gflops"] = _gflops(flops.xla_step_flops(compiled))
    return out


def timed(name: str) -> dict:
    """Steps/s of the trainer's SSL + VGS step on a synthetic batch, and its MFU."""
    import jax
    import numpy as np
    import step_timing  # this directory

    from fastvgs_jax.models import sharding
    from fastvgs_jax.train import flops, loop, mfu

    config, batch, seconds = run_config(name)
    loop.prepare(config)
    mesh = sharding.make_mesh(loop.resolve_mesh_shape(config.mesh_shape, jax.device_count()))
    state, step = step_timing.trainer_step(config, mesh, ssl=True, vgs=True)
    host_batch = step_timing.synthetic_batch(config, np.random.default_rng(0))
    device_batch = loop._device_batch(host_batch, mesh)
    times, state, _ = step_timing.time_steps(step, state, device_batch, mesh, FLAGS.steps)
    step_seconds = statistics.median(times[1:])
    analytic = flops.step_flops(
        config.model,
        batch,
        host_batch["audio"].shape[1],
        ssl=True,
        vgs=True,
        image_batch_shape=host_batch["image"].shape,
    )
    peak, source = mfu.device_peak(config.precision)
    return {
        "step_seconds": round(step_seconds, 4),
        "achieved_gflops_per_second": round(analytic["total"] / step_seconds / 1e9, 2),
        "peak_gflops_per_second": round(peak / 1e9, 2),
        "peak_source": source,
        "mfu": round(mfu.mfu(analytic["total"], 1.0 / step_seconds, peak), 4),
    }


def main(argv) -> None:
    del argv
    import jax

    from fastvgs_jax.models import fastvgs
    from fastvgs_jax.train import parameters

    result = {"benchmark": "flops_check", "device": jax.devices()[0].device_kind}
    result["cpu_count"] = os.cpu_count()
    for name in FLAGS.configs:
        config, batch, seconds = run_config(name)
        entry = {"batch": batch, "seconds": seconds, "frontend": config.model.frontend}
        entry["layers"] = config.model.num_layers
        entry["hidden_dim"] = config.model.hidden_dim
        variables = fastvgs.abstract_variables(config.model)
        entry["parameters"] = parameters.parameter_counts(variables, config.model)
        for heads in FLAGS.heads:
            entry[heads] = check(name, heads)
        if name in FLAGS.time:
            entry["timed_vgsplus"] = timed(name)
        result[name] = entry
    ratios = [result[n][h]["ratio"] for n in FLAGS.configs for h in FLAGS.heads]
    result["ratio_range"] = [min(ratios), max(ratios)] if None not in ratios else None
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    app.run(main)
