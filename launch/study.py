"""Run the sequential-vs-simultaneous study end to end (see configs/study.py).

    python launch/study.py                                  # the demo study
    python launch/study.py --config=configs/study.py:quick  # ≤ 10 minutes (or: --quick)
    python launch/study.py --models=w2v2,vgs,w2v2_vgs --seeds=0,1 --steps=3000

--quick stands for --config=configs/study.py:quick, and --models, --seeds, --steps and --out
for --config.models, ... (any other field: --config.FIELD=VALUE).

Builds the corpus if absent, trains the nine models (finished ones are kept), evaluates
them and writes results/<study>/table.md, results.json and plots/.

A mistake on the command line (a mistyped flag or config field, a missing run or snapshot)
ends with one line ``error: …`` on stderr and exit status 2; ``FASTVGS_VERBOSE=1`` also prints
its traceback.
"""

import os
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from fastvgs_jax import cli, study
from fastvgs_jax.train import reporting

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "study.py")
SHORTCUTS = ("models", "seeds", "steps", "out")


def expand_shortcuts(argv: list[str]) -> list[str]:
    """The study's short flags rewritten as the config flags they stand for (flag files
    read first; the preset --quick names goes first, as config_flags wants it before any
    --config.FIELD)."""
    argv = flags.FLAGS.read_flags_from_files(argv, force_gnu=False)
    expanded, rest = argv[:1], iter(argv[1:])
    for arg in rest:
        name, has_value, value = arg.partition("=")
        if name == "--quick":
            if has_value:
                raise app.UsageError("--quick takes no value")
            if any(a.startswith("--config=") or a == "--config" for a in argv):
                raise app.UsageError("--quick is --config=configs/study.py:quick; give one")
            expanded.insert(1, f"--config={_DEFAULT_CONFIG}:quick")
        elif name.startswith("--") and name[2:] in SHORTCUTS:
            if not has_value:
                value = next(rest, None)
                if value is None:
                    raise app.UsageError(f"{name} needs a value")
            expanded.append(f"--config.{name[2:]}={value}")
        else:
            expanded.append(arg)
    if not any(a.startswith("--config=") or a == "--config" for a in expanded):
        # Given, not left to the default, which config_flags would load (and fail on a
        # mistyped --config.FIELD) while this module is imported, not with the flags.
        expanded.insert(1, f"--config={_DEFAULT_CONFIG}")
    return expanded


# config_flags registers the --config.FIELD flags it finds in sys_argv, so it reads the
# expanded command line too.
try:
    _ARGV = expand_shortcuts(sys.argv)
except app.UsageError as error:
    cli.fail(error)
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    _DEFAULT_CONFIG,
    "Study settings.",
    lock_config=True,
    sys_argv=_ARGV,
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
    cli.run(main, argv=_ARGV)
