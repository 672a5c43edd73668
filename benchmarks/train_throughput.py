"""Training-step throughput and MFU of the trainer's jitted step on this machine, one JSON line.

    python benchmarks/train_throughput.py                    # demo and base, remat off/on, mesh
    python benchmarks/train_throughput.py --variants=demo    # one variant
    python benchmarks/train_throughput.py --config base --precision bf16 --vs_hf
                                                             # base at 64 × 8 s on a GPU, vs HF

Each variant runs in its own process (its own device count, a clean peak RSS): the run
config's model and optimiser, one VGS+ step (α = 0.5: SSL head and VGS branch both run) on a
synthetic batch of the config's global batch shape (noise audio, every frame valid; the
pipeline is measured by benchmarks/data_pipeline.py), jitted exactly as the trainer jits it,
at the run's ``--precision`` (bf16: bf16 compute, fp32 parameters and optimiser state).

Variants (``--variants``, or ``--config`` for one): ``demo`` (configs/demo.py: the small log-mel
model, 16 × 4 s), ``demo_remat``, ``demo_8dev`` (the same global batch split over 8 simulated
CPU devices: the mesh overhead), ``base`` and ``base_remat`` (the paper's CNN + 12 × 768
encoder at ``--batch`` × ``--seconds``: by default the paper's 64 × 8 s on an accelerator,
4 × 4 s on CPU).

Fields per variant: compile_seconds (first call minus a steady step), step_seconds (median)
and step_seconds_all, steps_per_second, audio_seconds_per_second, peak_rss_gb, peak_device_gb
(the accelerator allocator's peak over the step's compile and runs; null on CPU, which keeps
no statistics), parameters, batch, seconds, precision, device_kind; analytic_flops_per_step
(model FLOPs, ``train.flops.step_flops``; remat recomputation apart in recompute_flops) and
xla_flops_per_step (XLA's cost analysis of the lowered step) with analytic_over_xla,
achieved_flops_per_second (analytic / step), peak_flops with peak_source
(``train.mfu.device_peak(precision)``) and mfu.

``--vs_hf`` (variants with the CNN frontend) adds ``vs_hf``, measured in a process of its own
(the accelerator holds only what this comparison allocates): HF transformers' PyTorch
``Wav2Vec2ForPreTraining`` forward + backward of the wav2vec 2.0 loss (weights exported from
ours, masks and negatives drawn as our trainer draws them; on CUDA when torch sees a GPU, else
the CPU; bf16 autocast with --precision=bf16) alternating with our trainer step with the SSL
head only (``ssl=True, vgs=False``: forward, backward and the optimiser update, which HF's step
lacks) on the same batch shape, medians of ``--hf_repeats`` each. ``speedup_vs_hf`` is HF's
step time over our SSL-only step's (the like-for-like ratio); ``full_step_speedup_vs_hf`` sets
our full SSL + VGS step's audio-s/s against HF's.

Out of device memory (the paper's 64 × 8 s on one card; or jax and torch together in the
comparison, each holding its peak: jax's allocator keeps its pool), a step or comparison is
rerun in a fresh process at half the batch, at most twice; its ``batch`` is the one that ran and
its ``attempts`` lists the runs that ran out of memory.
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
MFU_GOAL, SPEEDUP_GOAL = 0.45, 3.0  # the targets for the base config in bf16
OUT_OF_MEMORY = "out of memory"

flags.DEFINE_list("variants", list(VARIANTS), f"Which of {VARIANTS}.")
flags.DEFINE_list("config", None, f"Alias of --variants (e.g. --config base); of {VARIANTS}.")
flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16"], "The run config's precision.")
flags.DEFINE_integer("steps", 5, "Timed steps per variant (after the compiling one).")
flags.DEFINE_integer(
    "batch", None, "Utterances per base step (default: the paper's 64 on an accelerator; 4 on CPU)."
)
flags.DEFINE_float(
    "seconds",
    None,
    "Seconds per base utterance (default: the paper's 8 on an accelerator; 4 on CPU).",
)
flags.DEFINE_alias("base_batch", "batch")
flags.DEFINE_alias("base_seconds", "seconds")
flags.DEFINE_bool("vs_hf", False, "Also time HF PyTorch wav2vec2's SSL step (CNN variants).")
flags.DEFINE_integer("hf_repeats", 5, "Timed steps of each side with --vs_hf (alternating).")
flags.DEFINE_integer("hf_batch", None, "Utterances per --vs_hf step (default: the variant's).")
flags.DEFINE_string("_child", None, "Internal: run one variant in this process.")
flags.DEFINE_enum("_part", "step", ["step", "vs_hf"], "Internal: what the child measures.")
FLAGS = flags.FLAGS


def _variant_config(name: str, platform: str, batch: int | None = None):
    """The run config of a variant; ``batch`` overrides --batch (base variants)."""
    import step_timing  # this directory

    import configs.demo
    from fastvgs_jax.train import config as run_config

    if name.startswith("demo"):
        config = configs.demo.get_config()
    else:
        config = run_config.study_model_config("vgsplus", "base,small,1000")
        default_batch, seconds = step_timing.default_base_shape(platform)
        batch = batch or FLAGS.batch or default_batch
        seconds = seconds if FLAGS.seconds is None else FLAGS.seconds
        for kind in ("audio_image", "audio_only"):
            config.data[kind].batch_size = batch
            config.data[kind].crop_seconds = seconds
    config.model.remat = name.endswith("_remat")
    config.precision = FLAGS.precision
    return config


def _rss_gb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def _gb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**30, 3)


def _run_step(name: str) -> dict:
    """The trainer's SSL + VGS step of one variant: time, FLOPs, MFU, memory."""
    import jax
    import numpy as np
    import step_timing  # this directory: imports jax, so only in the child

    from fastvgs_jax.models import sharding
    from fastvgs_jax.train import loop, mfu

    config = _variant_config(name, jax.default_backend())
    stream = config.data.audio_image
    loop.prepare(config)
    mesh = sharding.make_mesh(loop.resolve_mesh_shape(config.mesh_shape, jax.device_count()))
    host_batch = step_timing.synthetic_batch(config, np.random.default_rng(0))
    try:
        state, step = step_timing.trainer_step(config, mesh, ssl=True, vgs=True)
        batch = loop._device_batch(host_batch, mesh)
        times, state, metrics = step_timing.time_steps(step, state, batch, mesh, FLAGS.steps)
    except Exception as error:  # noqa: BLE001 - the parent retries smaller on running out
        if not _out_of_memory(error):
            raise
        return {
            "variant": name,
            "batch": stream.batch_size,
            "seconds": stream.crop_seconds,
            "error": OUT_OF_MEMORY,
            "message": str(error)[:400],
        }
    peak_device = step_timing.peak_device_bytes()
    steady = statistics.median(times[1:])
    cost = step_timing.step_cost(config, step, state, host_batch, mesh, ssl=True, vgs=True)
    peak, source = mfu.device_peak(config.precision, config.get("peak_flops_per_device"))
    ratio = cost["analytic_over_xla"]
    return {
        "variant": name,
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "parameters": int(sum(np.size(x) for x in jax.tree.leaves(state.params))),
        "frontend": config.model.frontend,
        "layers": config.model.num_layers,
        "hidden_dim": config.model.hidden_dim,
        "remat": bool(config.model.remat),
        "precision": config.precision,
        "batch": stream.batch_size,
        "seconds": stream.crop_seconds,
        "compile_seconds": round(times[0] - steady, 2),
        "step_seconds": round(steady, 4),
        "step_seconds_all": [round(t, 4) for t in times[1:]],
        "steps_per_second": round(1 / steady, 3),
        "audio_seconds_per_second": round(stream.batch_size * stream.crop_seconds / steady, 2),
        "analytic_flops_per_step": cost["analytic"],
        "recompute_flops": cost["recompute"],
        "xla_flops_per_step": cost["xla"],
        "analytic_over_xla": None if ratio is None else round(ratio, 4),
        "achieved_flops_per_second": cost["analytic"] / steady,
        "peak_flops": peak,
        "peak_source": source,
        "mfu": round(mfu.mfu(cost["analytic"], 1 / steady, peak), 4),
        "peak_device_gb": _gb(peak_device),
        "peak_rss_gb": _rss_gb(),
        "loss_finite": bool(metrics["finite"]),
    }


def _out_of_memory(error: BaseException) -> bool:
    text = f"{type(error).__name__}: {error}"
    return "OutOfMemory" in text or "RESOURCE_EXHAUSTED" in text or OUT_OF_MEMORY in text.lower()


def _run_vs_hf(name: str) -> dict:
    """Our SSL-only trainer step against HF's SSL step, alternating (see the docstring)."""
    import jax
    import numpy as np
    import step_timing  # this directory
    import step_vs_hf  # this directory (the parity extra: torch, transformers)
    import torch
    import transformers

    from fastvgs_jax.models import sharding
    from fastvgs_jax.train import loop, mfu

    config = _variant_config(name, jax.default_backend(), FLAGS.hf_batch)
    stream = config.data.audio_image
    shape = {"batch": stream.batch_size, "seconds": stream.crop_seconds}
    if config.model.frontend != "cnn":
        return {**shape, "skipped": f"the {config.model.frontend} frontend: HF has the CNN one"}
    loop.prepare(config)
    mesh = sharding.make_mesh(loop.resolve_mesh_shape(config.mesh_shape, jax.device_count()))
    host_batch = step_timing.audio_only(
        step_timing.synthetic_batch(config, np.random.default_rng(0))
    )
    device = step_vs_hf.torch_device()
    try:
        state, step = step_timing.trainer_step(config, mesh, ssl=True, vgs=False)
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        hf = step_vs_hf.hf_pretraining_model(variables, config.model, device)
        del variables
        masked, negatives = step_vs_hf.ssl_inputs(config.model, host_batch["frame_mask"])
        run_hf = step_vs_hf.hf_step(
            hf, host_batch["audio"], masked, negatives, config.precision, device
        )
        cost = step_timing.step_cost(config, step, state, host_batch, mesh, ssl=True, vgs=False)
        run_ours = step_timing.stepper(step, state, loop._device_batch(host_batch, mesh), mesh)
        del state  # donated to the first step; run_ours carries it
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        pause = 0.5 if jax.default_backend() == "cpu" else 0.0  # CPU: the other's threads idle
        times, _, _ = step_vs_hf.alternate(
            {"ours": run_ours, "hf": run_hf}, FLAGS.hf_repeats, pause
        )
    except Exception as error:  # noqa: BLE001 - the parent retries smaller on running out
        if not _out_of_memory(error):
            raise
        return {**shape, "error": OUT_OF_MEMORY, "message": str(error)[:400]}
    ours, theirs = statistics.median(times["ours"]), statistics.median(times["hf"])
    audio_seconds = stream.batch_size * stream.crop_seconds
    peak, source = mfu.device_peak(config.precision, config.get("peak_flops_per_device"))
    jax_peak = step_timing.peak_device_bytes()
    return {
        "what": (
            "ours: the trainer step with the SSL head only (ssl=True, vgs=False; forward, "
            "backward, optimiser update); hf: transformers Wav2Vec2ForPreTraining forward + "
            "backward of the wav2vec 2.0 loss (no optimiser); same batch shape and weights; "
            "alternating, medians"
        ),
        **shape,
        "hf_device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "hf_autocast": "bf16" if config.precision == "bf16" else None,
        "hf_attn_implementation": getattr(hf.config, "_attn_implementation", None),
        "repeats": FLAGS.hf_repeats,
        "ours_ssl_step_seconds": round(ours, 4),
        "hf_step_seconds": round(theirs, 4),
        "ours_ssl_step_seconds_all": [round(t, 4) for t in times["ours"]],
        "hf_step_seconds_all": [round(t, 4) for t in times["hf"]],
        "ours_ssl_audio_seconds_per_second": round(audio_seconds / ours, 2),
        "hf_audio_seconds_per_second": round(audio_seconds / theirs, 2),
        "speedup_vs_hf": round(theirs / ours, 3),
        "ours_ssl_analytic_flops_per_step": cost["analytic"],
        "ours_ssl_xla_flops_per_step": cost["xla"],
        "ours_ssl_mfu": round(mfu.mfu(cost["analytic"], 1 / ours, peak), 4),
        "hf_mfu_same_flops": round(mfu.mfu(cost["analytic"], 1 / theirs, peak), 4),
        "peak_source": source,
        "ours_peak_device_gb_process": _gb(jax_peak),
        "hf_peak_device_gb": _gb(torch.cuda.max_memory_allocated()) if device == "cuda" else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def _child_env(name: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    devices = 8 if name.endswith("_8dev") else 1
    xla_flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{xla_flags} --xla_force_host_platform_device_count={devices}".strip()
    if FLAGS.vs_hf:  # torch allocates on the same accelerator: jax must not take 75 % up front
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def _spawn(name: str, part: str, batch: int | None = None) -> dict | None:
    """One child's JSON line (None if it failed: its log is on our stderr); ``batch``
    overrides the base variants' --batch (part "step") or --hf_batch (part "vs_hf")."""
    command = [sys.executable, __file__, f"--_child={name}", f"--_part={part}"]
    command += [f"--steps={FLAGS.steps}", f"--precision={FLAGS.precision}"]
    command += [f"--hf_repeats={FLAGS.hf_repeats}", "--vs_hf" if FLAGS.vs_hf else "--novs_hf"]
    step_batch = batch if part == "step" and batch else FLAGS.batch
    for flag, value in (("batch", step_batch), ("seconds", FLAGS.seconds)):
        if value is not None:
            command.append(f"--{flag}={value}")
    if part == "vs_hf" and batch:
        command.append(f"--hf_batch={batch}")
    # The child's log goes to our stderr as it runs; its stdout holds the JSON line.
    done = subprocess.run(
        command, env=_child_env(name), stdout=subprocess.PIPE, text=True, check=False
    )
    if done.returncode != 0:
        print(f"train_throughput: {name} {part} exited {done.returncode}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _halving(name: str, part: str, batch: int | None) -> dict | None:
    """A child's result, rerun at half the batch (at most twice) while it runs out of device
    memory; the runs that did are listed in its ``attempts``."""
    attempts = []
    while True:
        result = _spawn(name, part, batch)
        if result is None or result.get("error") != OUT_OF_MEMORY:
            break
        attempts.append(result)
        if result["batch"] <= 1 or len(attempts) > 2:
            break
        batch = result["batch"] // 2
    if result is not None:
        result["attempts"] = attempts
    return result


def _compare_with_hf(name: str, step: dict) -> dict:
    """The vs_hf field of a variant (see the module docstring)."""
    result = _halving(name, "vs_hf", FLAGS.hf_batch or step["batch"])
    if result is None:
        return {"error": "the comparison failed (see the log)"}
    if "hf_audio_seconds_per_second" in result:
        result["full_step_speedup_vs_hf"] = round(
            step["audio_seconds_per_second"] / result["hf_audio_seconds_per_second"], 3
        )
    return result


def main(argv) -> None:
    del argv
    from fastvgs_jax import host_memory  # noqa: PLC0415

    host_memory.keep_freed_memory()  # as every launcher: large buffers stay mapped
    if FLAGS._child:
        run = _run_step if FLAGS._part == "step" else _run_vs_hf
        print(json.dumps(run(FLAGS._child)))
        return
    names = FLAGS.config or FLAGS.variants
    for name in names:
        if name not in VARIANTS:
            raise app.UsageError(f"unknown variant {name!r}; expected some of {VARIANTS}")
    results = {}
    for name in names:
        step = _halving(name, "step", None)
        if step is None or "error" in step:
            raise RuntimeError(f"variant {name} failed: {step and step['error']}; see the log")
        # Logged at once: a run stopped later (a device lease's limit) keeps these figures.
        print(f"train_throughput partial {json.dumps(step)}", file=sys.stderr, flush=True)
        if FLAGS.vs_hf:
            step["vs_hf"] = _compare_with_hf(name, step)
        results[name] = step
    summary = {"machine_cpus": os.cpu_count(), "precision": FLAGS.precision, "variants": results}
    if "demo" in results and "demo_8dev" in results:
        summary["mesh_8dev_overhead"] = round(
            results["demo_8dev"]["step_seconds"] / results["demo"]["step_seconds"], 3
        )
    for plain in ("demo", "base"):
        if plain in results and f"{plain}_remat" in results:
            summary[f"{plain}_remat_step_ratio"] = round(
                results[f"{plain}_remat"]["step_seconds"] / results[plain]["step_seconds"], 3
            )
    if "base" in results:
        base = results["base"]
        goals = {f"mfu>={MFU_GOAL}": base["mfu"] >= MFU_GOAL}
        speedup = base.get("vs_hf", {}).get("speedup_vs_hf")
        if speedup is not None:
            goals[f"speedup_vs_hf>={SPEEDUP_GOAL}"] = speedup >= SPEEDUP_GOAL
        summary["base_goals"] = goals
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    app.run(main)
