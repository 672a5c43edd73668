"""Our speech encoder and SSL head against HF transformers' PyTorch wav2vec2, same weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity_support import (
    audio_batch,
    hf_frame_mask,
    hf_hidden_states,
    our_hidden_states,
    random_hf_model,
    require,
)

from fastvgs_jax.convert import wav2vec2 as convert
from fastvgs_jax.losses import wav2vec2 as w2v2_losses
from fastvgs_jax.models import fastvgs, masking
from fastvgs_jax.models.config import model_config

torch = require("torch")
transformers = require("transformers")

TOL = 1e-4


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A random HF model saved with save_pretrained and read back by our loader."""
    hf = random_hf_model()
    path = tmp_path_factory.mktemp("hf")
    hf.save_pretrained(path)
    config, variables, report = convert.load_hf(path)
    return hf.eval(), config, variables, report


def test_import_restores_every_encoder_tensor_and_reports_the_rest(imported):
    _, _, _, report = imported
    assert report.unused_keys == []
    assert any("speech_encoder/cls" in p for p in report.kept_initial) is False  # no CLS
    assert all(not p.startswith("params/speech_encoder") for p in report.kept_initial)
    assert any(p.startswith("params/audio_pooler") for p in report.kept_initial)


def test_every_hidden_state_matches_hf(imported):
    hf, config, variables, _ = imported
    audio, attention = audio_batch()
    theirs, out, frame_mask = hf_hidden_states(hf, audio, attention)
    ours = our_hidden_states(config, variables, audio, frame_mask)
    assert len(ours.hidden_states) == len(theirs) == config.num_layers + 1
    np.testing.assert_allclose(ours.features, out.extract_features.numpy(), atol=TOL, rtol=0)
    for layer, (a, b) in enumerate(zip(ours.hidden_states, theirs, strict=True)):
        err = np.abs(np.asarray(a) - b)[frame_mask].max()
        assert err <= TOL, f"hidden state {layer}: max |ours − HF| = {err:.2e}"


def test_quantizer_and_contrastive_loss_match_hf_given_the_same_noise_and_masks(
    imported, monkeypatch
):
    hf, config, variables, _ = imported
    audio, attention = audio_batch()
    frames = fastvgs.speech.frame_geometry(config).num_frames(audio.shape[1])
    frame_mask = hf_frame_mask(hf, attention, frames)
    masked = np.asarray(masking.mask_spans(jax.random.key(0), jnp.asarray(frame_mask), 0.5, 4, 2))
    negatives = np.asarray(masking.sample_negatives(jax.random.key(1), jnp.asarray(masked), 7))
    assert masked.sum(-1).min() >= 2
    groups, entries = config.quantizer.groups, config.quantizer.entries
    noise = np.random.default_rng(2).gumbel(size=(2, frames, groups, entries)).astype(np.float32)

    def fixed_noise_gumbel_softmax(logits, tau=1.0, hard=False, dim=-1):
        y_soft = ((logits + torch.from_numpy(noise.reshape(logits.shape))) / tau).softmax(dim)
        index = y_soft.argmax(dim, keepdim=True)
        y_hard = torch.zeros_like(logits).scatter_(dim, index, 1.0)
        return y_hard - y_soft.detach() + y_soft

    monkeypatch.setattr(torch.nn.functional, "gumbel_softmax", fixed_noise_gumbel_softmax)
    offsets = (np.arange(2) * frames)[:, None, None]
    hf.train()
    hf.set_gumbel_temperature(2.0)
    with torch.no_grad():
        out = hf(
            torch.from_numpy(audio),
            attention_mask=torch.from_numpy(attention),
            mask_time_indices=torch.from_numpy(masked.copy()),
            sampled_negative_indices=torch.from_numpy(negatives + offsets),
        )
    hf.eval()

    model = fastvgs.FaSTVGSPlus(config)
    outputs = model.apply(
        variables,
        jnp.asarray(audio),
        jnp.asarray(frame_mask),
        mask_positions=jnp.asarray(masked),
        temperature=2.0,
        deterministic=False,
        vgs=False,
        gumbel_noise=jnp.asarray(noise),
        rngs={"dropout": jax.random.key(0)},
        mutable=["batch_stats"],
    )[0]
    ssl = outputs.ssl
    sel = masked
    np.testing.assert_allclose(
        np.asarray(ssl.targets)[sel], out.projected_quantized_states.numpy()[sel], atol=TOL
    )
    np.testing.assert_allclose(
        np.asarray(ssl.context)[sel], out.projected_states.numpy()[sel], atol=TOL
    )
    perplexity = w2v2_losses.codebook_perplexity(ssl.soft_probs, jnp.asarray(masked))
    np.testing.assert_allclose(float(perplexity), out.codevector_perplexity.item(), rtol=1e-5)
    contrastive = w2v2_losses.contrastive_loss(
        ssl.context, ssl.targets, ssl.codes, jnp.asarray(masked), jnp.asarray(negatives), 0.1
    )
    # HF sums over masked frames; ours is the mean.
    n = masked.sum()
    np.testing.assert_allclose(float(contrastive.loss) * n, out.contrastive_loss.item(), rtol=1e-4)
    diversity = w2v2_losses.diversity_loss(ssl.soft_probs, jnp.asarray(masked))
    np.testing.assert_allclose(float(diversity) * n, out.diversity_loss.item(), rtol=1e-4)


def test_export_is_loaded_by_transformers_and_gives_our_hidden_states(tmp_path):
    config = model_config("tiny")
    config.use_cls = False
    config.cnn.channels = (24,) * 7
    variables = fastvgs.init_variables(config, jax.random.key(3))
    convert.save_hf(variables, config, tmp_path)
    hf = transformers.Wav2Vec2ForPreTraining.from_pretrained(tmp_path).eval()
    audio, attention = audio_batch(batch_lengths=(6000, 6000), samples=6000)
    theirs, _, frame_mask = hf_hidden_states(hf, audio, attention)
    ours = our_hidden_states(config, variables, audio, frame_mask)
    for a, b in zip(ours.hidden_states, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, atol=TOL, rtol=0)
    # And back: re-import gives the same tensors.
    _, again, report = convert.load_hf(tmp_path)
    assert report.unused_keys == []
    for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"]["speech_encoder"]):
        other = again["params"]["speech_encoder"]
        for k in path:
            other = other[k.key]
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(other))


def test_log_mel_matches_transformers_numpy_audio_utils():
    from transformers import audio_utils

    from fastvgs_jax.models import logmel

    audio = np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32)
    ours = np.asarray(logmel.log_mel(jnp.asarray(audio)))
    filters = audio_utils.mel_filter_bank(257, 80, 0.0, 8000.0, 16000, norm=None, mel_scale="htk")
    window = audio_utils.window_function(400, "hann", periodic=True)
    for row, x in zip(ours, audio, strict=True):
        mel = audio_utils.spectrogram(
            x.astype(np.float64),
            window,
            frame_length=400,
            hop_length=160,
            fft_length=512,
            power=2.0,
            center=False,
            mel_filters=filters,
            mel_floor=1e-30,
            dtype=np.float64,
        )
        np.testing.assert_allclose(row, np.log(mel.T + 1e-6), atol=2e-4)
