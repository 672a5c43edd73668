"""ABX features: per-layer model features from bucketed batches equal the utterance encoded
alone, one frame per 20 ms, one compile per bucket; the MFCC baseline's shape and sanity."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.fft

from fastvgs_jax.data import audio as audio_lib
from fastvgs_jax.data import sources
from fastvgs_jax.eval import features
from fastvgs_jax.models import fastvgs, speech
from fastvgs_jax.models.config import model_config


@pytest.fixture(scope="module")
def utterances(tiny_data_dir) -> dict[str, np.ndarray]:
    """Three ABX utterances of different lengths (raw int16), the shortest of the split: the
    first two share a bucket (1.9 s and 2.1 s → 2.24 s), the third needs the next one."""
    source = sources.open_split(tiny_data_dir, "tiny", "abx")
    chosen = {}
    for i in (17, 10, 5):
        example = source[i]
        chosen[sources.decode_text(example["utterance_id"])] = np.asarray(example["audio"])
    assert len({a.shape[0] for a in chosen.values()}) == 3
    return chosen


def _alone(config, variables, wave: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer of one utterance encoded by itself: no padding, all frames real."""
    model = fastvgs.FaSTVGSPlus(config)
    audio = audio_lib.normalize_waveform(wave)[None]
    frames = speech.frame_geometry(config).num_frames(audio.shape[1])
    apply = jax.jit(lambda v, a, m: model.apply(v, a, m, method=model.hidden_states))
    out = apply(variables, audio, np.ones((1, frames), bool))
    named = {features.FRONTEND: np.asarray(out.features[0])}
    for layer in range(1, config.num_layers + 1):
        hidden = speech.frames_of(out.hidden_states[layer], out.has_cls)
        named[features.layer_name(layer)] = np.asarray(hidden[0])
    return named


def test_bucketed_features_equal_each_utterance_encoded_alone(utterances):
    # The CNN frontend is the hard case: its GroupNorm normalises over time, so without
    # per-utterance statistics the padding would change every layer.
    utterances = dict(list(utterances.items())[:2])
    config = model_config("tiny")
    variables = fastvgs.init_variables(config, jax.random.key(1))
    geometry = speech.frame_geometry(config)
    lengths = {name: wave.shape[0] for name, wave in utterances.items()}
    assert len(features.assign_buckets(lengths, geometry)) == 1  # batched together, padded
    layers = features.parse_layers("all", config.num_layers)
    batched = features.extract_features(config, variables, utterances, layers)
    assert sorted(batched) == ["frontend", "layer_1", "layer_2", "layer_3"]
    for name, wave in utterances.items():
        alone = _alone(config, variables, wave)
        for layer, values in batched.items():
            got = values[name]
            assert got.shape[0] == geometry.num_frames(wave.shape[0])
            np.testing.assert_allclose(got, alone[layer], atol=1e-5, rtol=0, err_msg=layer)


def test_one_frame_per_20_ms_and_one_trace_per_bucket(utterances):
    config = model_config("tiny")
    variables = fastvgs.init_variables(config, jax.random.key(2))
    lengths = {name: wave.shape[0] for name, wave in utterances.items()}
    geometry = speech.frame_geometry(config)
    buckets = features.assign_buckets(lengths, geometry)
    assert len(buckets) >= 2  # the three lengths need more than one bucket at growth 1.25
    key = (config.to_json(), (1, 3))  # a layer set no other test extracts: its own traces
    before = features.TRACES[key]
    out = features.extract_features(config, variables, utterances, [3, 1])
    assert features.TRACES[key] - before == len(buckets)
    features.extract_features(config, variables, utterances, [3, 1])
    assert features.TRACES[key] - before == len(buckets)  # the second pass compiles nothing
    for name, samples in lengths.items():
        frames = out["layer_3"][name].shape[0]
        # Frame i covers samples [320 i, 320 i + 400): about one frame per 20 ms.
        assert frames == (samples - 400) // 320 + 1
        assert samples / 320 - 1.25 < frames <= samples / 320
        assert out["layer_1"][name].shape == (frames, config.hidden_dim)


def test_bucket_ladder_bounds_padding():
    ladder = features.bucket_ladder(10 * 16_000, 5120)
    assert ladder[:6] == [5120, 10240, 15360, 20480, 25600, 35840]
    assert ladder[-1] >= 160_000
    assert all(b / a <= 2.0 for a, b in zip(ladder, ladder[1:], strict=False))
    assert all(b / a <= 1.34 for a, b in zip(ladder[5:], ladder[6:], strict=False))


def test_parse_layers():
    assert features.parse_layers("all", 3) == (0, 1, 2, 3)
    assert features.parse_layers("3,1", 3) == (1, 3)
    assert features.parse_layers(["frontend", 2], 3) == (0, 2)
    with pytest.raises(ValueError, match="outside 0..3"):
        features.parse_layers("4", 3)
    with pytest.raises(ValueError, match="'top'"):
        features.parse_layers("top", 3)


def test_mfcc_shape_and_frame_rate_match_the_cnn():
    rng = np.random.default_rng(0)
    for samples in (400, 16_000, 23_457):
        wave = (rng.standard_normal(samples) * 3000).astype(np.int16)
        out = features.mfcc_features(wave)
        assert out.shape == (speech.frame_geometry(model_config("tiny")).num_frames(samples), 39)
        assert out.dtype == np.float32 and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="shorter than one"):
        features.mfcc_features(np.zeros(399, np.int16))


def test_mfcc_pure_tone_lands_in_its_mel_band():
    t = np.arange(16_000) / 16_000
    energies = features.log_mel_energies(np.sin(2 * np.pi * 1000.0 * t))
    # The band whose triangle peaks nearest 1 kHz (HTK mel, 40 filters from 0 Hz to 8 kHz).
    mel = 2595 * np.log10(1 + np.array([0.0, 8000.0]) / 700)
    centres = 700 * (10 ** (np.linspace(mel[0], mel[1], 42)[1:-1] / 2595) - 1)
    assert np.all(np.argmax(energies, axis=1) == np.argmin(np.abs(centres - 1000.0)))


def test_mfcc_deltas_of_a_constant_signal_are_zero():
    silence = np.zeros(8000, np.int16)  # digital silence: every band at the log floor
    out = features.mfcc_features(silence)
    np.testing.assert_allclose(out[:, 13:], 0.0, atol=1e-6)
    assert np.all(out[:, :13] == out[:1, :13])
    ramp = np.arange(20, dtype=float)[:, None] * [1.0, -2.0]
    np.testing.assert_allclose(features.deltas(ramp)[2:-2], [[1.0, -2.0]] * 16)


def test_dct_matrix_is_scipys_orthonormal_dct_ii():
    x = np.random.default_rng(1).standard_normal((5, 40))
    expected = scipy.fft.dct(x, type=2, norm="ortho", axis=-1)[:, :13]
    np.testing.assert_allclose(x @ features.dct_matrix(40, 13), expected, atol=1e-12)
