"""SpokenCOCO one-to-many retrieval recalls: hand-computed cases, ties, chunking, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fastvgs_jax.eval.retrieval import (
    caption_image_index,
    recalls_from_scores,
    retrieval_recalls,
    score_matrix,
)


def _sort_based_recalls(scores: np.ndarray, caption_image: np.ndarray, ks) -> dict[str, float]:
    """Independent oracle: full ranking by sort, own items placed after equal competitors."""
    num_images, num_captions = scores.shape
    out = {}
    ranks = []
    for c in range(num_captions):
        own = caption_image[c]
        order = sorted(range(num_images), key=lambda j: (-scores[j, c], j == own))
        ranks.append(order.index(own))
    for k in ks:
        out[f"speech_to_image_r{k}"] = float(np.mean(np.array(ranks) < k))
    ranks = []
    for i in range(num_images):
        own = caption_image == i
        order = sorted(range(num_captions), key=lambda c: (-scores[i, c], bool(own[c])))
        ranks.append(min(order.index(c) for c in np.flatnonzero(own)))
    for k in ks:
        out[f"image_to_speech_r{k}"] = float(np.mean(np.array(ranks) < k))
    out["mean_r1"] = 0.5 * (out["speech_to_image_r1"] + out["image_to_speech_r1"])
    return out


def test_hand_computed_recalls_in_both_directions():
    scores = np.array(
        [
            [0.5, 0.2, 0.9, 0.1, 0.0, 0.3, 0.4],
            [0.6, 0.7, 0.1, 0.2, 0.3, 0.8, 0.0],
            [0.0, 0.1, 0.2, 0.3, 0.4, 0.9, 0.05],
        ]
    )
    caption_image = np.array([0, 0, 1, 1, 1, 2, 2])
    got = recalls_from_scores(scores, caption_image, ks=(1, 2, 3, 4))
    # Competitors at least as good, per caption: [1, 1, 2, 1, 1, 0, 1].
    assert got["speech_to_image_r1"] == pytest.approx(1 / 7)
    assert got["speech_to_image_r2"] == pytest.approx(6 / 7)
    assert got["speech_to_image_r3"] == 1.0
    # Foreign captions above the best own one, per image: [1, 3, 0].
    assert got["image_to_speech_r1"] == pytest.approx(1 / 3)
    assert got["image_to_speech_r2"] == pytest.approx(2 / 3)
    assert got["image_to_speech_r3"] == pytest.approx(2 / 3)
    assert got["image_to_speech_r4"] == 1.0
    assert got["mean_r1"] == pytest.approx(0.5 * (1 / 7 + 1 / 3))
    assert got == pytest.approx(_sort_based_recalls(scores, caption_image, (1, 2, 3, 4)))


def test_images_with_four_and_six_captions_weigh_captions_and_images_separately():
    scores = np.array(
        [
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.6, 0.6, 0.6, 0.6, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8],
        ]
    )
    caption_image = np.array([0] * 4 + [1] * 6)
    got = recalls_from_scores(scores, caption_image, ks=(1, 2))
    # Speech → image: the 4 captions of image 0 miss, the 6 of image 1 hit (mean over captions).
    assert got["speech_to_image_r1"] == pytest.approx(0.6)
    # Image → speech: image 0 has caption 4 (0.5) above its best own (0.4); image 1 hits.
    assert got["image_to_speech_r1"] == pytest.approx(0.5)
    assert got["mean_r1"] == pytest.approx(0.55)
    assert got["speech_to_image_r2"] == got["image_to_speech_r2"] == 1.0


def test_all_equal_scores_give_zero_recall_until_k_exceeds_the_competitors():
    scores = np.ones((3, 6))
    caption_image = np.array([0, 0, 1, 1, 2, 2])
    got = recalls_from_scores(scores, caption_image, ks=(1, 2, 3, 4, 5))
    # Each caption ties with 2 other images; each image ties with 4 foreign captions.
    assert [got[f"speech_to_image_r{k}"] for k in (1, 2, 3)] == [0.0, 0.0, 1.0]
    assert [got[f"image_to_speech_r{k}"] for k in (1, 4, 5)] == [0.0, 0.0, 1.0]
    assert got["mean_r1"] == 0.0


def test_a_tied_competitor_ranks_above_the_target_but_own_captions_never_compete():
    scores = np.array(
        [
            [0.7, 0.7, 0.2],  # image 0: two own captions tied at the top → hit at 1
            [0.7, 0.1, 0.5],  # image 1: its own caption (0.5) is beaten by caption 0 (0.7)
        ]
    )
    caption_image = np.array([0, 0, 1])
    got = recalls_from_scores(scores, caption_image, ks=(1, 2))
    # Caption 0 ties image 1 (0.7 = 0.7) → miss at 1; caption 1 and caption 2 win outright.
    assert got["speech_to_image_r1"] == pytest.approx(2 / 3)
    assert got["speech_to_image_r2"] == 1.0
    assert got["image_to_speech_r1"] == pytest.approx(0.5)
    assert got["image_to_speech_r2"] == pytest.approx(1.0)


def test_collapsed_model_with_constant_embeddings_scores_zero():
    images = np.ones((5, 8), np.float32)
    audio = np.ones((10, 8), np.float32)
    got = retrieval_recalls(images, audio, np.repeat(np.arange(5), 2), ks=(1, 5), chunk_size=3)
    assert got["speech_to_image_r1"] == got["image_to_speech_r1"] == got["mean_r1"] == 0.0
    # K = 5 ≥ the 5 candidate images: clamped, every caption hits.
    assert got["speech_to_image_r5"] == 1.0
    assert got["image_to_speech_r5"] == 0.0  # 8 foreign captions tie with the own ones


def test_nan_target_is_a_miss():
    scores = np.array([[np.nan, 0.0], [0.5, 1.0]])
    got = recalls_from_scores(scores, np.array([0, 1]), ks=(1,))
    assert got["speech_to_image_r1"] == 0.5
    assert got["image_to_speech_r1"] == 0.5


def _uneven_split(rng, num_images):
    """Every image gets 1..6 captions, in shuffled order."""
    caption_image = np.repeat(np.arange(num_images), rng.integers(1, 7, size=num_images))
    return rng.permutation(caption_image)


def test_chunked_recalls_equal_full_matrix_on_tie_heavy_integer_embeddings():
    rng = np.random.default_rng(0)
    caption_image = _uneven_split(rng, 37)
    # Small integers make every dot product exact in float32, so ties are real and identical
    # in the chunked and the full computation.
    images = rng.integers(-1, 2, size=(37, 5)).astype(np.float32)
    audio = rng.integers(-1, 2, size=(caption_image.size, 5)).astype(np.float32)
    ks = (1, 3, 10, 100)
    chunked = retrieval_recalls(images, audio, caption_image, ks=ks, chunk_size=16)
    scores = score_matrix(images, audio)
    assert chunked == recalls_from_scores(scores, caption_image, ks=ks, chunk_size=7)
    assert chunked == pytest.approx(_sort_based_recalls(scores, caption_image, ks))


def test_chunked_recalls_equal_full_matrix_on_random_embeddings():
    rng = np.random.default_rng(1)
    caption_image = _uneven_split(rng, 53)
    images = rng.normal(size=(53, 24)).astype(np.float32)
    audio = (images[caption_image] + 2.0 * rng.normal(size=(caption_image.size, 24))).astype(
        np.float32
    )
    chunked = retrieval_recalls(images, audio, caption_image, chunk_size=20)
    full = recalls_from_scores(score_matrix(images, audio), caption_image, ks=(1, 5, 10, 100))
    assert chunked == full
    assert set(full) == {
        *(f"{d}_r{k}" for d in ("speech_to_image", "image_to_speech") for k in (1, 5, 10, 100)),
        "mean_r1",
    }
    assert 0.0 < full["mean_r1"] < 1.0
    assert full["speech_to_image_r100"] == full["image_to_speech_r100"] == 1.0  # clamped K


def test_image_without_caption_is_an_error():
    with pytest.raises(ValueError, match="no caption"):
        recalls_from_scores(np.zeros((3, 4)), np.array([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="no caption"):
        retrieval_recalls(np.zeros((3, 2)), np.zeros((4, 2)), np.array([0, 1, 1, 0]))


@pytest.mark.parametrize("bad_row", [-1, 3])
def test_caption_pointing_outside_the_image_table_is_an_error(bad_row):
    caption_image = np.array([0, 1, 2, bad_row])
    with pytest.raises(ValueError, match="outside"):
        recalls_from_scores(np.zeros((3, 4)), caption_image)
    with pytest.raises(ValueError, match="outside"):
        retrieval_recalls(np.zeros((3, 2)), np.zeros((4, 2)), caption_image)


def test_mismatched_shapes_and_bad_k_are_errors():
    with pytest.raises(ValueError, match="caption_image"):
        recalls_from_scores(np.zeros((2, 4)), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="dim"):
        retrieval_recalls(np.zeros((2, 3)), np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match="K"):
        recalls_from_scores(np.zeros((2, 2)), np.array([0, 1]), ks=(0, 1))


def test_caption_image_index_round_trips_string_and_int_ids():
    ids = np.array(["val2014/b.jpg", "val2014/a.jpg", "val2014/b.jpg", "val2014/c.jpg"])
    unique_ids, caption_image = caption_image_index(ids)
    assert list(unique_ids) == ["val2014/a.jpg", "val2014/b.jpg", "val2014/c.jpg"]
    assert list(caption_image) == [1, 0, 1, 2]
    np.testing.assert_array_equal(unique_ids[caption_image], ids)

    ints = np.array([42, 7, 7, 42, 9])
    unique_ids, caption_image = caption_image_index(ints)
    np.testing.assert_array_equal(unique_ids[caption_image], ints)
    assert caption_image.dtype == np.int32
