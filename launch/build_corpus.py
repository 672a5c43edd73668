"""Builds the embedded spoken-scenes corpus and writes examples to look at.

    python launch/build_corpus.py --size small --data_dir data --show 8 --out examples

Same as ``python -m fastvgs_jax.data.build``; the logic lives in that module.
"""

from absl import app

from fastvgs_jax.data import build

if __name__ == "__main__":
    build.define_flags()
    app.run(build.main)
