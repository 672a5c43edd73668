"""Run a scaling-law sweep here, print its plan, or write its cluster launch commands
(see configs/sweep.py).

    python launch/sweep.py --config=configs/sweep.py:tiny             # run it here (resumable)
    python launch/sweep.py --config=configs/sweep.py:demo --dry_run   # the plan, FLOPs, time
    python launch/sweep.py --config=configs/sweep.py:demo --emit=slurm --hosts=2
    python launch/sweep.py --config=configs/sweep.py:demo --emit=tpu_vm --hosts=4
    python launch/sweep.py --config=configs/sweep.py:demo --emit=shell --hosts=2
    python launch/sweep.py --config=configs/sweep.py:forgetting       # then its report:
    python -m fastvgs_jax.sweep.forgetting --sweep=results/sweep_forgetting --docs=docs/results.md

Here, it trains the runs one after another (finished ones are kept), evaluates each and
writes OUT/sweep.jsonl and OUT/sweep.md. --emit writes, without running anything, each run's
config and the scripts (SLURM batch jobs, TPU VM gcloud lines, or one shell script per host)
under OUT/emit/, and prints their paths; the scripts end with this command at
--stage=collect, which evaluates the finished runs and writes the table.

A mistake on the command line (a mistyped flag or config field) ends with one line
``error: …`` on stderr and exit status 2; ``FASTVGS_VERBOSE=1`` also prints its traceback.
"""

import logging
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from fastvgs_jax import cli
from fastvgs_jax.sweep import emit, plan, run, table
from fastvgs_jax.train import reporting

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Sweep settings (configs/sweep.py:PRESET).", lock_config=True
)
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "Print the plan (each run's parameters, FLOPs, data, time) and stop."
)
_EMIT = flags.DEFINE_enum(
    "emit", None, list(emit.FORMATS), "Write the cluster launch commands instead of running."
)
_OUT = flags.DEFINE_string("out", None, "The sweep's folder (short for --config.out).")
_HOSTS = flags.DEFINE_integer(
    "hosts", 1, "Hosts each run spans (--emit): >1 adds --multihost.", lower_bound=1
)
_STAGE = flags.DEFINE_enum(
    "stage",
    "run",
    list(run.STAGES),
    "run: prepare, train, evaluate, tabulate; prepare: the corpus and image tower only; "
    "collect: evaluate and tabulate the runs trained already (trains nothing).",
)
_RUNS = flags.DEFINE_list("runs", None, "Only these runs (names), e.g. to spread them out.")


def main(argv) -> None:
    del argv
    if _CONFIG.value is None:
        raise app.UsageError("--config is required, e.g. --config=configs/sweep.py:tiny")
    reporting.quiet_library_logs()
    logging.getLogger("fastvgs_jax").setLevel(logging.INFO)
    settings = _CONFIG.value
    if _OUT.value:
        settings.out = _OUT.value
    if _DRY_RUN.value:
        print(table.plan_text(settings))
    if _EMIT.value and plan.split_phases(settings):
        raise app.UsageError(
            "--emit writes one independent job per run; runs with second_phase_steps share "
            "their first phases (trained once, here): run them without --emit"
        )
    if _EMIT.value:
        for path in emit.write(settings, _EMIT.value, _HOSTS.value):
            print(path)
    if _DRY_RUN.value or _EMIT.value:
        return
    # Runs of one size share their step and evaluation programs: compile each once, also
    # across reruns of the sweep.
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.join(settings.out, ".jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    run.run_sweep(settings, stage=_STAGE.value, only=_RUNS.value)
    if _STAGE.value != "prepare":
        with open(os.path.join(settings.out, plan.TABLE_MD)) as f:
            print(f.read())


if __name__ == "__main__":
    cli.run(main)
