"""Train one model of the study (every phase of its config), resuming from the workdir.

    python launch/train.py --config=configs/demo.py --workdir=runs/demo
    python launch/train.py --config=configs/w2v2_vgs.py:small,small,3000 --workdir=runs/x \
        --config.data.data_dir=data '--config.phases[1].steps=2000'
    python launch/train.py --config=configs/vgs.py:small,small,3000 --workdir=runs/y \
        --init_from=runs/x   # start from another run's newest snapshot (matching params)

Builds the configured corpus first if it is missing. Running the same command again resumes.

Several hosts (one process each, the same command on every host): add --multihost on a
Cloud TPU pod (or under SLURM / Open MPI), which finds its peers itself; elsewhere give
--coordinator_address=HOST0:PORT --num_processes=N --process_id=I. Batch sizes in the config
are global; process 0 writes the logs, every process its shards of each snapshot.

A mistake on the command line (a mistyped flag or config field, a missing run or snapshot)
ends with one line ``error: …`` on stderr and exit status 2; ``FASTVGS_VERBOSE=1`` also prints
its traceback.
A run that fails before its first step removes the workdir it created.
"""

from absl import flags
from ml_collections import config_flags

from fastvgs_jax import cli
from fastvgs_jax.data.corpora import registry
from fastvgs_jax.eval import evaluate
from fastvgs_jax.train import distributed, loop, reporting
from fastvgs_jax.train.step import state_digest

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Snapshots and metrics go here.", required=True)
_HISTORY = flags.DEFINE_bool(
    "eval_history",
    True,
    "Record validation retrieval and ABX on a small fixed subset every config.eval_every "
    "steps and at phase ends (WORKDIR/eval_history.jsonl and .png: the forgetting curves).",
)
_INIT_FROM = flags.DEFINE_string(
    "init_from",
    None,
    "Another run's workdir: a new run takes its newest snapshot's parameters wherever "
    "paths and shapes match (ignored when this workdir already has snapshots).",
)

_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Join a multi-host run whose peers JAX detects (TPU pod, SLURM, MPI)."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0 of a multi-process run."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in the run.")


def main(argv) -> None:
    del argv
    explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if _MULTIHOST.value or any(v is not None for v in explicit):
        distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    reporting.quiet_library_logs()
    config = _CONFIG.value
    # Validate before building data or writing anything.
    loop.prepare(config, workdir=_WORKDIR.value, init_from=_INIT_FROM.value)
    if registry.uses_embedded(config.data):
        distributed.ensure_corpus(config.data.data_dir, config.data.preset, config.data.corpus_seed)
    hook = evaluate.EvaluationHook(config, _WORKDIR.value) if _HISTORY.value else None
    state = loop.train(config, _WORKDIR.value, init_from=_INIT_FROM.value, eval_hook=hook)
    # On stdout, for scripts comparing runs: equal digests mean bitwise-identical states.
    print(f"finished at step {int(state.step)}; state sha256 {state_digest(state)}")


if __name__ == "__main__":
    cli.run(main)
