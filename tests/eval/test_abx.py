"""Triphone ABX: DTW, frame selection, distances, cells, aggregation, seeding, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastvgs_jax.eval import abx


def euclidean(x, y) -> np.ndarray:
    x, y = np.asarray(x, float), np.asarray(y, float)
    return np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))


def scalar_dtw(d: np.ndarray) -> float:
    """Plain DTW of one matrix, path length found by back-tracking (diag, left, up)."""
    n, m = d.shape
    cost = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            if i == 0 and j == 0:
                cost[i, j] = d[0, 0]
            elif i == 0:
                cost[i, j] = d[i, j] + cost[i, j - 1]
            elif j == 0:
                cost[i, j] = d[i, j] + cost[i - 1, j]
            else:
                cost[i, j] = d[i, j] + min(cost[i - 1, j], cost[i - 1, j - 1], cost[i, j - 1])
    i, j, cells = n - 1, m - 1, 1
    while i > 0 and j > 0:
        diag, left, up = cost[i - 1, j - 1], cost[i, j - 1], cost[i - 1, j]
        if diag <= left and diag <= up:
            i, j = i - 1, j - 1
        elif left <= up:
            j -= 1
        else:
            i -= 1
        cells += 1
    return cost[n - 1, m - 1] / (cells + i + j)


def one_frame_set(spec):
    """Features and items with one single-frame token per file.

    ``spec``: rows (context, speaker, phone, frame vector); the context becomes next-phone.
    """
    features, items = {}, []
    for k, (context, speaker, phone, vector) in enumerate(spec):
        features[f"f{k}"] = np.asarray([vector], np.float32)
        # frame 0 is centred at 0.01 s: [0, 0.03] selects X[0:1] in both conventions
        items.append((f"f{k}", 0.0, 0.03, phone, "L", context, speaker))
    return features, items


# ---------------------------------------------------------------------------- DTW


@pytest.mark.parametrize(
    "x, want",
    [
        ([[0, 1], [0, 0], [1, 1]], math.sqrt(2) / 2),
        ([[0, 2], [0, 1], [1, 1], [-1, 0]], 3 / 4),
        ([[0, 0], [0, 1]], (2 + math.sqrt(2)) / 3),
    ],
)
def test_dtw_reproduces_reference_euclidean_values(x, want):
    y = [[0, 1], [1, 2], [0, 0]]
    assert abx.dtw_normalised(euclidean(x, y)[None])[0] == pytest.approx(want, abs=1e-12)


def test_batched_dtw_equals_scalar_dtw_including_ties_and_padding():
    rng = np.random.default_rng(0)
    sizes = [(1, 1), (1, 5), (6, 1), (2, 2), (3, 7), (7, 3), (5, 5), (8, 6), (4, 8)] * 6
    big_n, big_m = 8, 8
    # garbage in the padding must not leak into any pair's result
    batch = rng.uniform(50, 100, size=(len(sizes), big_n, big_m))
    for b, (n, m) in enumerate(sizes):
        batch[b, :n, :m] = rng.integers(0, 3, size=(n, m))  # small integers force ties
    rows, cols = zip(*sizes, strict=True)
    got = abx.dtw_normalised(batch, rows, cols)
    want = [scalar_dtw(batch[b, :n, :m]) for b, (n, m) in enumerate(sizes)]
    np.testing.assert_array_equal(got, want)


def test_dtw_path_length_follows_tie_priority():
    # Diagonal before (i, j-1): at (1, 1) the diagonal (cost 2) ties with (1, 0) (cost 2);
    # 2 cells give 4/2, whereas (i, j-1) first would give 3 cells, 4/3.
    assert abx.dtw_normalised(np.array([[[2.0, 2.0], [0.0, 2.0]]]))[0] == 2.0
    # (i, j-1) before (i-1, j): cost 3 over 4 cells; (i-1, j) first would give 5 cells, 0.6.
    d = np.array([[[2.0, 0.0, 1.0, 1.0], [0.0, 1.0, 2.0, 0.0], [1.0, 1.0, 0.0, 0.0]]])
    assert abx.dtw_normalised(d)[0] == 0.75


# ---------------------------------------------------------------------------- distances


def test_angular_distance_is_angle_over_pi_and_scale_free():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 1.0]])
    d = abx.angular_distances(x, x[:1] * 7.0)[:, 0]
    np.testing.assert_allclose(d, [0.0, 0.5, 1.0, 0.25], atol=1e-6)


def test_all_zero_frame_is_maximally_far_from_nonzero_and_zero_from_zero():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    d = abx.angular_distances(x, x)
    np.testing.assert_allclose(d[0], [0.0, 1.0, 1.0])
    np.testing.assert_allclose(d[:, 0], [0.0, 1.0, 1.0])
    assert d[1, 2] == pytest.approx(1.0)  # and opposite non-zero frames are also at 1


# ---------------------------------------------------------------------------- frame selection


def test_frame_selection_end_exclusive_by_default_and_inclusive_on_request():
    # 50 Hz: ceil(5.0 - 0.5) = 5, floor(12.5 - 0.5) = 12
    assert abx.token_frames(0.1, 0.25, 20) == (5, 12)
    assert abx.token_frames(0.1, 0.25, 20, inclusive_end=True) == (5, 13)
    # clipped to T = 12 frames: identical in both conventions
    assert abx.token_frames(0.1, 0.25, 12) == (5, 12)
    assert abx.token_frames(0.1, 0.25, 12, inclusive_end=True) == (5, 12)
    # starts at or past the end: dropped
    assert abx.token_frames(0.1, 0.25, 5) is None
    assert abx.token_frames(0.1, 0.25, 5, inclusive_end=True) is None
    # one frame centre inside the span (floor(5.75 - 0.5) = 5): empty vs one frame
    assert abx.token_frames(0.1, 0.115, 20) is None
    assert abx.token_frames(0.1, 0.115, 20, inclusive_end=True) == (5, 6)
    # other frame rates
    assert abx.token_frames(0.1, 0.25, 40, frame_rate=100.0) == (10, 24)


def test_inclusive_end_keeps_one_frame_tokens_that_the_reference_drops():
    features = {"u": np.ones((20, 3), np.float32)}
    items = [("u", 0.1, 0.115, "A", "L", "R", "s"), ("u", 0.1, 0.25, "A", "L", "R", "s")]
    assert abx.abx_error(features, items).num_items == 1
    assert abx.abx_error(features, items, inclusive_end=True).num_items == 2


# ---------------------------------------------------------------------------- theta and cells


def test_theta_is_one_half_when_a_and_b_are_interchangeable():
    rng = np.random.default_rng(1)
    d_xa, d_xb = rng.random((4, 3)), rng.random((4, 5))
    assert abx.abx_theta(d_xa, d_xa) == 0.5  # all ties
    assert abx.abx_theta(d_xa, d_xb) + abx.abx_theta(d_xb, d_xa) == pytest.approx(1.0)
    # X on the bisector of a and b, or mirrored pairs of X: theta = 1/2, error 1/2
    spec = [("c", "s1", "A", [1, 0]), ("c", "s1", "B", [0, 1])]
    spec += [("c", "s2", "A", [3, 1]), ("c", "s2", "A", [1, 3])]
    result = abx.abx_error(*one_frame_set(spec), speaker_modes=("across",))
    assert result.across == pytest.approx(0.5)


def test_within_speaker_cells_ties_and_nested_means():
    spec = [
        # s1, context c1: both A tokens closer to each other than to b -> error 0
        ("c1", "s1", "A", [1, 0]),
        ("c1", "s1", "A", [1, 0.1]),
        ("c1", "s1", "B", [0, 1]),
        # s1, context c2: both A tokens closer to b -> error 1; s1 mean 0.5
        ("c2", "s1", "A", [1, 0]),
        ("c2", "s1", "A", [0, 1]),
        ("c2", "s1", "B", [1, 1]),
        # s2, c1: x=(1,0) is equally far from a=(1,1) and b=(1,-1) (1/2); x=(1,1) right (1)
        # -> theta 3/4, error 1/4; pair (A, B) = mean over speakers (0.5, 0.25) = 0.375
        ("c1", "s2", "A", [1, 0]),
        ("c1", "s2", "A", [1, 1]),
        ("c1", "s2", "B", [1, -1]),
        # s3, c3: pair (C, A) with error 1
        ("c3", "s3", "C", [1, 0]),
        ("c3", "s3", "C", [0, 1]),
        ("c3", "s3", "A", [1, 1]),
    ]
    result = abx.abx_error(*one_frame_set(spec), speaker_modes=("within",))
    assert result.within == pytest.approx((0.375 + 1.0) / 2)  # phone pairs (A,B), (C,A)
    assert math.isnan(result.across)
    assert result.num_items == len(spec)
    assert result.as_percent()["within"] == pytest.approx(68.75)


def test_across_speaker_cells_average_jointly_over_context_and_x_speaker():
    spec = [
        ("c1", "s1", "A", [1, 0]),
        ("c1", "s1", "B", [0, 1]),
        ("c1", "s2", "A", [3, 1]),  # X nearer a: error 0
        ("c1", "s3", "A", [1, 1]),  # tie: error 1/2
        ("c2", "s1", "A", [1, 0]),
        ("c2", "s1", "B", [0, 1]),
        ("c2", "s2", "A", [1, 3]),  # X nearer b: error 1
    ]
    result = abx.abx_error(*one_frame_set(spec))
    # joint mean over (context, X speaker): (0 + 1/2 + 1) / 3, not mean of (1/4, 1)
    assert result.across == pytest.approx(0.5)
    assert math.isnan(result.within)  # no group has two tokens


def test_at_most_max_x_speakers_are_drawn_per_cell():
    spec = [("c", "s0", "A", [1, 0]), ("c", "s0", "B", [0, 1])]
    spec += [("c", f"x{k}", "A", [1, 0]) for k in range(3)]  # error 0 each
    spec += [("c", f"y{k}", "A", [0, 1]) for k in range(3)]  # error 1 each
    features, items = one_frame_set(spec)
    assert abx.abx_error(features, items, max_x_speakers=6).across == pytest.approx(0.5)
    picks = {abx.abx_error(features, items, max_x_speakers=1, seed=s).across for s in range(12)}
    assert picks == {0.0, 1.0}


# ---------------------------------------------------------------------------- seeding


def test_seeded_subsampling_is_reproducible_and_recorded():
    features, items = abx.synthetic_abx_set(
        3, num_speakers=4, num_phones=3, num_contexts=3, max_tokens_per_group=8, dim=6
    )
    small = dict(max_group_size=3, max_x_speakers=1)
    first = abx.abx_error(features, items, seed=7, **small)
    assert first == abx.abx_error(features, items, seed=7, **small)
    assert first.seed == 7
    others = [abx.abx_error(features, items, seed=s, **small) for s in (8, 9)]
    assert any((o.within, o.across) != (first.within, first.across) for o in others)
    # without any subsampling the seed changes nothing but the record
    full = [abx.abx_error(features, items, seed=s) for s in (7, 8)]
    assert (full[0].within, full[0].across) == (full[1].within, full[1].across)
    assert (full[0].seed, full[1].seed) == (7, 8)


# ---------------------------------------------------------------------------- errors


def test_missing_feature_file_raises_key_error_naming_it():
    features, items = one_frame_set([("c", "s", "A", [1, 0]), ("c", "s", "B", [0, 1])])
    del features["f1"]
    with pytest.raises(KeyError, match="'f1'"):
        abx.abx_error(features, items)


def test_read_item_file_names_the_path_in_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.item"):
        abx.read_item_file(tmp_path / "nope.item")
    bad = tmp_path / "bad.item"
    bad.write_text("#file onset offset #phone prev-phone next-phone speaker\nu 0.1 0.2 A L\n")
    with pytest.raises(ValueError, match="bad.item.*line 2"):
        abx.read_item_file(bad)
    good = tmp_path / "good.item"
    features, items = one_frame_set([("c", "s", "A", [1, 0]), ("c", "s", "B", [0, 1])])
    abx.write_item_file(good, items)
    assert abx.read_item_file(good) == items
    assert abx.abx_error(features, good).num_items == 2


# ---------------------------------------------------------------------------- optional oracle


def test_matches_reference_libriabx_on_random_features():
    python = abx.oracle_python()
    if python is None:
        pytest.skip(f"libriabx not importable; set ${abx.ORACLE_PYTHON_ENV} (docs/abx.md)")
    # no group above 10 tokens, at most 3 other speakers: the oracle's unseeded draws are moot
    features, items = abx.synthetic_abx_set(1, silence_fraction=0.3)
    ours = abx.abx_error(features, items)
    theirs = abx.oracle_abx_error(features, items, python=python)
    assert ours.within == pytest.approx(theirs["within"], abs=1e-6)
    assert ours.across == pytest.approx(theirs["across"], abs=1e-6)
