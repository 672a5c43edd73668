"""Train one model of the study (every phase of its config), resuming from the workdir.

    python launch/train.py --config=configs/demo.py --workdir=runs/demo
    python launch/train.py --config=configs/w2v2_vgs.py:small,small,3000 --workdir=runs/x \
        --config.data.data_dir=data '--config.phases[1].steps=2000'
    python launch/train.py --config=configs/vgs.py:small,small,3000 --workdir=runs/y \
        --init_from=runs/x   # start from another run's newest snapshot (matching params)

Builds the configured corpus first if it is missing. Running the same command again resumes.
"""

from absl import app, flags
from ml_collections import config_flags

from fastvgs_jax.data import build
from fastvgs_jax.eval import evaluate
from fastvgs_jax.train import loop, reporting
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


def main(argv) -> None:
    del argv
    reporting.quiet_library_logs()
    config = _CONFIG.value
    loop.prepare(config)  # validate before building data or writing anything
    build.ensure_built(config.data.data_dir, config.data.preset, seed=config.data.corpus_seed)
    hook = evaluate.EvaluationHook(config, _WORKDIR.value) if _HISTORY.value else None
    state = loop.train(config, _WORKDIR.value, init_from=_INIT_FROM.value, eval_hook=hook)
    # On stdout, for scripts comparing runs: equal digests mean bitwise-identical states.
    print(f"finished at step {int(state.step)}; state sha256 {state_digest(state)}")


if __name__ == "__main__":
    app.run(main)
