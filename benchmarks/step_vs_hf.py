"""Our jitted SSL forward+backward step vs HF transformers' PyTorch wav2vec2, one JSON line.

    python benchmarks/step_vs_hf.py                                   # base width, 4 layers
    python benchmarks/step_vs_hf.py --full                            # + the 12-layer base, 2 × 8 s
    python benchmarks/step_vs_hf.py --precision=bf16 --full --pause=0 # a GPU: bf16, HF autocast
    python benchmarks/step_vs_hf.py --config=configs/model.py:base --config.num_layers=12 \
        --batch 8 --seconds 8                                         # the paper's encoder

Both sides get the same weights (ours exported to HF), the same batch, the same span masks
and negatives, dropout on, and do one forward + backward of the wav2vec 2.0 loss; runs
alternate (ours, HF, ours, HF, ...) in one process after warm-up, and the medians are
reported. Ours runs on jax's default device; HF on CUDA when torch sees a GPU, else the CPU.
``--precision=bf16``: our bf16 compute (fp32 parameters, as the trainer's bf16) against HF
under ``torch.autocast(bfloat16)``. Needs the parity extra.

Fields: audio_seconds_per_second for ours and HF and their ratio (``speedup_vs_hf``, HF's
step time over ours), every timed step of each; peak resident-memory growth during a step for
each (sampled every 2 ms), XLA's own memory analysis for ours, and on an accelerator the
device's peak bytes (ours: jax's allocator, this process so far; HF: torch's, this
comparison); FLOPs per step from XLA's cost analysis and the analytic count
(``train.flops.step_flops``), the FLOP/s achieved, MFU against ``train.mfu.device_peak``
(with its source) and the machine's measured dense fp32 matmul peak; device and thread counts.
With ``--full`` the line also holds ``full`` (the same fields for the 12-layer base encoder at
``--full_batch`` × ``--full_seconds``) and ``speedup_vs_hf_by_layers`` (both ratios).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import psutil
import step_timing  # this directory
from absl import app, flags
from ml_collections import config_flags

from fastvgs_jax import host_memory
from fastvgs_jax.convert import wav2vec2 as convert
from fastvgs_jax.models import fastvgs, masking, speech
from fastvgs_jax.train import flops as flops_lib
from fastvgs_jax.train import mfu, objectives

FLAGS = flags.FLAGS
_CONFIG = None  # the --config holder, defined with the flags when run as a script


def _define_flags() -> None:
    """This script's flags (not defined on import: train_throughput.py imports the helpers)."""
    global _CONFIG
    _CONFIG = config_flags.DEFINE_config_file(
        "config",
        os.path.join(os.path.dirname(__file__), "..", "configs", "model.py:base"),
        "Model config (the CNN frontend; HF has no other).",
    )
    flags.DEFINE_integer("batch", 4, "Utterances per step.")
    flags.DEFINE_float("seconds", 4.0, "Audio seconds per utterance.")
    flags.DEFINE_integer("repeats", 5, "Timed steps per implementation (alternating).")
    flags.DEFINE_integer("layers", 4, "Transformer layers, unless --config.num_layers is given.")
    flags.DEFINE_enum(
        "prng_impl",
        "threefry2x32",
        ["threefry2x32", "rbg", "unsafe_rbg"],
        "PRNG behind our masks, negatives, dropout and Gumbel noise (rbg: XLA's RngBitGenerator).",
    )
    flags.DEFINE_float(
        "pause", 0.5, "Seconds idle before each timed step (spinning threads settle)."
    )
    flags.DEFINE_enum(
        "precision", "fp32", ["fp32", "bf16"], "Compute dtype (bf16: HF under torch.autocast)."
    )
    flags.DEFINE_enum(
        "host_memory",
        "keep",
        list(host_memory.MODES),
        "keep: freed host memory stays mapped (fastvgs_jax.host_memory, as launch/train.py);"
        " system: the C library's default, large buffers page-fault at every step.",
    )
    flags.DEFINE_bool("full", False, "Also compare the full base encoder (--full_layers).")
    flags.DEFINE_integer("full_layers", 12, "Transformer layers of the --full comparison.")
    flags.DEFINE_integer("full_batch", 2, "Utterances per step of the --full comparison.")
    flags.DEFINE_float("full_seconds", 8.0, "Seconds per utterance of the --full comparison.")


class PeakRss:
    """Peak resident-set growth over a block, sampled by a background thread."""

    def __init__(self, period: float = 0.002):
        self.period, self.peak, self._stop = period, 0, threading.Event()

    def __enter__(self):
        self._process = psutil.Process()
        self.base = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss - self.base)
            time.sleep(self.period)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def matmul_peak_flops(n: int = 2048, repeats: int = 10) -> float:
    """Measured dense fp32 matmul FLOP/s of this machine through XLA."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        f(a).block_until_ready()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def torch_device() -> str:
    """Where the HF side runs: "cuda" when torch sees a GPU, else "cpu"."""
    import torch  # noqa: PLC0415 (parity extra)

    return "cuda" if torch.cuda.is_available() else "cpu"


def ssl_inputs(config, frame_mask: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(span masks [B, T] bool, negatives [B, T, K] frame indices within each utterance), drawn
    as our trainer draws them, for the model ``config``'s masking and ``num_negatives``."""
    m = config.masking
    valid = jnp.asarray(frame_mask)
    masked = masking.mask_spans(jax.random.key(seed), valid, m.prob, m.span, m.min_spans)
    negatives = masking.sample_negatives(jax.random.key(seed + 1), masked, config.num_negatives)
    return np.asarray(masked), np.asarray(negatives)


def hf_pretraining_model(variables, config, device: str):
    """HF ``Wav2Vec2ForPreTraining`` holding our ``variables`` (exported through
    ``convert.save_hf``: the CNN frontend; a CLS token, which HF lacks, is left out), in train
    mode (dropout on) on ``device``."""
    import transformers  # noqa: PLC0415 (parity extra)

    with tempfile.TemporaryDirectory(prefix="fastvgs-bench-hf-") as hf_dir:
        convert.save_hf(variables, config, hf_dir)
        hf = transformers.Wav2Vec2ForPreTraining.from_pretrained(hf_dir)
        hf = hf.to(device).train()
    return hf


def hf_step(
    hf, audio: np.ndarray, masked: np.ndarray, negatives: np.ndarray, precision: str, device: str
) -> Callable[[int], None]:
    """``run(i)``: one HF forward + backward of the wav2vec 2.0 loss on ``audio`` [B, samples]
    with our ``masked`` frames and ``negatives`` (under bf16 autocast when ``precision`` is
    "bf16"; the backward outside it, as torch advises), waiting for the device."""
    import torch  # noqa: PLC0415 (parity extra)

    frames = masked.shape[1]
    offsets = (np.arange(masked.shape[0]) * frames)[:, None, None]  # HF indexes the flat batch
    inputs = dict(
        input_values=torch.from_numpy(np.ascontiguousarray(audio)).to(device),
        mask_time_indices=torch.from_numpy(masked.copy()).to(device),
        sampled_negative_indices=torch.from_numpy(negatives + offsets).to(device),
    )

    def run(i: int) -> None:
        del i
        hf.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = hf(**inputs).loss
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def alternate(
    steps: dict[str, Callable[[int], None]], repeats: int, pause: float, warmup: int = 3
) -> tuple[dict[str, list[float]], dict[str, int], dict[str, float]]:
    """Run ``steps`` in turn (a, b, a, b, ...) ``repeats`` times after ``warmup`` untimed
    rounds (compiles, autotuning, allocator growth); returns ({name: wall seconds of each
    step}, {name: peak resident-set growth in bytes during its steps}, {name: median minor
    page faults per step: fresh pages the allocator hands out, ~0 once freed memory is kept})."""
    for _ in range(warmup):
        for run in steps.values():
            run(0)
    times = {name: [] for name in steps}
    faults = {name: [] for name in steps}
    peaks = dict.fromkeys(steps, 0)
    for i in range(repeats):
        for name, run in steps.items():
            if pause:
                time.sleep(pause)  # OpenMP / Eigen workers of the other side stop spinning
            with PeakRss() as rss:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start = time.perf_counter()
                run(i)
                times[name].append(time.perf_counter() - start)
                faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
            peaks[name] = max(peaks[name], rss.peak)
    return times, peaks, {name: statistics.median(f) for name, f in faults.items()}


def compare(
    config,
    batch_size: int,
    seconds: float,
    *,
    repeats: int,
    pause: float,
    prng_impl: str,
    precision: str,
) -> dict:
    """One comparison (see the module docstring) of the model ``config`` on a batch of
    ``batch_size`` × ``seconds`` of noise audio; returns the fields of the JSON line."""
    import torch  # noqa: PLC0415 (parity extra)

    config = copy.deepcopy(config)
    config.vgs_layer = min(config.vgs_layer, config.num_layers)
    config.frontend = "cnn"
    config.use_cls = False  # HF has no CLS: compare the same network
    samples = int(seconds * 16_000)
    frames = speech.frame_geometry(config).num_frames(samples)

    rng = np.random.default_rng(0)
    audio = rng.standard_normal((batch_size, samples)).astype(np.float32)
    frame_mask = np.ones((batch_size, frames), bool)
    masked, negatives = ssl_inputs(config, frame_mask)

    # Ours: the wav2vec 2.0 loss through the same objective the trainer uses.
    dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
    model = fastvgs.FaSTVGSPlus(config, dtype=dtype)
    variables = fastvgs.init_variables(config, jax.random.key(0))
    batch = {"audio": jnp.asarray(audio), "frame_mask": jnp.asarray(frame_mask)}

    def loss_fn(params, batch_stats, batch, key):
        return objectives.joint_loss(model, params, batch_stats, batch, key, 0, 0.0, vgs=False)

    ours_step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    key0 = jax.random.key(0, impl=prng_impl)
    lowered = ours_step.lower(variables["params"], variables["batch_stats"], batch, key0)
    compiled = lowered.compile()
    flops = flops_lib.xla_step_flops(compiled)
    flops = float("nan") if flops is None else flops
    analytic = flops_lib.step_flops(config, batch_size, samples, ssl=True, vgs=False)["total"]
    memory = compiled.memory_analysis()
    xla_bytes = None
    if memory is not None:
        xla_bytes = int(
            memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes
        )

    def run_ours(i):
        key = jax.random.key(i, impl=prng_impl)
        out = compiled(variables["params"], variables["batch_stats"], batch, key)
        jax.block_until_ready(out)

    # HF: the same weights, masks and negatives.
    device = torch_device()
    hf = hf_pretraining_model(variables, config, device)
    run_hf = hf_step(hf, audio, masked, negatives, precision, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, peaks, faults = alternate({"ours": run_ours, "hf": run_hf}, repeats, pause)
    hf_device_mb = None
    if device == "cuda":
        hf_device_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1)

    jax_peak = step_timing.peak_device_bytes()
    audio_seconds = batch_size * seconds
    ours_s, hf_s = statistics.median(times["ours"]), statistics.median(times["hf"])
    peak = matmul_peak_flops()
    device_peak, device_peak_source = mfu.device_peak(precision)
    result = {
        "benchmark": "ssl_step_vs_hf",
        "config": {
            "size": config.size,
            "num_layers": config.num_layers,
            "hidden_dim": config.hidden_dim,
            "batch": batch_size,
            "seconds": seconds,
            "frames": frames,
            "masked_frames_per_utterance": int(masked[0].sum()),
            "negatives": config.num_negatives,
        },
        "precision": precision,
        "ours_audio_seconds_per_second": round(audio_seconds / ours_s, 3),
        "hf_audio_seconds_per_second": round(audio_seconds / hf_s, 3),
        "speedup_vs_hf": round(hf_s / ours_s, 3),
        "ours_step_seconds_median": round(ours_s, 4),
        "hf_step_seconds_median": round(hf_s, 4),
        "ours_step_seconds_all": [round(t, 4) for t in times["ours"]],
        "hf_step_seconds_all": [round(t, 4) for t in times["hf"]],
        "ours_peak_rss_growth_mb": round(peaks["ours"] / 2**20, 1),
        "hf_peak_rss_growth_mb": round(peaks["hf"] / 2**20, 1),
        "ours_page_faults_per_step": faults["ours"],
        "hf_page_faults_per_step": faults["hf"],
        "ours_xla_memory_mb": None if xla_bytes is None else round(xla_bytes / 2**20, 1),
        "ours_peak_device_mb_process": None if jax_peak is None else round(jax_peak / 2**20, 1),
        "hf_peak_device_mb": hf_device_mb,
        "ours_flops_per_step": flops,
        "ours_analytic_flops_per_step": analytic,
        "ours_achieved_gflops": round(flops / ours_s / 1e9, 2),
        "matmul_peak_gflops": round(peak / 1e9, 2),
        "ours_fraction_of_peak": round(flops / ours_s / peak, 3),
        "device_peak_flops": device_peak,
        "device_peak_source": device_peak_source,
        "ours_mfu": round(mfu.mfu(analytic, 1.0 / ours_s, device_peak), 4),
        "hf_mfu": round(mfu.mfu(analytic, 1.0 / hf_s, device_peak), 4),
        "prng_impl": prng_impl,
        "device": jax.devices()[0].device_kind,
        "hf_device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "hf_attn_implementation": getattr(hf.config, "_attn_implementation", None),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    del hf, run_hf
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def main(argv) -> None:
    del argv
    kept = host_memory.keep_freed_memory(FLAGS.host_memory)  # before any thread allocates
    import torch  # noqa: PLC0415 (parity extra)
    import transformers  # noqa: PLC0415

    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the device
    base = copy.deepcopy(_CONFIG.value)
    config = copy.deepcopy(base)
    if "num_layers" not in FLAGS["config"].override_values:
        config.num_layers = FLAGS.layers
    options = dict(
        repeats=FLAGS.repeats,
        pause=FLAGS.pause,
        prng_impl=FLAGS.prng_impl,
        precision=FLAGS.precision,
    )
    result = compare(config, FLAGS.batch, FLAGS.seconds, **options)
    if FLAGS.full:
        full = copy.deepcopy(base)
        full.num_layers = FLAGS.full_layers
        result["full"] = compare(full, FLAGS.full_batch, FLAGS.full_seconds, **options)
        result["speedup_vs_hf_by_layers"] = {
            f"{r['config']['num_layers']}_layers": r["speedup_vs_hf"]
            for r in (result, result["full"])
        }
    result["host_memory"] = FLAGS.host_memory if kept else "system"
    result["versions"] = {
        "jax": jax.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
