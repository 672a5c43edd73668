"""Our jitted SSL forward+backward step vs HF transformers' PyTorch wav2vec2, one JSON line.

    python benchmarks/step_vs_hf.py                                   # base width, 4 layers
    python benchmarks/step_vs_hf.py --config=configs/model.py:base --config.num_layers=12 \
        --batch 8 --seconds 8                                         # the paper's encoder

Both sides get the same weights (ours exported to HF), the same batch, the same span masks
and negatives, dropout on, and do one forward + backward of the wav2vec 2.0 loss; runs
alternate (ours, HF, ours, HF, ...) in one process after warm-up. Needs the parity extra.

Fields: audio_seconds_per_second for ours and HF and their ratio; peak resident-memory
growth during a step for each (sampled every 2 ms), plus XLA's own memory analysis for ours;
FLOPs per step from XLA's cost analysis, the FLOP/s achieved, and the machine's measured
dense fp32 matmul peak; device and thread counts.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import psutil
from absl import app, flags
from ml_collections import config_flags

from fastvgs_jax.convert import wav2vec2 as convert
from fastvgs_jax.models import fastvgs, masking, speech
from fastvgs_jax.train import objectives

FLAGS = flags.FLAGS
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
flags.DEFINE_float("pause", 0.5, "Seconds idle before each timed step (spinning threads settle).")


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


def main(argv) -> None:
    del argv
    import torch  # noqa: PLC0415 (parity extra)
    import transformers  # noqa: PLC0415

    config = _CONFIG.value
    if "num_layers" not in FLAGS["config"].override_values:
        config.num_layers = FLAGS.layers
    config.vgs_layer = min(config.vgs_layer, config.num_layers)
    config.frontend = "cnn"
    config.use_cls = False  # HF has no CLS: compare the same network
    samples = int(FLAGS.seconds * 16_000)
    frames = speech.frame_geometry(config).num_frames(samples)
    batch_size = FLAGS.batch

    rng = np.random.default_rng(0)
    audio = rng.standard_normal((batch_size, samples)).astype(np.float32)
    frame_mask = np.ones((batch_size, frames), bool)
    m = config.masking
    masked = np.asarray(
        masking.mask_spans(jax.random.key(0), jnp.asarray(frame_mask), m.prob, m.span, m.min_spans)
    )
    negatives = np.asarray(
        masking.sample_negatives(jax.random.key(1), jnp.asarray(masked), config.num_negatives)
    )

    # Ours: the wav2vec 2.0 loss through the same objective the trainer uses.
    model = fastvgs.FaSTVGSPlus(config)
    variables = fastvgs.init_variables(config, jax.random.key(0))
    batch = {"audio": jnp.asarray(audio), "frame_mask": jnp.asarray(frame_mask)}

    def loss_fn(params, batch_stats, batch, key):
        return objectives.joint_loss(model, params, batch_stats, batch, key, 0, 0.0, vgs=False)

    ours_step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    key0 = jax.random.key(0, impl=FLAGS.prng_impl)
    lowered = ours_step.lower(variables["params"], variables["batch_stats"], batch, key0)
    compiled = lowered.compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan")))
    memory = compiled.memory_analysis()
    xla_bytes = None
    if memory is not None:
        xla_bytes = int(
            memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes
        )

    def run_ours(i):
        key = jax.random.key(i, impl=FLAGS.prng_impl)
        out = compiled(variables["params"], variables["batch_stats"], batch, key)
        jax.block_until_ready(out)

    # HF: the same weights, masks and negatives.
    hf_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fastvgs-bench-hf-{os.getpid()}")
    convert.save_hf(variables, config, hf_dir)
    hf = transformers.Wav2Vec2ForPreTraining.from_pretrained(hf_dir).train()
    offsets = (np.arange(batch_size) * frames)[:, None, None]
    hf_inputs = dict(
        input_values=torch.from_numpy(audio),
        mask_time_indices=torch.from_numpy(masked.copy()),
        sampled_negative_indices=torch.from_numpy(negatives + offsets),
    )

    def run_hf(i):
        hf.zero_grad(set_to_none=True)
        hf(**hf_inputs).loss.backward()

    for _ in range(2):  # warm-up
        run_ours(0)
        run_hf(0)
    times = {"ours": [], "hf": []}
    peaks = {"ours": 0, "hf": 0}
    for i in range(FLAGS.repeats):
        for name, fn in (("ours", run_ours), ("hf", run_hf)):
            time.sleep(FLAGS.pause)  # OpenMP / Eigen workers of the other side stop spinning
            with PeakRss() as rss:
                start = time.perf_counter()
                fn(i)
                times[name].append(time.perf_counter() - start)
            peaks[name] = max(peaks[name], rss.peak)

    audio_seconds = batch_size * FLAGS.seconds
    ours_s, hf_s = statistics.median(times["ours"]), statistics.median(times["hf"])
    peak = matmul_peak_flops()
    print(
        json.dumps(
            {
                "benchmark": "ssl_step_vs_hf",
                "config": {
                    "size": config.size,
                    "num_layers": config.num_layers,
                    "hidden_dim": config.hidden_dim,
                    "batch": batch_size,
                    "seconds": FLAGS.seconds,
                    "frames": frames,
                    "masked_frames_per_utterance": int(masked[0].sum()),
                    "negatives": config.num_negatives,
                },
                "ours_audio_seconds_per_second": round(audio_seconds / ours_s, 3),
                "hf_audio_seconds_per_second": round(audio_seconds / hf_s, 3),
                "speedup_vs_hf": round(hf_s / ours_s, 3),
                "ours_step_seconds_median": round(ours_s, 4),
                "hf_step_seconds_median": round(hf_s, 4),
                "ours_peak_rss_growth_mb": round(peaks["ours"] / 2**20, 1),
                "hf_peak_rss_growth_mb": round(peaks["hf"] / 2**20, 1),
                "ours_xla_memory_mb": None if xla_bytes is None else round(xla_bytes / 2**20, 1),
                "ours_flops_per_step": flops,
                "ours_achieved_gflops": round(flops / ours_s / 1e9, 2),
                "matmul_peak_gflops": round(peak / 1e9, 2),
                "ours_fraction_of_peak": round(flops / ours_s / peak, 3),
                "prng_impl": FLAGS.prng_impl,
                "device": jax.devices()[0].device_kind,
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "machine": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
