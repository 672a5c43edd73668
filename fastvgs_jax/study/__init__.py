"""The sequential-vs-simultaneous study: train the nine models, evaluate and report them.

Train the nine models for some seeds, evaluate each, and report it like the paper (retrieval
table, ABX table, per-layer curves, training curves): ``plan`` (models, configs, run dirs),
``run`` (training, evaluation, caches, run_study) and ``report`` (summary, tables, plots).
"""

from fastvgs_jax.study.plan import (
    EVALUATION_FILE,
    MODELS,
    check_settings,
    image_tower_path,
    model_config,
    run_dir,
    study_models,
)
from fastvgs_jax.study.report import tables_markdown
from fastvgs_jax.study.run import (
    StudyClock,
    ensure_image_tower,
    evaluate_model,
    remaining_steps,
    run_study,
)

__all__ = [
    "EVALUATION_FILE",
    "MODELS",
    "StudyClock",
    "check_settings",
    "ensure_image_tower",
    "evaluate_model",
    "image_tower_path",
    "model_config",
    "remaining_steps",
    "run_dir",
    "run_study",
    "study_models",
    "tables_markdown",
]
