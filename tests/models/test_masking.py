"""Span masking, negative sampling and the Gumbel quantizer of the wav2vec 2.0 objective.

Masking statistics are compared with a small independent numpy simulation of the rule the
docstring describes; the quantizer is checked against numpy on its own parameters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from fastvgs_jax.models.masking import mask_spans, max_spans, sample_negatives
from fastvgs_jax.models.quantizer import GumbelQuantizer, gumbel_temperature

PROB, SPAN, MIN_SPANS = 0.65, 10, 2


def prefix_mask(lengths: list[int], frames: int) -> jax.Array:
    """[batch, frames] bool, True on the first ``lengths[b]`` frames of row b."""
    return jnp.arange(frames)[None, :] < jnp.asarray(lengths)[:, None]


def simulate_equalised_counts(
    lengths: list[int], draws: int, prob: float, span: int, min_spans: int, seed: int = 0
) -> np.ndarray:
    """Independent numpy version of the documented rule: the masked count every row gets.

    Per row: count = max(min_spans, floor(prob·L/span + u)) starts (at most the number of
    allowed starts), uniformly without replacement from [0, L − span]; masked = union of the
    spans (clipped to the row). Then every non-empty row keeps the smallest row's count.
    """
    rng = np.random.default_rng(seed)
    out = np.empty(draws)
    for d in range(draws):
        sizes = []
        for length in lengths:
            if length == 0:
                continue
            num_starts = max(length - span, 0) + 1
            count = max(min_spans, math.floor(prob * length / span + rng.random()))
            count = min(count, num_starts)
            starts = rng.choice(num_starts, size=count, replace=False)
            covered = np.zeros(length, bool)
            for s in starts:
                covered[s : s + span] = True
            sizes.append(covered.sum())
        out[d] = min(sizes)
    return out


# --------------------------------------------------------------------------- mask_spans

# Batches of 4 utterances (lengths in frames, padded to 400), masked together under one jit.
CASES = {
    "long": [400, 0, 0, 0],  # 26 spans of 10 over 400 frames; padding rows beside it
    "mixed": [200, 130, 64, 0],
    "short_rows": [50, 33, 20, 0],
    "one_real_row": [0, 40, 0, 0],
    "all_padding": [0, 0, 0, 0],
    "shorter_than_span": [6, 0, 0, 0],
}
NUM_KEYS = 400
FRAMES = 400


@jax.jit
def _masks_for_cases(keys: jax.Array, frame_masks: jax.Array) -> jax.Array:
    """mask_spans for every batch of ``frame_masks`` and every key: [cases, keys, 4, frames]."""

    def one_batch(frame_mask):
        return jax.vmap(lambda k: mask_spans(k, frame_mask, PROB, SPAN, MIN_SPANS))(keys)

    return jax.vmap(one_batch)(frame_masks)


@pytest.fixture(scope="module")
def case_masks() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Case name -> (frame_mask [4, frames], masks [keys, 4, frames]), computed once."""
    frame_masks = jnp.stack([prefix_mask(lengths, FRAMES) for lengths in CASES.values()])
    masks = _masks_for_cases(jax.random.split(jax.random.key(0), NUM_KEYS), frame_masks)
    masks, frame_masks = np.asarray(masks), np.asarray(frame_masks)
    assert masks.dtype == bool and masks.shape == (len(CASES), NUM_KEYS, 4, FRAMES)
    return {name: (frame_masks[i], masks[i]) for i, name in enumerate(CASES)}


def test_max_spans_static_bound():
    assert max_spans(400, 0.65, 10, 2) == 27  # floor(26 + 1)
    assert max_spans(10, 0.65, 10, 2) == 2  # floor(1.65) = 1 < min_spans
    assert max_spans(0, 0.65, 10, 3) == 3
    assert max_spans(100, 0.5, 5, 2) == 11


@pytest.mark.parametrize("case", list(CASES))
def test_mask_spans_never_masks_padding(case_masks, case):
    frame_mask, masks = case_masks[case]
    assert not np.any(masks & ~frame_mask[None])


@pytest.mark.parametrize("case", ["long", "mixed", "short_rows", "one_real_row"])
def test_mask_spans_every_row_with_frames_masks_the_same_number(case_masks, case):
    frame_mask, masks = case_masks[case]
    counts = masks.sum(-1)  # [keys, 4]
    real = frame_mask.any(-1)
    first_real = int(np.argmax(real))
    assert np.all(counts[:, real] == counts[:, first_real : first_real + 1])
    # All-padding rows mask nothing ...
    assert np.all(counts[:, ~real] == 0)
    # ... and do not force the others to 0: at least min_spans distinct starts fit in every
    # row here, so at least span + 1 frames are masked.
    assert counts[:, first_real].min() >= SPAN + 1
    # The draw depends on the key.
    assert len(np.unique(counts[:, first_real])) > 1


def test_mask_spans_short_rows_bounds(case_masks):
    _, masks = case_masks["short_rows"]
    counts = masks.sum(-1)[:, 0]
    # The shortest row (20 frames) bounds the common count; no row exceeds its drawn spans.
    assert counts.max() <= 20
    assert counts.max() <= max_spans(20, PROB, SPAN, MIN_SPANS) * SPAN


def test_mask_spans_all_padding_batch_masks_nothing(case_masks):
    _, masks = case_masks["all_padding"]
    assert not np.any(masks)


def test_mask_spans_utterance_shorter_than_a_span_is_fully_masked(case_masks):
    # One allowed start (0); its span is clipped to the 6 real frames.
    frame_mask, masks = case_masks["shorter_than_span"]
    np.testing.assert_array_equal(masks, np.broadcast_to(frame_mask, masks.shape))


def test_mask_spans_fraction_long_utterance_matches_simulation(case_masks):
    # L = 400, p = 0.65, span = 10: 26 overlapping spans cover ~49% of the frames.
    _, masks = case_masks["long"]
    fraction = masks[:, 0].sum(-1) / 400.0
    simulated = simulate_equalised_counts([400], 3000, PROB, SPAN, MIN_SPANS) / 400.0
    assert 0.4 <= fraction.mean() <= 0.6
    assert 0.4 <= simulated.mean() <= 0.6
    # The standard error of the 400-key mean is ~0.0013; allow 0.01.
    assert abs(fraction.mean() - simulated.mean()) < 0.01
    assert abs(fraction.std() - simulated.std()) < 0.01


def test_mask_spans_equalised_count_matches_simulation_for_mixed_lengths(case_masks):
    _, masks = case_masks["mixed"]
    counts = masks[:, 0].sum(-1).astype(float)
    simulated = simulate_equalised_counts(CASES["mixed"], 3000, PROB, SPAN, MIN_SPANS, seed=1)
    # The shortest row dominates the minimum (~0.45·64 frames, sd ~3.5); ~5 standard errors.
    assert abs(counts.mean() - simulated.mean()) < 1.0
    assert abs(counts.std() - simulated.std()) < 1.0


# --------------------------------------------------------------------------- sample_negatives

DRAWS = 4000


@pytest.fixture(scope="module")
def negatives_setup() -> tuple[np.ndarray, np.ndarray]:
    """Rows with 5, 2, 1 and 0 masked frames among 10 frames, and DRAWS negatives per frame."""
    masked = np.zeros((4, 10), bool)
    masked[0, [0, 2, 3, 7, 9]] = True
    masked[1, [4, 5]] = True
    masked[2, [6]] = True
    sample = jax.jit(sample_negatives, static_argnums=2)
    negatives = np.asarray(sample(jax.random.key(11), jnp.asarray(masked), DRAWS))
    assert negatives.shape == (4, 10, DRAWS) and negatives.dtype == np.int32
    return masked, negatives


def test_sample_negatives_are_other_masked_frames_of_the_same_row(negatives_setup):
    masked, negatives = negatives_setup
    for b in (0, 1):
        # Every frame's distractors are masked frames of row b ...
        assert np.all(masked[b][negatives[b]])
        # ... and a masked frame never draws itself.
        for t in np.flatnonzero(masked[b]):
            assert not np.any(negatives[b, t] == t)


def test_sample_negatives_rows_with_fewer_than_two_masked_frames_get_minus_one(
    negatives_setup,
):
    _, negatives = negatives_setup
    assert np.all(negatives[2:] == -1)


def test_sample_negatives_with_two_masked_frames_pick_the_other_one(negatives_setup):
    _, negatives = negatives_setup
    assert np.all(negatives[1, 4] == 5)
    assert np.all(negatives[1, 5] == 4)


def test_sample_negatives_roughly_uniform_over_other_masked_frames(negatives_setup):
    masked, negatives = negatives_setup
    frames_of_row = np.flatnonzero(masked[0])
    for t in frames_of_row:
        others = [s for s in frames_of_row if s != t]
        shares = np.array([(negatives[0, t] == s).mean() for s in others])
        # Each of the 4 others with probability 1/4 (standard error ~0.007).
        np.testing.assert_allclose(shares, 0.25, atol=0.03)
        assert shares.sum() == pytest.approx(1.0)


# --------------------------------------------------------------------------- quantizer


def test_gumbel_temperature_schedule():
    assert float(gumbel_temperature(0, 2.0, 0.5, 0.999995)) == pytest.approx(2.0)
    # float32 arithmetic: decay^1e5 carries ~7e-4 relative error against float64.
    assert float(gumbel_temperature(100_000, 2.0, 0.5, 0.999995)) == pytest.approx(
        2.0 * 0.999995**100_000, rel=1e-5
    )
    assert float(gumbel_temperature(1_000_000, 2.0, 0.5, 0.999995)) == pytest.approx(0.5)
    for step in (0, 1_000, 100_000, 10_000_000):
        assert float(gumbel_temperature(step, 2.0, 0.5, 1.0)) == pytest.approx(2.0)
    # A traced step (inside the jitted train step) works too.
    traced = jax.jit(lambda s: gumbel_temperature(s, 2.0, 0.5, 0.999995))(jnp.int32(100_000))
    assert float(traced) == pytest.approx(2.0 * 0.999995**100_000, rel=1e-5)


GROUPS, ENTRIES, CODE_DIM, CHANNELS = 2, 4, 4, 5


@pytest.fixture(scope="module")
def quantizer_setup():
    """The module, unboxed params with logits large enough to compete with the noise, inputs."""
    module = GumbelQuantizer(groups=GROUPS, entries=ENTRIES, codevector_dim=CODE_DIM)
    # numpy draws: eager jax.random calls each cost a compilation.
    rng = np.random.default_rng(0)
    features = jnp.asarray(rng.normal(size=(2, 3, CHANNELS)), jnp.float32)
    init = jax.jit(lambda key, f: module.init(key, f, 1.0, True))
    params = meta.unbox(init(jax.random.key(1), features))["params"]
    params = {
        "codebook": params["codebook"],
        "weight_proj": {
            "kernel": jnp.asarray(rng.normal(size=params["weight_proj"]["kernel"].shape), "f4"),
            "bias": jnp.asarray(rng.normal(size=params["weight_proj"]["bias"].shape), "f4"),
        },
    }
    noise = jnp.asarray(rng.gumbel(size=(2, 3, GROUPS, ENTRIES)), jnp.float32)
    return module, params, features, noise


def numpy_logits(params, features) -> np.ndarray:
    kernel = np.asarray(params["weight_proj"]["kernel"], np.float64)
    bias = np.asarray(params["weight_proj"]["bias"], np.float64)
    logits = np.asarray(features, np.float64) @ kernel + bias
    return logits.reshape(*features.shape[:2], GROUPS, ENTRIES)


def numpy_quantize(codes: np.ndarray, codebook) -> np.ndarray:
    """one_hot(codes) @ codebook per group, concatenated: [batch, frames, codevector_dim]."""
    codebook = np.asarray(codebook, np.float64)
    one_hot = np.eye(ENTRIES)[codes]  # [b, t, g, v]
    return np.einsum("btgv,gvd->btgd", one_hot, codebook).reshape(*codes.shape[:2], CODE_DIM)


def test_quantizer_params_and_shapes(quantizer_setup):
    module, params, features, _ = quantizer_setup
    assert params["codebook"].shape == (GROUPS, ENTRIES, CODE_DIM // GROUPS)
    assert params["weight_proj"]["kernel"].shape == (CHANNELS, GROUPS * ENTRIES)
    out = module.apply({"params": params}, features, 1.0, True)
    assert out.quantized.shape == (2, 3, CODE_DIM)
    assert out.codes.shape == (2, 3, GROUPS) and out.codes.dtype == jnp.int32
    assert out.soft_probs.shape == (2, 3, GROUPS, ENTRIES)


def test_quantizer_training_uses_hard_gumbel_argmax(quantizer_setup):
    module, params, features, noise = quantizer_setup
    out = module.apply({"params": params}, features, 0.7, False, gumbel_noise=noise)
    logits = numpy_logits(params, features)
    codes = np.argmax(logits + np.asarray(noise), axis=-1)
    # The noise matters here: at least one frame's choice differs from the noiseless argmax.
    assert np.any(codes != np.argmax(logits, axis=-1))
    np.testing.assert_array_equal(np.asarray(out.codes), codes)
    np.testing.assert_allclose(
        np.asarray(out.quantized), numpy_quantize(codes, params["codebook"]), atol=1e-6
    )
    soft = np.exp(logits - logits.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(out.soft_probs), soft, rtol=1e-5, atol=1e-6)


def test_quantizer_deterministic_mode_is_argmax_of_logits(quantizer_setup):
    module, params, features, noise = quantizer_setup
    out = module.apply({"params": params}, features, 0.7, True, gumbel_noise=noise)
    codes = np.argmax(numpy_logits(params, features), axis=-1)
    np.testing.assert_array_equal(np.asarray(out.codes), codes)
    np.testing.assert_allclose(
        np.asarray(out.quantized), numpy_quantize(codes, params["codebook"]), atol=1e-6
    )


def test_quantizer_training_draws_noise_from_the_gumbel_stream(quantizer_setup):
    module, params, features, _ = quantizer_setup

    @jax.jit
    def sample_codes(key):
        rngs = {"gumbel": key}
        return module.apply({"params": params}, features, 1.0, False, rngs=rngs).codes

    def codes(seed):
        return np.asarray(sample_codes(jax.random.key(seed)))

    np.testing.assert_array_equal(codes(0), codes(0))
    assert any(not np.array_equal(codes(0), codes(s)) for s in range(1, 6))


def test_quantizer_straight_through_gradients(quantizer_setup):
    module, params, features, noise = quantizer_setup
    temperature = 0.7
    readout = jnp.asarray(np.random.default_rng(3).normal(size=(2, 3, CODE_DIM)), jnp.float32)

    def objective(p, f):
        out = module.apply({"params": p}, f, temperature, False, gumbel_noise=noise)
        return jnp.sum(out.quantized * readout)

    grad_params, grad_features = jax.jit(jax.grad(objective, argnums=(0, 1)))(params, features)
    for g in (*jax.tree_util.tree_leaves(grad_params), grad_features):
        g = np.asarray(g)
        assert np.all(np.isfinite(g))
        assert np.any(np.abs(g) > 1e-6)

    # Exact values. Forward is the hard one-hot, so the codebook gradient is the readout
    # summed over the frames that chose each entry.
    logits = numpy_logits(params, features)
    noisy = (logits + np.asarray(noise)) / temperature
    codes = np.argmax(noisy, axis=-1)
    one_hot = np.eye(ENTRIES)[codes]  # [b, t, g, v]
    r = np.asarray(readout, np.float64).reshape(2, 3, GROUPS, CODE_DIM // GROUPS)
    np.testing.assert_allclose(
        np.asarray(grad_params["codebook"]), np.einsum("btgv,btgd->gvd", one_hot, r), atol=1e-5
    )
    # Backward goes through softmax(noisy): d/dlogits = s ⊙ (a − s·a) / τ, with a[v] the
    # readout's dot product with codebook entry v; the bias gradient sums it over frames.
    codebook = np.asarray(params["codebook"], np.float64)
    a = np.einsum("btgd,gvd->btgv", r, codebook)
    s = np.exp(noisy - noisy.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    d_logits = s * (a - (s * a).sum(-1, keepdims=True)) / temperature
    np.testing.assert_allclose(
        np.asarray(grad_params["weight_proj"]["bias"]),
        d_logits.sum((0, 1)).reshape(-1),
        rtol=1e-4,
        atol=1e-6,
    )
    kernel = np.asarray(params["weight_proj"]["kernel"], np.float64)
    np.testing.assert_allclose(
        np.asarray(grad_features),
        d_logits.reshape(2, 3, -1) @ kernel.T,
        rtol=1e-4,
        atol=1e-6,
    )


def test_quantizer_rejects_codevector_dim_not_divisible_by_groups():
    module = GumbelQuantizer(groups=3, entries=4, codevector_dim=4)
    with pytest.raises(ValueError, match="codevector_dim"):
        module.init(jax.random.key(0), jnp.ones((1, 2, 5)), 1.0, True)


@pytest.mark.parametrize("std", [0.02, 1.0])
def test_quantizer_projection_init_std_sets_the_code_logit_scale(std):
    """0.02 (reference) leaves the code logits far below the Gumbel noise (std ≈ 1.28), so
    early codes are noise; 1.0 (fairseq, HF) makes them follow the features from step 0."""
    module = GumbelQuantizer(groups=2, entries=64, codevector_dim=8, projection_init_std=std)
    features = jnp.asarray(np.random.default_rng(0).normal(size=(4, 50, 128)), jnp.float32)
    variables = jax.jit(lambda key, f: module.init(key, f, 1.0, True))(jax.random.key(0), features)
    kernel = np.asarray(meta.unbox(variables)["params"]["weight_proj"]["kernel"])
    assert np.std(kernel) == pytest.approx(std, rel=0.05)

    def agreement(key):
        out = module.apply(variables, features, 2.0, False, rngs={"gumbel": key})
        clean = module.apply(variables, features, 2.0, True)
        return jnp.mean(out.codes == clean.codes)

    share = float(jax.jit(agreement)(jax.random.key(1)))
    if std == 1.0:
        assert share > 0.8  # logits std ≈ 11 ≫ noise: the noisy code is the clean one
    else:
        assert share < 0.2  # logits std ≈ 0.23: the noisy code is close to a uniform draw
