"""Run configs: the shared base every ``configs/*.py`` extends, and the study's phase plans.

Every field is commented here once; study configs only change what differs.
"""

from __future__ import annotations

import ml_collections

from fastvgs_jax.models.config import model_config

# The study's objectives as α, the coarse weight (SSL gets 1 − α).
OBJECTIVE_ALPHA = {"w2v2": 0.0, "vgs": 1.0, "vgsplus": 0.5}
FIRST_PHASE_SHARE = 20 / 70  # two-phase models: 20 epochs of A, then 50 of B


def phase(
    name: str,
    steps: int,
    alpha: float = 0.5,
    reset_optimizer: bool = True,
    mix: dict | None = None,
) -> ml_collections.ConfigDict:
    """One phase with a constant α (edit ``alpha.kind`` etc. for schedules)."""
    p = ml_collections.ConfigDict()
    p.name = name  # shown in logs; names the snapshot kept at the phase end
    p.steps = steps  # optimiser updates in this phase
    # Or its length in epochs (passes over the first stream of its mix: audio_image when
    # present): replaces ``steps`` when set, resolved from the built corpus's split sizes.
    p.epochs = ml_collections.FieldReference(None, field_type=float)
    p.alpha = ml_collections.ConfigDict()
    p.alpha.kind = "constant"  # constant | linear | cosine | steps
    p.alpha.start = alpha  # α at the first step (constant: throughout)
    p.alpha.end = alpha  # α at the last step (linear, cosine)
    p.alpha.boundaries = ()  # "steps": the phase steps where α changes
    p.alpha.values = ()  # "steps": α from each boundary on
    p.weights = None  # (coarse, caption SSL, audio-only SSL) replaces α when set (FaST-VGS+)
    # This phase's peak lr (None: optimizer.learning_rate); its warm-up/decay shape is shared.
    p.learning_rate = ml_collections.FieldReference(None, field_type=float)
    # The lr of the VGS branch (image tower, audio pooler, CLIP scale: fastvgs.VGS_BRANCH) as
    # a share of the phase lr. α cannot slow those parameters (only the coarse loss reaches
    # them, and Adam's update is scale-free); 0 freezes them.
    p.vgs_branch_lr_scale = 1.0
    p.reset_optimizer = reset_optimizer  # fresh optimiser state + lr schedule at the start
    # Batch kinds and their shares; VGS needs audio_image; SSL can use either.
    p.mix = ml_collections.ConfigDict(mix or {"audio_image": 1.0})
    return p


def study_phases(objectives: str, total_steps: int) -> list[ml_collections.ConfigDict]:
    """The phases of a study model: "vgs", or "w2v2_vgs" (20 : 50 split, optimiser reset).

    Raises:
      ValueError: an unknown objective, more than two, or fewer steps than phases.
    """
    names = objectives.split("_")
    for n in names:
        if n not in OBJECTIVE_ALPHA:
            known = list(OBJECTIVE_ALPHA)
            raise ValueError(f"unknown objective {n!r} in {objectives!r}; known: {known}")
    if len(names) > 2:
        raise ValueError(f"{objectives!r}: a study model has one or two phases")
    if total_steps < len(names):
        raise ValueError(f"steps={total_steps}, but {_needs_steps(objectives)}")
    if len(names) == 1:
        return [phase(names[0], total_steps, OBJECTIVE_ALPHA[names[0]])]
    first = max(1, round(FIRST_PHASE_SHARE * total_steps))
    return [
        phase(names[0], first, OBJECTIVE_ALPHA[names[0]]),
        phase(names[1], total_steps - first, OBJECTIVE_ALPHA[names[1]], reset_optimizer=True),
    ]


def _needs_steps(objectives: str) -> str:
    if "_" in objectives:
        return f"a two-phase model ({objectives.replace('_', ' then ')}) needs at least 2 steps"
    return "a model needs at least 1 step"


def base_config(model_size: str = "base", data_preset: str = "small") -> ml_collections.ConfigDict:
    """Everything but the phases; study configs set ``phases`` (and shrink what they need)."""
    from fastvgs_jax.data.config import data_config  # noqa: PLC0415

    c = ml_collections.ConfigDict()
    c.seed = 0  # parameters, masks, dropout, Gumbel noise and data order all follow it
    c.model = model_config(model_size)  # fields: fastvgs_jax/models/config.py
    c.data = data_config(data_preset)  # fields: fastvgs_jax/data/config.py

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "bert_adam"  # Adam without bias correction (reference) | adamw
    c.optimizer.learning_rate = 1e-4  # peak learning rate
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-6
    c.optimizer.weight_decay = 0.01  # decoupled, on all parameters
    c.optimizer.warmup_fraction = 0.1  # linear warm-up share of each schedule, then linear decay
    c.optimizer.min_warmup_steps = 0  # floor on each schedule's warm-up (short phases), in steps
    c.optimizer.clip_norm = 1.0  # global gradient-norm clip (0 disables)

    c.precision = "fp32"  # fp32 | bf16 (bf16 compute, fp32 parameters and optimiser state)
    # Peak FLOP/s of one device for MFU (None: the table in train/mfu.py by device kind, or
    # this host's measured matmul peak on CPU).
    c.peak_flops_per_device = ml_collections.FieldReference(None, field_type=float)
    c.mesh_shape = (-1, 1, 1)  # (data, fsdp, model); -1 takes the remaining devices
    c.prng_impl = "threefry2x32"  # or rbg / unsafe_rbg (XLA RngBitGenerator: faster)
    # A pretrained conv image tower (fastvgs_jax/train/image_tower.py) whose convs replace the
    # initial ones when a run starts afresh ("": none); model.image.cnn_frozen keeps them.
    c.image_tower_init = ""

    c.log_every = 10  # steps between metric lines (JSONL, TensorBoard, console)
    c.eval_every = 500  # steps between evaluation-hook calls (and at every phase end)
    c.snapshot_every = 500  # steps between snapshots (and at every phase end)
    c.keep_snapshots = 3  # rolling snapshots kept (phase-end snapshots are always kept)
    c.nonfinite = "stop"  # stop | skip: what a non-finite loss or gradient does
    c.progress = True  # a console progress bar with ETA per phase (process 0)

    c.phases = study_phases("vgsplus", 1000)
    return c


def study_model_config(objectives: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """A study model ("vgs", "w2v2_vgs", ...) at the paper's sizes; ``arg`` may be
    "MODEL_SIZE,DATA_PRESET,STEPS" (e.g. "small,small,3000") to scale it."""
    size, preset, steps = "base", "small", 10_000
    if arg:
        parts = [p.strip() for p in arg.split(",")]
        if len(parts) != 3:
            raise ValueError(
                f"config argument {arg!r}: expected MODEL_SIZE,DATA_PRESET,STEPS "
                "(e.g. small,small,3000)"
            )
        size, preset = parts[0], parts[1]
        try:
            steps = int(parts[2])
        except ValueError:
            raise ValueError(f"STEPS={parts[2]!r} is not a whole number") from None
        if steps < len(objectives.split("_")):
            raise ValueError(f"STEPS={steps}, but {_needs_steps(objectives)}")
    c = base_config(size, preset)
    c.phases = study_phases(objectives, steps)
    return c


def fastvgs_plus_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Peng's FaST-VGS+ (coarse): audio-image and audio-only batches mixed half and half,
    0.1·coarse + 1·SSL(captions) + 1·SSL(audio-only)."""
    c = study_model_config("vgsplus", arg)
    total = c.phases[0].steps
    p = phase("fastvgs_plus", total, 0.5, mix={"audio_image": 0.5, "audio_only": 0.5})
    p.weights = (0.1, 1.0, 1.0)
    c.phases = [p]
    return c
