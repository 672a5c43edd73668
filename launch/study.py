"""Run the sequential-vs-simultaneous study end to end (see configs/study.py).

    python launch/study.py                                  # the demo study
    python launch/study.py --config=configs/study.py:quick  # ≤ 10 minutes

Builds the corpus if absent, trains the nine models (finished ones are kept), evaluates
them and writes results/<study>/table.md, results.json and plots/.
"""

import os

import jax
from absl import app
from ml_collections import config_flags

from fastvgs_jax import study
from fastvgs_jax.train import reporting

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(__file__), "..", "configs", "study.py"),
    "Study settings.",
    lock_config=True,
)


def main(argv) -> None:
    del argv
    reporting.quiet_library_logs()
    settings = _CONFIG.value
    # Nine models share a handful of step and evaluation programs: compile each once, also
    # across reruns of the study.
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.join(settings.out, ".jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    study.run_study(settings)
    with open(os.path.join(settings.out, "table.md")) as f:
        print(f.read())


if __name__ == "__main__":
    app.run(main)
