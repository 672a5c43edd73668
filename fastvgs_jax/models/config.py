"""Model presets: every field of the ``model`` section of a run config, commented.

``model_config(size)`` with size tiny (CPU tests) | small (CPU demo) | base (the paper).
``configs/model.py`` exposes it as a config file; run configs embed it as their ``model``.
"""

import ml_collections

SIZES = ("tiny", "small", "base")


def model_config(size: str = "base") -> ml_collections.ConfigDict:
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; expected one of {SIZES}")
    c = ml_collections.ConfigDict()
    c.size = size  # which preset these values started from

    # Frontend. "cnn" is wav2vec2's raw-waveform CNN (faithful; needed for weight import);
    # "logmel" computes an 80-bin log-mel filterbank in JAX and one strided conv to 20 ms
    # (several times faster on CPU, which the demo needs).
    c.frontend = "cnn"
    c.cnn = ml_collections.ConfigDict()
    c.cnn.channels = (512,) * 7  # conv widths
    c.cnn.kernels = (10, 3, 3, 3, 3, 2, 2)  # → 400-sample receptive field
    c.cnn.strides = (5, 2, 2, 2, 2, 2, 2)  # → 320-sample (20 ms) hop
    c.cnn.norm = "group"  # wav2vec2-base: GroupNorm after conv 0 only; "layer": LN after each
    c.cnn.bias = False  # conv biases (wav2vec2: none)
    c.logmel = ml_collections.ConfigDict()
    c.logmel.num_mels = 80  # filterbank bins
    c.logmel.window = 400  # 25 ms analysis window (samples)
    c.logmel.hop = 160  # 10 ms hop (samples)
    c.logmel.fft_size = 512  # FFT length (window zero-padded)
    c.logmel.conv_kernels = (3,)  # strided conv(s) after the filterbank
    c.logmel.conv_strides = (2,)  # 10 ms → 20 ms frames
    c.logmel.channels = 512  # conv output width (the quantizer's input dim)
    # "frame": LayerNorm over each frame's bins; "utterance": per-bin mean/variance over the
    # utterance's real frames (CMVN: removes a fixed channel, keeps the energy contour).
    c.logmel.normalize = "frame"
    c.frontend_grad_scale = 0.1  # gradient multiplier into the frontend (fairseq 0.1; 0 freezes)

    # Transformer (post-LN, wav2vec2-base).
    c.hidden_dim = 768  # model width
    c.num_layers = 12  # transformer layers
    c.num_heads = 12  # attention heads
    c.mlp_dim = 3072  # feed-forward width
    c.dropout = 0.1  # residual dropout
    c.attention_dropout = 0.1  # on attention weights
    c.activation_dropout = 0.0  # inside the feed-forward
    c.feature_dropout = 0.1  # on projected frontend features (fairseq dropout_input)
    c.layer_norm_eps = 1e-5  # every LayerNorm of the speech encoder
    c.pos_conv_kernel = 128  # positional conv width (frames)
    c.pos_conv_groups = 16  # positional conv groups
    c.use_cls = True  # FaST-VGS's learned CLS, prepended before the positional conv
    c.vgs_layer = 8  # the VGS branch reads this layer's output; layers above serve SSL only
    c.remat = False  # rematerialise transformer layers in the backward pass (saves memory)

    # SSL head (wav2vec 2.0).
    c.masking = ml_collections.ConfigDict()
    c.masking.prob = 0.65  # expected share of frames in masked spans
    c.masking.span = 10  # span length (frames)
    c.masking.min_spans = 2  # at least this many spans per utterance
    c.quantizer = ml_collections.ConfigDict()
    c.quantizer.groups = 2  # product-quantizer codebooks
    c.quantizer.entries = 320  # entries per codebook
    c.quantizer.codevector_dim = 256  # concatenated codevector width
    c.quantizer.final_dim = 256  # shared space of projected targets and context
    # Init std of the code-logit projection: 0.02 as the reference (every Linear); fairseq
    # and HF use 1.0, which makes codes follow the features from step 0 (short runs need it).
    c.quantizer.projection_init_std = 0.02
    c.quantizer.temperature_start = 2.0  # Gumbel temperature at step 0
    c.quantizer.temperature_end = 0.5  # floor of the schedule
    c.quantizer.temperature_decay = 0.999995  # per update; FaST-VGS's code never applies it:
    c.quantizer.decay_temperature = True  # False reproduces that (constant start temperature)
    c.num_negatives = 100  # distractors per masked frame (from the same utterance)
    c.logit_temperature = 0.1  # contrastive logits = cosine / this
    c.diversity_weight = 0.1  # codebook diversity loss weight
    c.feature_penalty_weight = 1.0  # mean squared frontend output (fairseq: 10)

    # VGS audio pooling (ResDAVEnet-style), on layer `vgs_layer`.
    c.audio_pool = ml_collections.ConfigDict()
    c.audio_pool.kind = "resdavenet"  # or "mean": the masked frame mean and a Linear
    # Pool only the frames the SSL span mask left intact (masked ones count as padding). The
    # paper pools them all: its one masked pass feeds VGS too, so in training ~half of what
    # the pooler sees is the mask vector, which it never sees at inference.
    c.audio_pool.skip_masked = False
    c.audio_pool.widths = (128, 256, 512, 768)  # stage widths (last = hidden_dim)
    c.audio_pool.blocks_per_stage = 2  # residual blocks per stage (first one strides by 2)
    c.audio_pool.kernel = 9  # conv width in time
    c.audio_pool.num_heads = 12  # the one transformer layer after pooling
    c.audio_pool.mlp_dim = 3072
    c.audio_pool.dropout = 0.1

    # Image encoder: "vit" on pixels (the embedded corpus), "regions" (detector features), or
    # "cnn" (a small conv tower on pixels: the CPU demo's, it learns fastest from scratch).
    c.image = ml_collections.ConfigDict()
    c.image.kind = "vit"
    c.image.cnn_widths = (32, 64, 128, 256)  # kind="cnn": channels of the stride-2 3×3 convs
    # kind="cnn": no gradient into the convs and no update of them (a pretrained tower loaded
    # by the run's image_tower_init, read frozen as FaST-VGS reads its detector's features);
    # the projection after them still trains.
    c.image.cnn_frozen = False
    c.image.patch_size = 8  # ViT patch side (pixels); 64×64 corpus images → 64 patches
    # Pixels per side the ViT is built for (its position table); a run on a real corpus's
    # photographs sets it from data.image.size.
    c.image.image_size = 64
    c.image.num_layers = 6  # BERT layers on patches/regions
    c.image.num_heads = 12
    c.image.mlp_dim = 3072
    c.image.dropout = 0.1
    c.image.region_dim = 2048  # detector feature width (kind="regions")
    c.image.num_regions = 36  # regions per image (kind="regions")

    # Coarse loss: "margin" (FaST-VGS masked margin InfoNCE) or "clip" (cosine, learned scale).
    c.coarse = ml_collections.ConfigDict()
    c.coarse.loss = "margin"
    c.coarse.margin = 1.0  # subtracted from positive scores (margin loss)
    c.coarse.init_log_scale = 2.6592  # log(1 / 0.07), the CLIP initial temperature

    if size == "tiny":
        c.cnn.channels = (32,) * 7
        c.logmel.channels = 32
        c.hidden_dim = 32
        c.num_layers = 3
        c.num_heads = 2
        c.mlp_dim = 64
        c.pos_conv_kernel = 16
        c.pos_conv_groups = 4
        c.vgs_layer = 2
        c.quantizer.entries = 16
        c.quantizer.codevector_dim = 16
        c.quantizer.final_dim = 16
        c.num_negatives = 10
        c.audio_pool.widths = (16, 16, 32, 32)
        c.audio_pool.blocks_per_stage = 1
        c.audio_pool.num_heads = 2
        c.audio_pool.mlp_dim = 64
        c.image.patch_size = 16
        c.image.num_layers = 1
        c.image.num_heads = 2
        c.image.mlp_dim = 64
        c.image.region_dim = 24
        c.image.num_regions = 4
    elif size == "small":
        c.frontend = "logmel"
        c.logmel.channels = 256
        c.hidden_dim = 256
        c.num_layers = 6
        c.num_heads = 4
        c.mlp_dim = 1024
        c.pos_conv_kernel = 64
        c.pos_conv_groups = 16
        c.vgs_layer = 4
        c.quantizer.entries = 64
        c.quantizer.codevector_dim = 128
        c.quantizer.final_dim = 128
        c.num_negatives = 50
        c.audio_pool.widths = (64, 128, 256, 256)
        c.audio_pool.blocks_per_stage = 1
        c.audio_pool.num_heads = 4
        c.audio_pool.mlp_dim = 1024
        c.image.num_layers = 2
        c.image.num_heads = 4
        c.image.mlp_dim = 1024
    return c
