"""Where our SSL step's time goes, by part of the model (jax.profiler), one JSON line.

    python benchmarks/step_profile.py                       # base width, 4 layers, 4 × 4 s
    python benchmarks/step_profile.py --layers 12 --batch 2 --seconds 8 --precision bf16

The step is ``step_vs_hf.py``'s (the wav2vec 2.0 loss, forward + backward, dropout on); it is
traced for ``--steps`` steps after warm-up and each executed instruction's time is attributed
to the model part its op_name names (``fastvgs_jax.train.step_profile``), forward and
backward together. Fields: wall seconds per step; seconds per step of each part, summed over
the threads that ran them; the ten costliest instructions; the busy share (instruction time over
wall time × the cores this process may use).

On a multi-core CPU the trace holds each instruction on the thread that ran it, not the work
its helper threads did (a convolution split over cores), so the shares lean towards what runs
on one thread; pinned to one core (``taskset -c 0 python benchmarks/step_profile.py``) the
parts add up to ~90 % of the wall time and the shares are the step's own.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

# Run as a script: the checkout's root (configs/) is not on sys.path by itself.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs.model import get_config  # noqa: E402
from fastvgs_jax import host_memory  # noqa: E402
from fastvgs_jax.models import fastvgs, speech  # noqa: E402
from fastvgs_jax.train import objectives, step_profile  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("size", "base", "Model size preset (configs/model.py).")
flags.DEFINE_integer("layers", 4, "Transformer layers.")
flags.DEFINE_integer("batch", 4, "Utterances per step.")
flags.DEFINE_float("seconds", 4.0, "Audio seconds per utterance.")
flags.DEFINE_integer("steps", 3, "Traced steps.")
flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16"], "Compute dtype.")
flags.DEFINE_integer("top", 10, "Costliest instructions to list.")
flags.DEFINE_enum("prng_impl", "threefry2x32", ["threefry2x32", "rbg", "unsafe_rbg"], "PRNG.")


def main(argv) -> None:
    del argv
    host_memory.keep_freed_memory()  # as every launcher: large buffers stay mapped
    config = copy.deepcopy(get_config(FLAGS.size))
    config.num_layers = FLAGS.layers
    config.vgs_layer = min(config.vgs_layer, config.num_layers)
    config.frontend, config.use_cls = "cnn", False  # step_vs_hf's network
    samples = int(FLAGS.seconds * 16_000)
    frames = speech.frame_geometry(config).num_frames(samples)
    dtype = jnp.bfloat16 if FLAGS.precision == "bf16" else jnp.float32
    model = fastvgs.FaSTVGSPlus(config, dtype=dtype)
    variables = fastvgs.init_variables(config, jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {
        "audio": jnp.asarray(rng.standard_normal((FLAGS.batch, samples)), jnp.float32),
        "frame_mask": jnp.ones((FLAGS.batch, frames), bool),
    }

    def loss_fn(params, batch_stats, batch, key):
        return objectives.joint_loss(model, params, batch_stats, batch, key, 0, 0.0, vgs=False)

    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    args = (variables["params"], variables["batch_stats"], batch)
    key = lambda i: jax.random.key(i, impl=FLAGS.prng_impl)  # noqa: E731
    compiled = step.lower(*args, key(0)).compile()
    op_names = step_profile.instruction_op_names(compiled.as_text())
    for i in range(2):
        jax.block_until_ready(compiled(*args, key(i)))
    with tempfile.TemporaryDirectory(prefix="fastvgs-profile-") as trace_dir:
        start = time.perf_counter()
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for i in range(FLAGS.steps):
                jax.block_until_ready(compiled(*args, key(i)))
        wall = (time.perf_counter() - start) / FLAGS.steps
        events = step_profile.trace_events(trace_dir)
    parts = step_profile.part_seconds(events, op_names, FLAGS.steps)
    busy = sum(parts.values())
    cores = 1
    if jax.default_backend() == "cpu":  # the cores this process may run on (taskset counts)
        usable = getattr(os, "sched_getaffinity", None)
        cores = len(usable(0)) if usable else os.cpu_count()
    print(
        json.dumps(
            {
                "benchmark": "step_profile",
                "config": {
                    "size": FLAGS.size,
                    "num_layers": FLAGS.layers,
                    "batch": FLAGS.batch,
                    "seconds": FLAGS.seconds,
                    "precision": FLAGS.precision,
                    "prng_impl": FLAGS.prng_impl,
                },
                "wall_seconds_per_step_traced": round(wall, 4),
                "part_seconds_per_step": {k: round(v, 4) for k, v in parts.items()},
                "part_share": {k: round(v / busy, 3) for k, v in parts.items()},
                "busy_share": round(busy / (wall * cores), 3),
                "top_instructions": step_profile.top_instructions(
                    events, op_names, FLAGS.steps, FLAGS.top
                ),
                "device": jax.devices()[0].device_kind,
                "cpu_count": os.cpu_count(),
                "cores_usable": cores,
                "jax": jax.__version__,
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
