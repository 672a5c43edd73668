"""Scaling-law sweeps: model size × data fraction × step budget × schedule × seed.

    python launch/sweep.py --config=configs/sweep.py:tiny            # checks the tool: ~3 min
    python launch/sweep.py --config=configs/sweep.py:demo --dry_run  # the plan: FLOPs, data, time
    python launch/sweep.py --config=configs/sweep.py:demo            # about an hour (2 CPU cores)
    python launch/sweep.py --config=configs/sweep.py:forgetting      # ≤ 2 h: VGS+ start vs SSL
    python -m fastvgs_jax.sweep.forgetting --sweep=results/sweep_forgetting --docs=docs/results.md
    python launch/sweep.py --config=configs/sweep.py:demo --emit=slurm --hosts=2 \
        --config.cluster.slurm.partition=gpu --config.cluster.setup='source .venv/bin/activate'
    python launch/sweep.py --config=configs/sweep.py:demo --emit=tpu_vm --hosts=4 \
        --config.cluster.tpu_vm.name=my-v4-32 --config.cluster.tpu_vm.zone=us-central2-b

The argument picks a preset (tiny | demo | forgetting); every field can be overridden with
--config.FIELD=VALUE (lists as "a,b": --config.sizes=xs,s,m --config.steps=200,400). A run is
named <size>-frac<fraction>-steps<steps>-<schedule>[-a<α>]-seed<seed> (with
second_phase_steps: <size>-frac<f>-p<first>+<second>-<schedule>[-a<α>]-seed<seed>); a rerun
keeps finished runs.
Each run's config is built as the study builds a model's, from the `study` block below
(configs/study.py documents its fields), with the model sized by `family`.
"""

import importlib.util
import os

import ml_collections

from fastvgs_jax.models import family

PRESETS = ("tiny", "demo", "forgetting")


def study_config(preset: str) -> ml_collections.ConfigDict:
    """configs/study.py's preset (loaded from its file: configs/ is not a package)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "study.py")
    spec = importlib.util.spec_from_file_location("_sweep_study_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = arg or "tiny"
    if preset not in PRESETS:
        raise ValueError(f"unknown sweep preset {preset!r}; expected one of {PRESETS}")
    if preset == "forgetting":
        return forgetting_sweep()
    tiny = preset == "tiny"
    s = ml_collections.ConfigDict()
    s.name = preset  # the sweep's name in logs, sweep.md and job names
    s.out = f"results/sweep_{preset}"  # runs/, sweep.jsonl, sweep.md, emit/ go here

    # The grid: every combination, sizes outermost. Comma-separated (or sequences).
    s.sizes = "xxs,xs" if tiny else "xs,s,m"  # names in `family` below
    # Share of each training stream's examples a run reads (a fixed subset, the smaller
    # shares inside the larger), in (0, 1]: data.<stream>.fraction of each run.
    s.data_fractions = "1"
    s.steps = "30,60" if tiny else "200,500"  # optimiser steps per run (the whole schedule)
    # Study models: w2v2, vgs, vgsplus, w2v2_vgs, vgs_w2v2, ...; the demo sets sequential
    # (W2V2, VGS) beside simultaneous VGS+ at every size and budget.
    s.schedules = "w2v2_vgs" if tiny else "w2v2_vgs,vgsplus"
    s.seeds = "0"
    # Or a list of runs instead of the grid, ';'-separated, each
    # "size=s,fraction=0.5,steps=300,schedule=w2v2_vgs,seed=0" (a missing part: the first
    # value of the grid's list for it). Empty: the grid.
    s.runs = ""
    # VGS+ phases' coarse weight α, a list: a schedule with a VGS+ phase gets one run per
    # value, named -a<α> ("": the study's vgsplus_alpha, no α in the names).
    s.alphas = ""
    # Two-phase runs whose phases have lengths of their own (the forgetting sweep): the
    # second phase's lengths, a list (0: the first phase alone, evaluated at the switch).
    # Runs sharing a first phase train it once (runs/_first/). "": `steps` split 20 : 50.
    # Set, `steps` is one value: the budget the study's shares (warm-up floor, temperature
    # anneal, history points) and the default first phase refer to.
    s.second_phase_steps = ""
    # The first phase's length with second_phase_steps (None: 20/70 of `steps`).
    s.first_phase_steps = ml_collections.FieldReference(None, field_type=int)
    # Forgetting curves (with second_phase_steps): runs of these seeds ("": none), at these
    # second-phase budgets ("": the largest), train with the study's EvaluationHook
    # (study.history's subset and layers) every study.run.eval_every steps of their second
    # phase, the switch included. Other runs train without it.
    s.curves = ml_collections.ConfigDict({"seeds": "", "budgets": ""})
    # ABX layers of each run's final evaluation ("all", or e.g. "1,3"): its best layer is
    # the best of these.
    s.evaluation_layers = "all"

    # The model family: each size's knobs (fastvgs_jax/models/family.py derives the rest).
    # Override one (--config.family.s.width=80) or add one (in a config file) by name.
    s.family = ml_collections.ConfigDict()
    for name, knobs in family.SIZES.items():
        s.family[name] = ml_collections.ConfigDict(
            {
                "width": knobs.width,  # transformer width
                "depth": knobs.depth,  # transformer layers
                "heads": knobs.heads,  # attention heads (divide width)
                "mlp_ratio": knobs.mlp_ratio,  # feed-forward width / width
                # "cnn" | "logmel"; None: the run template's (study.run.model.frontend)
                "frontend": ml_collections.FieldReference(knobs.frontend, field_type=str),
            }
        )

    # What every run shares, as configs/study.py's settings: the run template (objective,
    # data, optimiser, intervals), lrs per objective, warm-up and temperature shares, the
    # image tower (pretrained once per sweep under out/image_tower), the history curves,
    # test_split. Its models, seeds, steps and out are the sweep's.
    study = study_config("quick" if tiny else "demo")
    study.history.enabled = False  # the table needs the final evaluation only
    if tiny:
        study.image_tower.steps = 60  # the tower only has to exist: it checks the tool
        study.image_tower.num_scenes = 300
        study.run.data.audio_image.crop_seconds = 1.0  # the tiny corpus's captions are short
        study.run.data.audio_only.crop_seconds = 1.0
        study.run.log_every = 10
    else:
        # The demo study's settings (log-mel, CLIP loss, lrs, frozen tower) on its corpus;
        # sizes from family. Batches of 16 four-second crops.
        study.run.log_every = 25
    s.study = study

    # The dry run's time estimate: per run (compilation, final evaluation), per step (host,
    # input pipeline), the FLOP rate the device sustains, and the corpus build and image
    # tower when they are not there yet. Measured on 2 CPU cores (tiny and demo presets);
    # set your device's for a cluster plan.
    s.estimate = ml_collections.ConfigDict()
    s.estimate.seconds_per_run = 40.0 if tiny else 95.0
    s.estimate.seconds_per_step = 0.08
    s.estimate.flops_per_second = 6e10
    s.estimate.seconds_to_prepare = 30.0 if tiny else 720.0
    # One EvaluationHook call of a forgetting curve (study.history's subset).
    s.estimate.seconds_per_history_point = 3.0 if tiny else 6.0

    # --emit: where and how the runs are launched (launch/sweep.py --emit=slurm|tpu_vm|shell).
    s.cluster = ml_collections.ConfigDict()
    s.cluster.repo = ""  # the checkout on the hosts ("": this checkout's absolute path)
    s.cluster.python = "python"  # the interpreter on the hosts
    s.cluster.setup = ""  # shell lines run first on every host (';'-separated), e.g. a venv
    s.cluster.slurm = ml_collections.ConfigDict()
    s.cluster.slurm.partition = ""  # "": the cluster's default
    s.cluster.slurm.account = ""
    s.cluster.slurm.time = "24:00:00"  # per job
    s.cluster.slurm.gpus_per_host = 8  # 0: CPU-only nodes
    s.cluster.slurm.cpus_per_task = 16  # input pipeline threads per host
    s.cluster.slurm.extra = ""  # more '#SBATCH' options, ';'-separated (e.g. --constraint=a100)
    s.cluster.tpu_vm = ml_collections.ConfigDict()
    s.cluster.tpu_vm.name = "fastvgs-tpu"  # the TPU VM (a pod slice: one host per worker)
    s.cluster.tpu_vm.zone = "us-central2-b"
    s.cluster.tpu_vm.project = ""  # "": gcloud's default project
    s.cluster.shell = ml_collections.ConfigDict()
    # Host 0's address:port for multi-host shell runs ($COORDINATOR overrides it).
    s.cluster.shell.coordinator = "localhost:8476"
    return s


def forgetting_sweep() -> ml_collections.ConfigDict:
    """How much retrieval a VGS+ start keeps through a later SSL phase, against a VGS start.

    (VGS+, W2V2) at five α against (VGS, W2V2), the demo study's run template unchanged
    (its log-mel model, the `small` corpus, its lrs, the frozen pretrained image tower), its
    first phase (200 of its 700 steps), then W2V2 for 0 / 100 / 150 / 250 steps, seeds 0–2:
    18 first phases, each trained and evaluated once, and 54 second phases (12,600 steps).

    Measured on 2 CPU cores: 1 h 30 min (the image tower 9 min, the runs 80 min); the dry
    run prices it from the per-step and per-run rates measured there (estimate.* below).
    """
    s = get_config("demo")
    s.name = "forgetting"
    s.out = "results/sweep_forgetting"
    s.sizes = "template"  # the study's run template's model as it is (not a family size)
    s.steps = "700"  # the demo's budget: its warm-up floor, temperature anneal, 200-step phase 1
    s.schedules = "vgsplus_w2v2,vgs_w2v2"
    s.alphas = "0.05,0.1,0.3,0.5,0.9"  # the demo's 0.1, the paper's 0.5, and around them
    s.seeds = "0,1,2"
    s.second_phase_steps = "0,100,150,250"  # 1 h 30 min in all on 2 cores (docstring)
    s.first_phase_steps = None  # 200: the demo's 20/70 of 700
    s.curves.seeds = "0"  # one seed's eval_history at the largest budget, per start
    s.curves.budgets = ""
    s.study = study_config("demo")  # the demo study's settings as they are
    s.study.history.enabled = False  # only the curve runs evaluate while training (curves)
    # The curves' resolution: an evaluation every 25 steps (of 700, as every run's config;
    # only the curve runs evaluate). history.points would derive it from `steps` instead.
    s.study.history.points = None
    s.study.run.eval_every = 25
    s.study.history.layers = "1,3"
    # Evaluation: retrieval on the test split and ABX on layer 1 (the best layer of every demo
    # model, both speaker modes) and layer 3 (the VGS branch's input); the frontend is a
    # frozen random conv, the same in every run.
    s.evaluation_layers = "1,3"
    # Per run: one evaluation (retrieval on 500 captions, ABX on 2 layers), restoring the
    # first phase and the data pipeline's start; the steps compile once for the whole sweep.
    s.estimate.seconds_per_run = 23.0
    s.estimate.seconds_per_history_point = 6.0
    # Its own rates, measured on 2 cores: ~0.25 s per second-phase step (its runs' training
    # loops), 23 s a run besides its steps, the image tower 9 min; with them the dry run
    # prices the preset at the 1 h 30 min it took.
    s.estimate.seconds_per_step = 0.08
    s.estimate.flops_per_second = 1.6e11
    s.estimate.seconds_to_prepare = 540.0
    return s
