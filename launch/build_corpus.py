"""Builds the embedded spoken-scenes corpus and writes examples to look at.

    python launch/build_corpus.py --size small --data_dir data --show 8 --out examples

Same as ``python -m fastvgs_jax.data.build``; the logic lives in that module.

A mistake on the command line (a mistyped flag or config field, a missing run or snapshot)
ends with one line ``error: …`` on stderr and exit status 2; ``FASTVGS_VERBOSE=1`` also prints
its traceback.
"""

from fastvgs_jax import cli
from fastvgs_jax.data import build

if __name__ == "__main__":
    build.define_flags()
    cli.run(build.main)
