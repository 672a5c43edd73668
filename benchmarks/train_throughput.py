"""Training-step throughput of the trainer's jitted step on this machine, one JSON line.

    python benchmarks/train_throughput.py                    # demo and base, remat off/on, mesh
    python benchmarks/train_throughput.py --variants=demo    # one variant

Each variant runs in its own process (its own device count, a clean peak RSS): the run
config's model and optimiser, one VGS+ step (α = 0.5: SSL head and VGS branch both run) on a
synthetic batch of the config's global batch shape (noise audio, every frame valid; the
pipeline is measured by benchmarks/data_pipeline.py), jitted exactly as the trainer jits it.

Variants: ``demo`` (configs/demo.py: the small log-mel model, 16 × 4 s), ``demo_remat``,
``demo_8dev`` (the same global batch split over 8 simulated CPU devices: the mesh overhead),
``base`` and ``base_remat`` (the paper's CNN + 12 × 768 encoder at a CPU-sized batch,
``--base_batch`` × ``--base_seconds``).

Fields per variant: compile_seconds (first call minus a steady step), step_seconds (median),
steps_per_second, audio_seconds_per_second, peak_rss_gb, parameters, batch, seconds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("demo", "demo_remat", "demo_8dev", "base", "base_remat")

flags.DEFINE_list("variants", list(VARIANTS), f"Which of {VARIANTS}.")
flags.DEFINE_integer("steps", 5, "Timed steps per variant (after the compiling one).")
flags.DEFINE_integer("base_batch", 4, "Utterances per base step (the paper: 64).")
flags.DEFINE_float("base_seconds", 4.0, "Seconds per base utterance (the paper: 8).")
flags.DEFINE_string("_child", None, "Internal: run one variant in this process.")
FLAGS = flags.FLAGS


def _variant_config(name: str):
    import configs.demo
    from fastvgs_jax.train import config as run_config

    if name.startswith("demo"):
        config = configs.demo.get_config()
    else:
        config = run_config.study_model_config("vgsplus", "base,small,1000")
        for kind in ("audio_image", "audio_only"):
            config.data[kind].batch_size = FLAGS.base_batch
            config.data[kind].crop_seconds = FLAGS.base_seconds
    config.model.remat = name.endswith("_remat")
    return config


def _run_child(name: str) -> dict:
    import resource

    import jax
    import numpy as np
    import step_timing  # this directory: imports jax, so only in the child

    from fastvgs_jax.models import sharding
    from fastvgs_jax.train import loop

    config = _variant_config(name)
    loop.prepare(config)
    mesh = sharding.make_mesh(loop.resolve_mesh_shape(config.mesh_shape, jax.device_count()))
    state, step = step_timing.trainer_step(config, mesh, ssl=True, vgs=True)
    host_batch = step_timing.synthetic_batch(config, np.random.default_rng(0))
    batch = loop._device_batch(host_batch, mesh)
    times, state, metrics = step_timing.time_steps(step, state, batch, mesh, FLAGS.steps)
    steady = statistics.median(times[1:])
    stream = config.data.audio_image
    return {
        "variant": name,
        "devices": jax.device_count(),
        "parameters": int(sum(np.size(x) for x in jax.tree.leaves(state.params))),
        "frontend": config.model.frontend,
        "layers": config.model.num_layers,
        "hidden_dim": config.model.hidden_dim,
        "remat": bool(config.model.remat),
        "batch": stream.batch_size,
        "seconds": stream.crop_seconds,
        "compile_seconds": round(times[0] - steady, 2),
        "step_seconds": round(steady, 3),
        "steps_per_second": round(1 / steady, 3),
        "audio_seconds_per_second": round(stream.batch_size * stream.crop_seconds / steady, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "loss_finite": bool(metrics["finite"]),
    }


def main(argv) -> None:
    del argv
    if FLAGS._child:
        print(json.dumps(_run_child(FLAGS._child)))
        return
    results = {}
    for name in FLAGS.variants:
        if name not in VARIANTS:
            raise app.UsageError(f"unknown variant {name!r}; expected some of {VARIANTS}")
        env = dict(os.environ, PYTHONPATH=ROOT)
        devices = 8 if name.endswith("_8dev") else 1
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        command = [sys.executable, __file__, f"--_child={name}", f"--steps={FLAGS.steps}"]
        command += [f"--base_batch={FLAGS.base_batch}", f"--base_seconds={FLAGS.base_seconds}"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"variant {name} failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    summary = {"machine_cpus": os.cpu_count(), "variants": results}
    if "demo" in results and "demo_8dev" in results:
        summary["mesh_8dev_overhead"] = round(
            results["demo_8dev"]["step_seconds"] / results["demo"]["step_seconds"], 3
        )
    for plain in ("demo", "base"):
        if plain in results and f"{plain}_remat" in results:
            summary[f"{plain}_remat_step_ratio"] = round(
                results[f"{plain}_remat"]["step_seconds"] / results[plain]["step_seconds"], 3
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    app.run(main)
