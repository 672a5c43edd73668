"""Step time of the study's demo model per head set on this machine, one JSON line.

    python benchmarks/study_step_time.py                                  # the demo preset
    python benchmarks/study_step_time.py data.audio_image.batch_size=8    # run-config overrides
    python benchmarks/study_step_time.py --preset=quick

``configs/study.py``'s run template (the 2.1 M log-mel model the nine models train, not
configs/demo.py's 10.7 M one that benchmarks/train_throughput.py times), one jitted step per
head set as the trainer jits it — ``ssl`` (W2V2 phases), ``vgs`` (VGS phases) and ``vgsplus``
(both heads) — on a synthetic batch of the audio-image stream's shape (noise audio, every
frame valid). Overrides are dotted run-config keys (``model.num_layers=2``); the audio-only
stream follows ``data.audio_image`` so that both streams keep one shape.

Fields: per head set step_seconds (median) and compile_seconds; the study's model-step mix
(``steps`` per model, 8.1 × steps in all) priced at these step times as training_minutes.
"""

from __future__ import annotations

import ast
import json
import os
import statistics
import sys

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADS = {"ssl": (True, False), "vgs": (False, True), "vgsplus": (True, True)}

flags.DEFINE_enum("preset", "demo", ["demo", "quick"], "configs/study.py preset.")
flags.DEFINE_integer("steps", 5, "Timed steps per head set (after the compiling one).")
flags.DEFINE_integer("study_steps", None, "Steps per model to price (default: the preset's).")
FLAGS = flags.FLAGS


def _override(config, dotted: str) -> None:
    key, _, text = dotted.partition("=")
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        node = node[p]
    if leaf not in node:
        raise KeyError(f"{key!r} is not a run-config field")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    node[leaf] = value
    if parents == ["data", "audio_image"]:
        config.data.audio_only[leaf] = value


def _study_mix(steps: int) -> dict[str, int]:
    """Model-steps per head set over the nine models (shared first phases: 8.1 × steps)."""
    from fastvgs_jax import study
    from fastvgs_jax.train import config as run_config

    heads = {"w2v2": "ssl", "vgs": "vgs", "vgsplus": "vgsplus"}
    mix = dict.fromkeys(HEADS, 0)
    firsts = set()
    for model in study.MODELS:
        phases = run_config.study_phases(model, steps)
        for i, p in enumerate(phases):
            if i == 0 and len(phases) > 1:
                if p.name in firsts:
                    continue  # trained once per first objective
                firsts.add(p.name)
            mix[heads[p.name]] += int(p.steps)
    return mix


def main(argv) -> None:
    from fastvgs_jax import host_memory  # noqa: PLC0415

    host_memory.keep_freed_memory()  # as every launcher: large buffers stay mapped
    import jax
    import numpy as np
    import step_timing

    import configs.study
    from fastvgs_jax.models import sharding
    from fastvgs_jax.train import config as run_config
    from fastvgs_jax.train import loop

    settings = configs.study.get_config(FLAGS.preset)
    config = settings.run
    for dotted in argv[1:]:
        _override(config, dotted)
    config.phases = run_config.study_phases("vgsplus", 10)
    loop.prepare(config)
    mesh = sharding.make_mesh(loop.resolve_mesh_shape(config.mesh_shape, jax.device_count()))
    host_batch = step_timing.synthetic_batch(config, np.random.default_rng(0))
    batch = loop._device_batch(host_batch, mesh)
    stream = config.data.audio_image
    result = {"preset": FLAGS.preset, "overrides": argv[1:], "machine_cpus": os.cpu_count()}
    result.update(batch=stream.batch_size, seconds=stream.crop_seconds)
    result["frames"] = int(host_batch["frame_mask"].shape[1])
    for heads, (ssl, vgs) in HEADS.items():
        state, step = step_timing.trainer_step(config, mesh, ssl, vgs)
        times, state, _ = step_timing.time_steps(step, state, batch, mesh, FLAGS.steps)
        steady = statistics.median(times[1:])
        result[heads] = {
            "step_seconds": round(steady, 3),
            "compile_seconds": round(times[0] - steady, 2),
        }
    result["parameters"] = int(sum(np.size(x) for x in jax.tree.leaves(state.params)))
    study_steps = FLAGS.study_steps or int(settings.steps)
    mix = _study_mix(study_steps)
    result["study_steps"] = study_steps
    result["model_steps"] = mix
    seconds = sum(mix[h] * result[h]["step_seconds"] for h in HEADS)
    result["training_minutes"] = round(seconds / 60, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    app.run(main)
