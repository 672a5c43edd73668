"""Per-example transforms and the Grain pipelines (on synthetic sources and the tiny corpus)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from fastvgs_jax.data import audio as audio_lib
from fastvgs_jax.data import pipelines, sources
from fastvgs_jax.data.pipelines import AUDIO_IMAGE, AUDIO_ONLY, Shard, StreamSpec

RATE = 16_000


def synthetic_source(count: int, seconds=(0.5, 3.0), seed: int = 0) -> list[dict]:
    """Examples whose image_id is their index, so batches say which examples they hold."""
    rng = np.random.default_rng(seed)
    return [
        {
            "audio": (rng.normal(size=int(rng.uniform(*seconds) * RATE)) * 3000).astype(np.int16),
            "image": rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8),
            "image_id": np.int64(i),
            "utterance_id": f"utt{i}".encode(),
        }
        for i in range(count)
    ]


def take(iterator, n: int) -> list[dict]:
    return [next(iterator) for _ in range(n)]


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x["kind"] == y["kind"]
        for key in x:
            if key != "kind":
                np.testing.assert_array_equal(x[key], y[key], err_msg=key)


# ---- per-example transforms ----------------------------------------------------------------


def test_normalize_waveform_gives_zero_mean_unit_variance():
    x = (np.random.default_rng(0).normal(3.0, 5.0, size=16000) * 100).astype(np.int16)
    y = audio_lib.normalize_waveform(x)
    assert y.dtype == np.float32
    assert abs(y.mean()) < 1e-5 and abs(y.std() - 1.0) < 1e-4


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(0, np.int16), "empty"),
        (np.array([0.1, np.nan, 0.2], np.float32), "NaN"),
        (np.full(100, 7, np.int16), "constant"),
        (np.zeros((2, 100), np.float32), "mono"),
    ],
)
def test_normalize_waveform_rejects_bad_audio_by_name(bad, message):
    with pytest.raises(ValueError, match=message) as error:
        audio_lib.normalize_waveform(bad, name="img7-cap2")
    assert "img7-cap2" in str(error.value)


def test_crop_or_pad_pads_with_zeros_and_masks_the_padding():
    x = np.arange(1, 11, dtype=np.float32)
    padded, mask = audio_lib.crop_or_pad(x, 16, rng=None)
    np.testing.assert_array_equal(padded[:10], x)
    assert not padded[10:].any()
    np.testing.assert_array_equal(mask, np.arange(16) < 10)


def test_random_crop_is_a_contiguous_window_and_deterministic_for_a_seed():
    x = np.arange(1000, dtype=np.float32)
    a, mask = audio_lib.crop_or_pad(x, 100, np.random.default_rng(3))
    b, _ = audio_lib.crop_or_pad(x, 100, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.diff(a), np.ones(99))
    assert mask.all()


def test_wav2vec2_geometry_has_20ms_frames_and_399_frames_in_8_seconds():
    geometry = audio_lib.FrameGeometry()
    assert geometry.stride == 320 and geometry.receptive_field == 400
    assert geometry.num_frames(8 * RATE) == 399
    assert geometry.num_frames(10 * RATE) == 499


@pytest.mark.parametrize("num_valid", [0, 1, 319, 320, 321, 12_345, 128_000])
def test_a_frame_is_padding_exactly_when_all_its_samples_are(num_valid):
    geometry = audio_lib.FrameGeometry()
    length = 128_000
    mask = geometry.frame_mask(num_valid, length)
    starts = np.arange(len(mask)) * geometry.stride
    sees_real_sample = [
        bool((np.arange(s, s + geometry.receptive_field) < num_valid).any()) for s in starts
    ]
    np.testing.assert_array_equal(mask, sees_real_sample)


def test_normalize_image_standardises_channels_and_rejects_non_rgb():
    image = np.full((64, 64, 3), 255, np.uint8)
    out = audio_lib.normalize_image(image)
    np.testing.assert_allclose(out[0, 0], (1.0 - audio_lib.IMAGE_MEAN) / audio_lib.IMAGE_STD)
    with pytest.raises(ValueError, match="RGB"):
        audio_lib.normalize_image(np.zeros((64, 64), np.uint8))


# ---- streams ---------------------------------------------------------------------------------


def test_batches_have_fixed_shapes_per_kind():
    spec = StreamSpec(batch_size=3, crop_seconds=1.0)
    it = iter(pipelines.training_stream(synthetic_source(10), AUDIO_IMAGE, spec, seed=0))
    shapes = {
        tuple((k, v.shape, v.dtype) for k, v in b.items() if k != "kind") for b in take(it, 12)
    }
    assert len(shapes) == 1
    batch = dict((k, (s, d)) for k, s, d in shapes.pop())
    assert batch["audio"] == ((3, RATE), np.float32)
    assert batch["frame_mask"] == ((3, 49), np.bool_)
    assert batch["image"] == ((3, 64, 64, 3), np.float32)


def test_stream_reshuffles_each_epoch_and_visits_every_example_once_per_epoch():
    spec = StreamSpec(batch_size=5, crop_seconds=0.5)
    it = iter(pipelines.training_stream(synthetic_source(10), AUDIO_IMAGE, spec, seed=0))
    epochs = [np.concatenate([b["image_id"] for b in take(it, 2)]) for _ in range(3)]
    for ids in epochs:
        assert sorted(ids) == list(range(10))
    assert not all(np.array_equal(epochs[0], e) for e in epochs[1:])


def test_same_seed_same_batches_other_seed_other_batches():
    spec = StreamSpec(batch_size=4, crop_seconds=1.0)
    source = synthetic_source(12)

    def first(seed):
        return take(iter(pipelines.training_stream(source, AUDIO_IMAGE, spec, seed=seed)), 3)

    assert_same_batches(first(7), first(7))
    assert not np.array_equal(first(7)[0]["audio"], first(8)[0]["audio"])


def test_process_shards_read_their_rows_of_the_one_process_batches():
    spec = StreamSpec(batch_size=4, crop_seconds=0.5)
    source = synthetic_source(10)
    whole = take(iter(pipelines.training_stream(source, AUDIO_IMAGE, spec, 0)), 6)
    parts = [
        take(iter(pipelines.training_stream(source, AUDIO_IMAGE, spec, 0, Shard(i, 2))), 6)
        for i in range(2)
    ]
    for batch, first, second in zip(whole, *parts, strict=True):
        for key in ("audio", "frame_mask", "image_id"):
            joined = np.concatenate([first[key], second[key]])
            np.testing.assert_array_equal(joined, batch[key], err_msg=key)


def test_a_global_batch_that_does_not_split_over_the_processes_is_rejected():
    with pytest.raises(ValueError, match="does not split evenly over 2 processes"):
        pipelines.training_stream(
            synthetic_source(8), AUDIO_IMAGE, StreamSpec(3, 0.5), 0, Shard(0, 2)
        )


def test_short_clips_are_dropped_when_a_minimum_length_is_set():
    source = synthetic_source(20, seconds=(0.5, 4.0))
    spec = StreamSpec(batch_size=4, crop_seconds=3.0, min_seconds=2.0)
    it = iter(pipelines.training_stream(source, AUDIO_ONLY, spec, seed=0))
    for batch in take(it, 5):
        assert (batch["audio_mask"].sum(axis=1) >= 2 * RATE).all()
        assert "image" not in batch and batch["kind"] == AUDIO_ONLY


def test_a_minimum_length_no_clip_reaches_raises_instead_of_hanging():
    source = synthetic_source(10, seconds=(0.5, 1.0))
    spec = StreamSpec(batch_size=2, crop_seconds=1.0, min_seconds=2.0)
    with pytest.raises(Exception, match="filter"):
        take(iter(pipelines.training_stream(source, AUDIO_ONLY, spec, seed=0)), 1)


def test_nan_audio_in_a_source_names_the_utterance():
    source = synthetic_source(4)
    source[2]["audio"] = np.full(8000, np.nan, np.float32)
    spec = StreamSpec(batch_size=4, crop_seconds=0.5)
    with pytest.raises(ValueError, match="utt2"):
        take(iter(pipelines.training_stream(source, AUDIO_IMAGE, spec, seed=0)), 2)


def _two_streams(seed=0):
    source = synthetic_source(12)
    return {
        AUDIO_IMAGE: pipelines.training_stream(source, AUDIO_IMAGE, StreamSpec(2, 0.5), seed),
        AUDIO_ONLY: pipelines.training_stream(source, AUDIO_ONLY, StreamSpec(3, 1.0), seed + 1),
    }


def test_mix_ratio_is_observed():
    mixed = pipelines.mixed_stream(_two_streams(), {AUDIO_IMAGE: 0.75, AUDIO_ONLY: 0.25})
    kinds = collections.Counter(b["kind"] for b in take(iter(mixed), 40))
    assert kinds == {AUDIO_IMAGE: 30, AUDIO_ONLY: 10}


def test_iterator_state_restores_the_next_batches_exactly():
    mixed = pipelines.mixed_stream(_two_streams(), {AUDIO_IMAGE: 0.5, AUDIO_ONLY: 0.5})
    it = iter(mixed)
    take(it, 5)
    state = it.get_state()
    expected = take(it, 6)
    resumed = iter(mixed)
    resumed.set_state(state)
    assert_same_batches(take(resumed, 6), expected)


def test_a_mix_change_at_a_phase_switch_resumes_shared_streams_and_starts_new_ones():
    streams = _two_streams()
    first_phase = iter(pipelines.mixed_stream(streams, {AUDIO_ONLY: 1.0}))
    take(first_phase, 4)
    state = first_phase.get_state()
    continuation = take(first_phase, 2)

    second_phase = iter(pipelines.mixed_stream(_two_streams(), {AUDIO_IMAGE: 1, AUDIO_ONLY: 1}))
    second_phase.set_state(state)
    batches = take(second_phase, 4)
    by_kind = collections.defaultdict(list)
    for b in batches:
        by_kind[b["kind"]].append(b)
    assert_same_batches(by_kind[AUDIO_ONLY], continuation)
    fresh = take(iter(_two_streams()[AUDIO_IMAGE]), 2)
    assert_same_batches(by_kind[AUDIO_IMAGE], fresh)


@pytest.mark.parametrize(
    "weights, message",
    [
        ({AUDIO_IMAGE: 0.0, AUDIO_ONLY: 0.0}, "zero"),
        ({"images": 1.0}, "unknown"),
        ({AUDIO_ONLY: -1}, ">= 0"),
    ],
)
def test_bad_mix_weights_are_rejected(weights, message):
    with pytest.raises(ValueError, match=message):
        pipelines.mixed_stream(_two_streams(), weights)


def test_evaluation_batches_cover_the_split_once_with_padded_fixed_shapes():
    source = synthetic_source(7)
    batches = list(pipelines.evaluation_batches(source, AUDIO_IMAGE, StreamSpec(3, 1.0)))
    assert [b["audio"].shape for b in batches] == [(3, RATE)] * 3
    ids = np.concatenate([b["image_id"][b["example_mask"]] for b in batches])
    np.testing.assert_array_equal(ids, np.arange(7))


# ---- on the real (tiny) corpus ---------------------------------------------------------------


def test_config_pipeline_reads_the_tiny_corpus(tiny_data_dir):
    from configs.data import get_config

    config = get_config("tiny")
    config.data_dir = tiny_data_dir
    config.audio_image.batch_size = 4
    config.audio_only.batch_size = 2
    mixed = pipelines.mixed_stream_from_config(config, shard=Shard())
    batches = take(iter(mixed), 4)
    assert [b["kind"] for b in batches] == [AUDIO_IMAGE, AUDIO_ONLY] * 2
    assert batches[0]["audio"].shape == (4, 8 * RATE)
    assert batches[1]["audio"].shape == (2, 10 * RATE)
    assert batches[0]["frame_mask"].any(axis=1).all()


def test_an_audio_only_phase_opens_no_image_split(tiny_data_dir):
    from configs.data import get_config

    config = get_config("tiny")
    config.data_dir = tiny_data_dir
    config.audio_image.split = "no_such_split"  # never opened: its weight is zero
    mixed = pipelines.mixed_stream_from_config(config, {AUDIO_ONLY: 1.0}, Shard())
    assert next(iter(mixed))["kind"] == AUDIO_ONLY


def test_audio_at_another_sample_rate_is_rejected(tiny_data_dir):
    with pytest.raises(sources.CorpusError, match="22050 Hz"):
        sources.open_split(tiny_data_dir, "tiny", "train", expected_sample_rate=22050)


def test_opening_an_unbuilt_corpus_says_how_to_build_it(tmp_path):
    with pytest.raises(sources.CorpusError, match="fastvgs_jax.data.build"):
        sources.open_split(str(tmp_path), "tiny", "train")
