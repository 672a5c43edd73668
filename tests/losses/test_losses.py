"""The coarse retrieval losses and the wav2vec 2.0 objective, against hand-computed numbers.

Expected values are worked out from explicit score matrices with ``math`` (no jnp
re-implementation of the losses).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastvgs_jax.losses import coarse
from fastvgs_jax.losses.wav2vec2 import codebook_perplexity, contrastive_loss, diversity_loss
from fastvgs_jax.models.masking import sample_negatives

# Jitted: one compilation per shape instead of one per primitive in eager mode.
coarse_margin_infonce = jax.jit(coarse.coarse_margin_infonce)
coarse_clip_loss = jax.jit(coarse.coarse_clip_loss)


def cross_entropy(scores: list[float], target: int) -> float:
    """−log softmax(scores)[target], from explicit numbers."""
    return -scores[target] + math.log(sum(math.exp(s) for s in scores))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


# --------------------------------------------------------------------------- coarse margin

# Images 0 and 1 are the same vector (1, 0); image 2 is (0, 1). Audio 2-d vectors.
IMAGE = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
AUDIO = [[2.0, 1.0], [0.5, -1.0], [1.0, 3.0]]
# S[i][j] = image_i · audio_j:
#   [[2.0,  0.5, 1.0],
#    [2.0,  0.5, 1.0],
#    [1.0, -1.0, 3.0]]
# minus margin 1 on the diagonal:
S_MARGIN = [
    [1.0, 0.5, 1.0],
    [2.0, -0.5, 1.0],
    [1.0, -1.0, 2.0],
]


def margin_loss_by_hand(scores: list[list[float]]) -> float:
    rows = [cross_entropy(scores[i], i) for i in range(3)]
    columns = [cross_entropy([scores[i][j] for i in range(3)], j) for j in range(3)]
    return mean(rows) + mean(columns)


def test_coarse_margin_loss_matches_hand_computed_3x3():
    # Three different images: no masking.
    rows = [
        -1.0 + math.log(math.exp(1.0) + math.exp(0.5) + math.exp(1.0)),
        0.5 + math.log(math.exp(2.0) + math.exp(-0.5) + math.exp(1.0)),
        -2.0 + math.log(math.exp(1.0) + math.exp(-1.0) + math.exp(2.0)),
    ]
    columns = [
        -1.0 + math.log(math.exp(1.0) + math.exp(2.0) + math.exp(1.0)),
        0.5 + math.log(math.exp(0.5) + math.exp(-0.5) + math.exp(-1.0)),
        -2.0 + math.log(math.exp(1.0) + math.exp(1.0) + math.exp(2.0)),
    ]
    expected = mean(rows) + mean(columns)
    assert expected == pytest.approx(margin_loss_by_hand(S_MARGIN))
    loss = coarse_margin_infonce(
        jnp.array(AUDIO), jnp.array(IMAGE), jnp.array([0, 1, 2]), margin=1.0
    )
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_coarse_margin_loss_masks_captions_of_the_same_image():
    # Captions 0 and 1 describe image 0: their off-diagonal pairs score −10000.
    masked = [
        [1.0, -10000.0, 1.0],
        [-10000.0, -0.5, 1.0],
        [1.0, -1.0, 2.0],
    ]
    rows = [
        -1.0 + math.log(math.exp(1.0) + math.exp(-10000.0) + math.exp(1.0)),  # log 2
        0.5 + math.log(math.exp(-10000.0) + math.exp(-0.5) + math.exp(1.0)),
        -2.0 + math.log(math.exp(1.0) + math.exp(-1.0) + math.exp(2.0)),
    ]
    columns = [
        -1.0 + math.log(math.exp(1.0) + math.exp(-10000.0) + math.exp(1.0)),  # log 2
        0.5 + math.log(math.exp(-10000.0) + math.exp(-0.5) + math.exp(-1.0)),
        -2.0 + math.log(math.exp(1.0) + math.exp(1.0) + math.exp(2.0)),
    ]
    expected = mean(rows) + mean(columns)
    assert expected == pytest.approx(margin_loss_by_hand(masked))
    assert rows[0] == pytest.approx(math.log(2.0))
    loss = coarse_margin_infonce(
        jnp.array(AUDIO), jnp.array(IMAGE), jnp.array([0, 0, 1]), margin=1.0
    )
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # Masking matters: the unmasked loss is different (and larger here).
    assert expected < margin_loss_by_hand(S_MARGIN) - 0.1


def test_coarse_margin_loss_margin_zero_is_plain_infonce():
    scores = [[2.0, 0.5, 1.0], [2.0, 0.5, 1.0], [1.0, -1.0, 3.0]]
    loss = coarse_margin_infonce(
        jnp.array(AUDIO), jnp.array(IMAGE), jnp.array([0, 1, 2]), margin=0.0
    )
    assert float(loss) == pytest.approx(margin_loss_by_hand(scores), rel=1e-5)


def test_coarse_margin_loss_example_mask_ignores_a_padding_row():
    # A fourth (padding) example with large scores everywhere must change nothing.
    audio = jnp.array([*AUDIO, [50.0, 50.0]])
    image = jnp.array([*IMAGE, [40.0, -30.0]])
    image_ids = jnp.array([0, 0, 1, 7])
    example_mask = jnp.array([True, True, True, False])
    padded = coarse_margin_infonce(audio, image, image_ids, 1.0, example_mask)
    reference = coarse_margin_infonce(jnp.array(AUDIO), jnp.array(IMAGE), jnp.array([0, 0, 1]), 1.0)
    assert float(padded) == pytest.approx(float(reference), rel=1e-5)
    # Without the mask the padding example dominates the loss.
    unmasked = coarse_margin_infonce(audio, image, image_ids, 1.0)
    assert float(unmasked) > float(reference) + 1.0
    # The padding example gets no gradient; the real ones do.
    grad_audio, grad_image = jax.jit(
        jax.grad(
            lambda a, i: coarse_margin_infonce(a, i, image_ids, 1.0, example_mask),
            argnums=(0, 1),
        )
    )(audio, image)
    np.testing.assert_array_equal(np.asarray(grad_audio[3]), 0.0)
    np.testing.assert_array_equal(np.asarray(grad_image[3]), 0.0)
    assert np.all(np.isfinite(np.asarray(grad_audio)))
    assert np.any(np.asarray(grad_audio[:3]) != 0.0)


# --------------------------------------------------------------------------- CLIP

# audio (3, 4) → (0.6, 0.8) and (0, 2) → (0, 1); image (1, 0) and (0, 5) → (0, 1).
CLIP_AUDIO = [[3.0, 4.0], [0.0, 2.0]]
CLIP_IMAGE = [[1.0, 0.0], [0.0, 5.0]]


def clip_by_hand(scale: float) -> float:
    # cosines: S[i][j] = image_i · audio_j = [[0.6, 0.0], [0.8, 1.0]]
    s = [[0.6 * scale, 0.0], [0.8 * scale, 1.0 * scale]]
    rows = [cross_entropy(s[0], 0), cross_entropy(s[1], 1)]
    columns = [cross_entropy([s[0][0], s[1][0]], 0), cross_entropy([s[0][1], s[1][1]], 1)]
    return (mean(rows) + mean(columns)) / 2


def test_coarse_clip_loss_matches_hand_computed_2x2():
    expected = (
        (math.log(1 + math.exp(-6.0)) + math.log(1 + math.exp(-2.0))) / 2
        + (math.log(1 + math.exp(2.0)) + math.log(1 + math.exp(-10.0))) / 2
    ) / 2
    assert expected == pytest.approx(clip_by_hand(10.0))
    loss = coarse_clip_loss(
        jnp.array(CLIP_AUDIO), jnp.array(CLIP_IMAGE), jnp.array([0, 1]), jnp.log(10.0)
    )
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_coarse_clip_loss_clips_the_scale_at_100():
    loss = coarse_clip_loss(
        jnp.array(CLIP_AUDIO), jnp.array(CLIP_IMAGE), jnp.array([0, 1]), jnp.log(1000.0)
    )
    assert float(loss) == pytest.approx(clip_by_hand(100.0), rel=1e-4, abs=1e-6)


def test_coarse_clip_loss_masks_captions_of_the_same_image():
    # Both captions describe one image: each row and column keeps only its positive.
    loss = coarse_clip_loss(
        jnp.array(CLIP_AUDIO), jnp.array(CLIP_IMAGE), jnp.array([3, 3]), jnp.log(10.0)
    )
    assert float(loss) == pytest.approx(0.0, abs=1e-6)


def test_coarse_clip_loss_gradient_finite_for_zero_padding_embedding():
    audio = jnp.array([*CLIP_AUDIO, [0.0, 0.0]])
    image = jnp.array([*CLIP_IMAGE, [0.0, 0.0]])
    example_mask = jnp.array([True, True, False])
    grads = jax.jit(
        jax.grad(
            lambda a, i: coarse.coarse_clip_loss(a, i, jnp.arange(3), jnp.log(10.0), example_mask),
            argnums=(0, 1),
        )
    )(audio, image)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))


# --------------------------------------------------------------------------- contrastive

TAU = 0.5
# Batch 1, 3 frames, dim 2. Context c0 = (1, 0), c1 = (0, 1), c2 ∝ (1, 1); targets
# t0 = (1, 0), t1 ∝ (0.6, 0.8), t2 ∝ (0, 1). Cosines cos(c_t, t_s):
#   c0: [1, 0.6, 0]   c1: [0, 0.8, 1]   c2: [1/√2, 1.4/√2, 1/√2]
CONTEXT = [[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]]
TARGETS = [[[1.0, 0.0], [3.0, 4.0], [0.0, 3.0]]]
CODES = [[[0, 1], [1, 2], [0, 1]]]  # frame 2 has the same codes as frame 0
MASKED = [[True, True, False]]
NEGATIVES = [[[1, 2, 1], [0, -1, 2], [0, 1, -1]]]


_contrastive = jax.jit(contrastive_loss)


def test_contrastive_loss_matches_hand_computed_tiny_case():
    out = _contrastive(
        jnp.array(CONTEXT),
        jnp.array(TARGETS),
        jnp.array(CODES),
        jnp.array(MASKED),
        jnp.array(NEGATIVES),
        TAU,
    )
    inf = math.inf
    r = 1 / math.sqrt(2)
    # Positive first, then the K = 3 negatives; same codes as the positive or -1 → −inf.
    expected_logits = [
        [1 / TAU, 0.6 / TAU, -inf, 0.6 / TAU],  # frame 0: negative 2 shares its codes
        [0.8 / TAU, 0.0 / TAU, -inf, 1.0 / TAU],  # frame 1: index -1
        [r / TAU, -inf, 1.4 * r / TAU, -inf],  # frame 2: negative 0 shares its codes; -1
    ]
    np.testing.assert_allclose(np.asarray(out.logits[0]), expected_logits, rtol=1e-5)
    # Loss: mean cross-entropy over the two masked frames only (frame 2 is excluded).
    nll0 = -2.0 + math.log(math.exp(2.0) + math.exp(1.2) + math.exp(1.2))
    nll1 = -1.6 + math.log(math.exp(1.6) + math.exp(0.0) + math.exp(2.0))
    assert nll0 == pytest.approx(math.log(1 + 2 * math.exp(-0.8)))
    assert float(out.loss) == pytest.approx((nll0 + nll1) / 2, rel=1e-5)
    # Frame 0's positive scores highest; frame 1's does not (its third negative wins).
    assert float(out.accuracy) == pytest.approx(0.5)
    assert float(out.num_masked) == 2.0


def test_contrastive_loss_temperature_scales_logits():
    args = [jnp.array(x) for x in (CONTEXT, TARGETS, CODES, MASKED, NEGATIVES)]
    a = _contrastive(*args, 0.1).logits
    b = _contrastive(*args, 1.0).logits
    finite = np.isfinite(np.asarray(b))
    np.testing.assert_allclose(np.asarray(a)[finite], 10 * np.asarray(b)[finite], rtol=1e-5)
    np.testing.assert_array_equal(np.isfinite(np.asarray(a)), finite)


_sample = jax.jit(sample_negatives, static_argnums=2)


def random_inputs(masked: np.ndarray, seed: int = 0, num_negatives: int = 4):
    """Nonzero random context/targets, distinct codes per frame, negatives as in training."""
    batch, frames = masked.shape
    rng = np.random.default_rng(seed)
    context = jnp.asarray(rng.normal(size=(batch, frames, 3)), jnp.float32)
    targets = jnp.asarray(rng.normal(size=(batch, frames, 3)), jnp.float32)
    codes = jnp.broadcast_to(jnp.arange(frames)[None, :, None], (batch, frames, 2))
    negatives = _sample(jax.random.key(seed), jnp.asarray(masked), num_negatives)
    return context, targets, codes, jnp.asarray(masked), negatives


@jax.jit
def loss_and_grads(context, targets, codes, masked, negatives):
    def loss(c, t):
        return contrastive_loss(c, t, codes, masked, negatives, 0.1).loss

    return jax.value_and_grad(loss, argnums=(0, 1))(context, targets)


def test_contrastive_loss_no_nan_with_single_masked_frame_and_padding_rows():
    masked = np.zeros((3, 5), bool)
    masked[0, 2] = True  # one masked frame: no valid negative; rows 1-2: nothing masked
    context, targets, codes, masked_j, negatives = random_inputs(masked)
    assert np.all(np.asarray(negatives) == -1)
    value, grads = loss_and_grads(context, targets, codes, masked_j, negatives)
    # Every negative scores −inf, so the positive has probability 1.
    assert float(value) == pytest.approx(0.0, abs=1e-6)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))


def test_contrastive_loss_no_nan_with_nothing_masked():
    masked = np.zeros((3, 5), bool)
    context, targets, codes, masked_j, negatives = random_inputs(masked)
    value, grads = loss_and_grads(context, targets, codes, masked_j, negatives)
    assert float(value) == 0.0
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
        np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_contrastive_loss_mixed_rows_average_over_masked_frames():
    masked = np.zeros((3, 5), bool)
    masked[0, [0, 2, 3]] = True
    masked[1, [4]] = True  # contributes a zero loss, but counts as a masked frame
    context, targets, codes, masked_j, negatives = random_inputs(masked, seed=1)
    value, grads = loss_and_grads(context, targets, codes, masked_j, negatives)
    logits = np.asarray(_contrastive(context, targets, codes, masked_j, negatives, 0.1).logits)
    nll = [cross_entropy([x for x in logits[0, t] if np.isfinite(x)], 0) for t in (0, 2, 3)]
    assert float(value) == pytest.approx(sum(nll) / 4, rel=1e-5)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    # Unmasked frames' context gets no gradient.
    np.testing.assert_array_equal(np.asarray(grads[0])[~masked], 0.0)


def test_contrastive_loss_gradient_finite_for_zero_padding_vectors():
    # Padding frames whose context is exactly zero (e.g. zeroed outputs) are not masked;
    # the forward is finite but the backward of the norm at 0 is 0·∞ = NaN.
    masked = np.zeros((3, 5), bool)
    masked[0, [0, 1]] = True
    context, targets, codes, masked_j, negatives = random_inputs(masked)
    context = context.at[0, 3].set(0.0)
    value, grads = loss_and_grads(context, targets, codes, masked_j, negatives)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(grads[0])))


# --------------------------------------------------------------------------- perplexity

G, V = 2, 4


def test_perplexity_uniform_usage_is_groups_times_entries():
    probs = jnp.full((2, 3, G, V), 1.0 / V)
    masked = jnp.ones((2, 3), bool)
    assert float(codebook_perplexity(probs, masked)) == pytest.approx(G * V, rel=1e-5)
    assert float(diversity_loss(probs, masked)) == pytest.approx(0.0, abs=1e-5)


def test_perplexity_uniform_usage_from_one_hot_frames():
    # Four frames, each one-hot on a different entry: the average use is uniform.
    probs = np.zeros((1, 4, G, V))
    for t in range(4):
        probs[0, t, 0, t] = 1.0
        probs[0, t, 1, 3 - t] = 1.0
    masked = jnp.ones((1, 4), bool)
    assert float(codebook_perplexity(jnp.asarray(probs), masked)) == pytest.approx(8.0, rel=1e-5)


def test_perplexity_collapsed_usage_is_groups():
    probs = np.zeros((2, 3, G, V))
    probs[..., 0, 1] = 1.0
    probs[..., 1, 3] = 1.0
    masked = jnp.ones((2, 3), bool)
    # exp(−1·log(1 + 1e-7)) per group: G up to the epsilon.
    assert float(codebook_perplexity(jnp.asarray(probs), masked)) == pytest.approx(G, rel=1e-5)
    assert float(diversity_loss(jnp.asarray(probs), masked)) == pytest.approx(
        (G * V - G) / (G * V), rel=1e-5
    )


def test_perplexity_averages_over_masked_frames_only():
    # Masked frames use entry 0 (group 0) / entry 2 (group 1) and entry 1 / entry 2: group 0
    # averages to [0.5, 0.5, 0, 0] (perplexity 2), group 1 collapses (perplexity 1).
    # Unmasked frames use other entries and must not count.
    probs = np.zeros((1, 4, G, V))
    probs[0, 0, 0, 0] = probs[0, 0, 1, 2] = 1.0
    probs[0, 1, 0, 1] = probs[0, 1, 1, 2] = 1.0
    probs[0, 2, 0, 3] = probs[0, 2, 1, 0] = 1.0
    probs[0, 3, 0, 2] = probs[0, 3, 1, 1] = 1.0
    masked = jnp.array([[True, True, False, False]])
    expected = math.exp(math.log(2.0)) + 1.0
    assert float(codebook_perplexity(jnp.asarray(probs), masked)) == pytest.approx(
        expected, rel=1e-5
    )
    assert float(diversity_loss(jnp.asarray(probs), masked)) == pytest.approx(
        (8 - expected) / 8, rel=1e-5
    )
    # All four frames would give group 0 uniform use (4) and group 1 [1/4, 1/4, 1/2, 0].
    entropy_1 = -(0.25 * math.log(0.25) + 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    everything = float(codebook_perplexity(jnp.asarray(probs), jnp.ones((1, 4), bool)))
    assert everything == pytest.approx(4.0 + math.exp(entropy_1), rel=1e-5)
