"""Evaluating a run: cross-modal retrieval and per-layer ABX of a snapshot, a report, and a
hook that tracks both on a small fixed subset while training.

- ``evaluate_run(workdir, snapshot, tasks, layers, split)``: retrieval in both directions on a
  split (every unique image encoded once, every caption), and ABX within/across speakers for
  each chosen layer of the snapshot, of a randomly initialised encoder of the same
  architecture, and of MFCCs. ``write_report`` writes ``evaluation.json`` and
  ``evaluation.md``. ``launch/evaluate.py`` is its command line.
- ``EvaluationHook``: the trainer's ``eval_hook``; appends one line per call to
  ``WORKDIR/eval_history.jsonl`` and redraws ``WORKDIR/eval_history.png`` (``plot_history``).

All numbers are percentages. Retrieval follows ``eval/retrieval.py`` (pessimistic ties) on the
run's training view of a caption (its audio-image crop length, from the start), so the VGS
branch sees what it was trained on; ABX follows ``eval/abx.py`` on whole utterances
(``eval/features.py``). Evaluation runs in float32 whatever the run's training precision.

This module is the entry point; the parts live in ``snapshot.py`` (the run and its snapshot,
``EvaluationError``), ``retrieval_run.py``, ``abx_run.py``, ``report.py`` and ``history.py``
(``EvaluationHook``, ``read_history``, ``plot_history``).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

import ml_collections

from fastvgs_jax.data import pipelines
from fastvgs_jax.data.corpora import registry
from fastvgs_jax.eval import features
from fastvgs_jax.eval.abx_run import _evaluate_abx
from fastvgs_jax.eval.history import HISTORY_FILE as HISTORY_FILE
from fastvgs_jax.eval.history import EvaluationHook as EvaluationHook
from fastvgs_jax.eval.history import plot_history as plot_history
from fastvgs_jax.eval.history import read_history as read_history
from fastvgs_jax.eval.report import _layer_label as _layer_label
from fastvgs_jax.eval.report import write_report as write_report
from fastvgs_jax.eval.retrieval_run import caption_spec, retrieval_metrics
from fastvgs_jax.eval.snapshot import EvaluationError, load_run, run_config

TASKS = ("retrieval", "abx")


def _data_dir(config: ml_collections.ConfigDict, override: str | None) -> str:
    return override if override is not None else str(config.data.data_dir)


def _check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise EvaluationError(f"tasks {list(tasks)}: expected a non-empty subset of {TASKS}")
    return tasks


def evaluate_run(
    workdir: str,
    snapshot: str | int | None = None,
    tasks: Sequence[str] = TASKS,
    layers: str | Sequence[int | str] = "all",
    split: str | None = None,
    *,
    data_dir: str | None = None,
    batch_size: int | None = None,
    ks: Sequence[int] = (1, 5, 10, 100),
    abx_seed: int = 0,
    inclusive_end: bool = False,
    baselines: bool = True,
    random_init_seed: int | None = None,
    progress: bool = True,
) -> dict:
    """Retrieval and/or per-layer ABX of one snapshot of a run (percentages).

    Args:
      workdir: the run's directory (manifest and snapshots).
      snapshot: a step, a phase name (that phase's last snapshot) or None (the newest).
      tasks: any of "retrieval", "abx".
      layers: ABX layers, "all" or e.g. "frontend,1,3" (see ``features.parse_layers``).
      split: the retrieval split (every caption; each unique image once); None: the run
        config's ``data.retrieval.split`` of its ``data.retrieval.corpus``.
      data_dir: where the embedded corpus and the indexes are (default: the run config's
        ``data.data_dir``).
      batch_size: captions/images/… per batch (default: the run's audio-image batch).
      abx_seed, inclusive_end: ABX subsampling seed and frame convention (``abx.abx_error``).
      baselines: also score MFCCs and a randomly initialised encoder on the same ABX items
        and layers: the very encoder a run of the run's config and seed ``random_init_seed``
        (None: the run's own seed, so the one it started from) is initialised to.
    Returns:
      A JSON-able dict: ``snapshot``, ``model``, ``data`` and ``retrieval`` / ``abx``.
    Raises:
      EvaluationError, workdir_lib.SnapshotError, sources.CorpusError, ValueError (layers).
    """
    tasks = _check_tasks(tasks)
    # Validate what was asked before reading any snapshot.
    layer_ids = features.parse_layers(layers, int(run_config(workdir).model.num_layers))
    run = load_run(workdir, snapshot)
    config = run.config
    data_config = ml_collections.ConfigDict(config.data.to_dict())
    data_config.data_dir = _data_dir(config, data_dir)
    retrieval_corpus, retrieval_split = registry.role_config(data_config, "retrieval")
    split = split or retrieval_split
    data = {
        "data_dir": str(data_config.data_dir),
        "preset": str(data_config.preset),
        "corpus_seed": int(data_config.corpus_seed),
        "retrieval_corpus": retrieval_corpus,
        "abx_corpus": registry.role_config(data_config, "abx")[0],
    }
    results: dict = {
        "workdir": os.path.abspath(workdir),
        "evaluated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "units": "percent",
        "snapshot": {"requested": run.requested, "step": run.step, "phase": run.phase},
        "model": {
            "size": str(config.model.get("size", "?")),
            "frontend": str(config.model.frontend),
            "num_layers": int(config.model.num_layers),
            "vgs_layer": int(config.model.vgs_layer),
        },
        "data": data,
    }
    if "retrieval" in tasks:
        spec = caption_spec(config, batch_size)
        source = registry.open_role(data_config, "retrieval", split=split)
        batches = pipelines.evaluation_batches(source, pipelines.AUDIO_IMAGE, spec)
        scores = retrieval_metrics(
            config.model,
            run.variables,
            batches,
            spec.batch_size,
            ks=ks,
            progress=progress,
            total=-(-len(source) // spec.batch_size),
        )
        results["retrieval"] = {
            "corpus": retrieval_corpus,
            "split": split,
            "crop_seconds": spec.crop_seconds,
            **scores,
        }
    if "abx" in tasks:
        results["abx"] = _evaluate_abx(
            run,
            data_config,
            layer_ids,
            abx_seed,
            inclusive_end,
            baselines,
            random_init_seed,
            progress,
        )
    return results
