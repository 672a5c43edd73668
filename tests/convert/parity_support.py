"""Shared helpers for tests against HF transformers' PyTorch wav2vec2.

CI sets FASTVGS_REQUIRE_PARITY=1 so that a missing torch/transformers is an error there,
never a silent skip.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest


def require(module: str):
    """Import ``module``; skip when it is absent, unless CI requires parity tests."""
    if os.environ.get("FASTVGS_REQUIRE_PARITY") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason="install the parity extra: pip install -e .[parity]")


def hf_config(**overrides):
    """A tiny HF Wav2Vec2Config (base layout: group norm, post-LN), dropout off."""
    kwargs = dict(
        conv_dim=(24, 24, 24, 24),
        conv_kernel=(10, 3, 3, 2),
        conv_stride=(5, 2, 2, 2),
        feat_extract_norm="group",
        conv_bias=False,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        num_codevector_groups=2,
        num_codevectors_per_group=12,
        codevector_dim=16,
        proj_codevector_dim=8,
        do_stable_layer_norm=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        feat_quantizer_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.5,
    )
    kwargs.update(overrides)
    return require("transformers").Wav2Vec2Config(**kwargs)


def random_hf_model(seed: int = 0, **overrides):
    """A small post-LN Wav2Vec2ForPreTraining with every tensor randomised, no dropout."""
    torch = require("torch")
    torch.manual_seed(seed)
    model = require("transformers").Wav2Vec2ForPreTraining(hf_config(**overrides))
    with torch.no_grad():
        # Perturb every tensor (norm scales and biases too), so a swapped or skipped
        # parameter cannot hide behind an initialisation of ones or zeros.
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def audio_batch(batch_lengths=(4000, 2700), samples=4000, seed=1):
    """Random audio [batch, samples] zero-padded after each length, and HF's attention mask."""
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((len(batch_lengths), samples)).astype(np.float32)
    attention = np.zeros_like(audio, dtype=np.int64)
    for i, n in enumerate(batch_lengths):
        audio[i, n:] = 0.0
        attention[i, :n] = 1
    return audio, attention


def hf_hidden_states(hf, audio: np.ndarray, attention: np.ndarray):
    """HF's every-layer hidden states (numpy) and its frame-level padding mask."""
    torch = require("torch")
    with torch.no_grad():
        out = hf.wav2vec2(
            torch.from_numpy(audio),
            attention_mask=torch.from_numpy(attention),
            output_hidden_states=True,
        )
    mask = hf_frame_mask(hf, attention, out.hidden_states[0].shape[1])
    return [h.numpy() for h in out.hidden_states], out, mask


def hf_frame_mask(hf, attention: np.ndarray, frames: int) -> np.ndarray:
    """HF's frame-level padding mask (a frame is real when all its samples are)."""
    torch = require("torch")
    mask = hf.wav2vec2._get_feature_vector_attention_mask(frames, torch.from_numpy(attention))
    return mask.numpy().astype(bool)


def our_hidden_states(config, variables, audio: np.ndarray, frame_mask: np.ndarray):
    """Our encoder's outputs on unmasked audio (jitted: op-by-op dispatch is slow)."""
    import jax  # noqa: PLC0415

    from fastvgs_jax.models import fastvgs  # noqa: PLC0415

    model = fastvgs.FaSTVGSPlus(config)
    encode = jax.jit(lambda v, a, m: model.apply(v, a, m, method=model.hidden_states))
    return encode(variables, audio, frame_mask)
