"""Evaluate one snapshot of a run: retrieval both ways and per-layer ABX, as JSON + markdown.

    python launch/evaluate.py --workdir=runs/demo
    python launch/evaluate.py --workdir=runs/demo --snapshot=w2v2 --tasks=abx --layers=0,4,6
    python launch/evaluate.py --workdir=runs/demo --snapshot=3000 --out=reports/demo_3000

``--snapshot`` is a step, a phase name (that phase's last snapshot) or "latest". Writes
``evaluation.json`` and ``evaluation.md`` to ``--out`` (default WORKDIR/evaluation/step_N).
The logic lives in ``fastvgs_jax.eval.evaluate``.

A mistake on the command line (a mistyped flag or config field, a missing run or snapshot)
ends with one line ``error: …`` on stderr and exit status 2; ``FASTVGS_VERBOSE=1`` also prints
its traceback.
"""

import os

from absl import flags

from fastvgs_jax import cli
from fastvgs_jax.eval import evaluate
from fastvgs_jax.train import reporting

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's directory.", required=True)
_SNAPSHOT = flags.DEFINE_string("snapshot", "latest", "Step, phase name or 'latest'.")
_TASKS = flags.DEFINE_list("tasks", list(evaluate.TASKS), "Any of retrieval, abx.")
_LAYERS = flags.DEFINE_string(
    "layers", "all", "ABX layers: 'all' or a list like frontend,1,3 (0 = frontend)."
)
_SPLIT = flags.DEFINE_string(
    "split", None, "Retrieval split (default: the run config's data.retrieval.split)."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Corpus location (default: the run's).")
_OUT = flags.DEFINE_string("out", None, "Report directory (default WORKDIR/evaluation/step_N).")
_BASELINES = flags.DEFINE_bool("baselines", True, "Also score MFCC and a random-init encoder.")
_ABX_SEED = flags.DEFINE_integer("abx_seed", 0, "ABX group subsampling seed.")


def main(argv) -> None:
    del argv
    reporting.quiet_library_logs()
    results = evaluate.evaluate_run(
        _WORKDIR.value,
        snapshot=None if _SNAPSHOT.value == "latest" else _SNAPSHOT.value,
        tasks=_TASKS.value,
        layers=_LAYERS.value,
        split=_SPLIT.value,
        data_dir=_DATA_DIR.value,
        abx_seed=_ABX_SEED.value,
        baselines=_BASELINES.value,
    )
    out = _OUT.value or os.path.join(
        _WORKDIR.value, "evaluation", f"step_{results['snapshot']['step']}"
    )
    json_path, md_path = evaluate.write_report(results, out)
    with open(md_path) as f:
        print(f.read())
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    cli.run(main)
