"""ABX and retrieval evaluation speed, as one JSON line.

    python benchmarks/abx_speed.py                      # ~20 s on 2 cores, oracle included
    python benchmarks/abx_speed.py --speakers 6 --dim 256 --no_retrieval
    FASTVGS_ABX_ORACLE_PYTHON=/path/to/side-venv/bin/python python benchmarks/abx_speed.py

ABX: a synthetic triphone item set (``abx.synthetic_abx_set``) scored by ``abx_error``; when
the reference ``zerospeech-libriabx`` is reachable (docs/abx.md) it scores the same features
and item file, and the line reports both scores and the speed ratio. With the defaults no group
exceeds 10 tokens and no cell has more than 5 other speakers, so the reference's unseeded
draws do not apply and the scores must agree.

Retrieval: ``retrieval.retrieval_recalls`` at SpokenCOCO test scale (5,000 images,
25,000 captions, 768-d random float32 embeddings).

Fields: abx_items, abx_tokens_used, abx_seconds, abx_within/abx_across (%), oracle_* (null
without the oracle), oracle_speed_ratio (oracle seconds / ours; the oracle's include a few
seconds of interpreter and torch start-up), retrieval_seconds (second call; first_call
includes compilation), retrieval_recalls, blas_threads, omp_threads, cpu_count.

OpenBLAS and OpenMP threads default to 1 here (set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS to
override), for us and for the oracle's torch alike: the ABX products are ~100x100 blocks that
threads barely speed up, and on a shared machine spinning BLAS threads made both
implementations 10-30x slower and their timings erratic. Retrieval runs in JAX (XLA's own
thread pool), which this does not affect.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the oracle's torch

import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from fastvgs_jax.eval import abx  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("speakers", 6, "Synthetic speakers (<= 6 keeps X draws deterministic).")
flags.DEFINE_integer("phones", 6, "Synthetic phones.")
flags.DEFINE_integer("contexts", 6, "Synthetic contexts.")
flags.DEFINE_integer("tokens_per_group", 5, "At most this many tokens per (ctx, spk, phone).")
flags.DEFINE_integer("dim", 768, "Feature dimension.")
flags.DEFINE_float("noise", 6.0, "Synthetic frame noise (6 at 768-d: errors near 20 %).")
flags.DEFINE_integer("seed", 0, "Synthetic-set and ABX seed.")
flags.DEFINE_bool("oracle", True, "Also time the reference package if it is reachable.")
flags.DEFINE_bool("no_retrieval", False, "Skip the retrieval timing.")
flags.DEFINE_integer("images", 5000, "Retrieval: images.")
flags.DEFINE_integer("captions_per_image", 5, "Retrieval: captions per image.")


def time_abx() -> dict:
    features, items = abx.synthetic_abx_set(
        FLAGS.seed,
        num_speakers=FLAGS.speakers,
        num_phones=FLAGS.phones,
        num_contexts=FLAGS.contexts,
        max_tokens_per_group=FLAGS.tokens_per_group,
        dim=FLAGS.dim,
        noise=FLAGS.noise,
    )
    start = time.perf_counter()
    ours = abx.abx_error(features, items, seed=FLAGS.seed)
    seconds = time.perf_counter() - start
    out = {
        "abx_items": len(items),
        "abx_tokens_used": ours.num_items,
        "abx_dim": FLAGS.dim,
        "abx_seconds": round(seconds, 3),
        **{f"abx_{k}": round(v, 4) for k, v in ours.as_percent().items()},
        "oracle_within": None,
        "oracle_across": None,
        "oracle_seconds": None,
        "oracle_speed_ratio": None,
    }
    python = abx.oracle_python() if FLAGS.oracle else None
    if python is not None:
        start = time.perf_counter()  # includes writing the .npy files and starting torch
        theirs = abx.oracle_abx_error(features, items, python=python)
        oracle_seconds = time.perf_counter() - start
        out.update(
            oracle_within=round(100 * theirs["within"], 4),
            oracle_across=round(100 * theirs["across"], 4),
            oracle_seconds=round(oracle_seconds, 3),
            oracle_speed_ratio=round(oracle_seconds / seconds, 2),
        )
    return out


def time_retrieval() -> dict:
    from fastvgs_jax.eval import retrieval

    rng = np.random.default_rng(FLAGS.seed)
    num_captions = FLAGS.images * FLAGS.captions_per_image
    images = rng.standard_normal((FLAGS.images, 768), dtype=np.float32)
    audio = rng.standard_normal((num_captions, 768), dtype=np.float32)
    caption_image = np.repeat(np.arange(FLAGS.images), FLAGS.captions_per_image)
    args = (images, audio, caption_image)
    start = time.perf_counter()
    retrieval.retrieval_recalls(*args, ks=(1, 5, 10, 100))
    first = time.perf_counter() - start
    start = time.perf_counter()
    recalls = retrieval.retrieval_recalls(*args, ks=(1, 5, 10, 100))
    second = time.perf_counter() - start
    return {
        "retrieval_images": FLAGS.images,
        "retrieval_captions": num_captions,
        "retrieval_first_call_seconds": round(first, 3),
        "retrieval_seconds": round(second, 3),
        "retrieval_recalls": {k: round(float(v), 5) for k, v in recalls.items()},
    }


def main(argv):
    del argv
    out = time_abx()
    if not FLAGS.no_retrieval:
        out.update(time_retrieval())
    out["blas_threads"] = int(os.environ["OPENBLAS_NUM_THREADS"])
    out["omp_threads"] = int(os.environ["OMP_NUM_THREADS"])
    out["cpu_count"] = os.cpu_count()
    print(json.dumps(out))


if __name__ == "__main__":
    app.run(main)
