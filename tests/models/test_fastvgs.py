"""The assembled model and its objectives: shapes, masks, gradients, traces, sharding."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from fastvgs_jax.models import fastvgs, layers, sharding, speech, vgs
from fastvgs_jax.models.config import model_config
from fastvgs_jax.train import objectives


def _batch(config, lengths=(16000, 9000, 400, 0), seed=0):
    """Audio zero-padded after each length (0 = an all-padding row), masks, images, ids."""
    rng = np.random.default_rng(seed)
    samples = 16000
    geometry = speech.frame_geometry(config)
    frames = geometry.num_frames(samples)
    audio = rng.standard_normal((len(lengths), samples)).astype(np.float32)
    frame_mask = np.zeros((len(lengths), frames), bool)
    for i, n in enumerate(lengths):
        audio[i, n:] = 0
        frame_mask[i, : geometry.num_frames(n) if n else 0] = True
    return {
        "audio": jnp.asarray(audio),
        "frame_mask": jnp.asarray(frame_mask),
        "image": jnp.asarray(rng.standard_normal((len(lengths), 64, 64, 3)), jnp.float32),
        "image_id": jnp.arange(len(lengths)) // 2,
    }


def _loss_and_grad(config, alpha=0.5, ssl=True, vgs=True):
    """Fresh variables, a jitted value-and-grad of the joint loss, and its trace log."""
    model = fastvgs.FaSTVGSPlus(config)
    variables = fastvgs.init_variables(config, jax.random.key(0))
    traces = []

    def loss(params, batch_stats, batch, key, step):
        traces.append(1)
        return objectives.joint_loss(
            model, params, batch_stats, batch, key, step, alpha, ssl=ssl, vgs=vgs
        )

    return variables, jax.jit(jax.value_and_grad(loss, has_aux=True)), traces


@pytest.fixture(scope="module")
def tiny():
    config = model_config("tiny")
    return (config, *_loss_and_grad(config))


def test_joint_step_is_finite_with_all_padding_and_one_frame_rows(tiny):
    config, variables, step, _ = tiny
    # Rows: full, partial, one valid frame (400 samples), all padding.
    batch = _batch(config)
    assert batch["frame_mask"].sum(-1).tolist()[2:] == [1, 0]
    (loss, (metrics, _)), grads = step(
        variables["params"], variables["batch_stats"], batch, jax.random.key(1), 0
    )
    assert np.isfinite(float(loss))
    for name, value in metrics.items():
        assert np.all(np.isfinite(np.asarray(value))), name
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(np.asarray(g))), jax.tree_util.keystr(path)


def test_gradients_reach_the_quantizer_through_the_gumbel_path(tiny):
    config, variables, step, _ = tiny
    batch = _batch(config, lengths=(16000, 16000, 12000, 8000))
    _, grads = step(variables["params"], variables["batch_stats"], batch, jax.random.key(2), 0)
    for name in ("weight_proj",):
        g = grads["quantizer"][name]["kernel"]
        assert float(jnp.abs(g).max()) > 0, name
    assert float(jnp.abs(grads["quantizer"]["codebook"]).max()) > 0
    assert float(jnp.abs(grads["speech_encoder"]["frontend"]["conv_0"]["kernel"]).max()) > 0
    assert float(jnp.abs(grads["image_encoder"]["cls"]).max()) > 0


def test_train_step_traces_once_across_steps(tiny):
    config, variables, step, traces = tiny
    params, stats = variables["params"], variables["batch_stats"]
    for i in range(3):
        batch = _batch(config, lengths=(16000, 12000, 8000, 4000), seed=i)
        (_, (_, stats)), _ = step(params, stats, batch, jax.random.key(i), jnp.asarray(i))
    assert len(traces) == 1


def test_without_ssl_the_encoder_stops_at_the_vgs_layer(tiny):
    config, variables, _, _ = tiny
    model = fastvgs.FaSTVGSPlus(config)
    batch = _batch(config)
    out = jax.jit(lambda v, b: model.apply(v, b["audio"], b["frame_mask"], b["image"], ssl=False))(
        variables, batch
    )
    assert out.ssl is None
    assert len(out.encoder.hidden_states) == config.vgs_layer + 1
    frames = batch["frame_mask"].shape[1]
    assert out.encoder.hidden_states[-1].shape == (4, 1 + frames, config.hidden_dim)  # + CLS
    assert out.audio_embedding.shape == out.image_embedding.shape == (4, config.hidden_dim)


def test_audio_embedding_ignores_padding_content(tiny):
    config, variables, _, _ = tiny
    model = fastvgs.FaSTVGSPlus(config)
    batch = _batch(config, lengths=(16000, 8000, 8000, 8000))
    noisy = batch["audio"].at[1, 8000:].set(5.0)  # garbage where the mask says padding
    encode = jax.jit(lambda v, a, m: model.apply(v, a, m, method=model.encode_audio))
    clean = encode(variables, batch["audio"], batch["frame_mask"])
    dirty = encode(variables, noisy, batch["frame_mask"])
    # The CNN sees padded samples only through frames that straddle the boundary.
    np.testing.assert_allclose(np.asarray(clean[0]), np.asarray(dirty[0]), atol=1e-5)


def test_gradient_scale_into_the_frontend():
    def grad(scale):
        return jax.grad(lambda x: jnp.sum(layers.scale_gradient(x, scale) ** 2))(jnp.ones(3))

    np.testing.assert_allclose(grad(1.0), 2.0)
    np.testing.assert_allclose(grad(0.1), 0.2, rtol=1e-6)
    np.testing.assert_allclose(grad(0.0), 0.0)
    assert float(layers.scale_gradient(jnp.float32(3.0), 0.1)) == 3.0


def test_logmel_frontend_trains_ssl_and_matches_its_frame_geometry():
    config = model_config("tiny")
    config.frontend = "logmel"
    geometry = speech.frame_geometry(config)
    assert geometry.num_frames(16000) == ((16000 - 400) // 160 + 1 - 3) // 2 + 1
    variables, step, _ = _loss_and_grad(config, alpha=0.0, vgs=False)
    batch = _batch(config, lengths=(16000, 16000, 12000, 8000))
    (loss, (metrics, _)), grads = step(
        variables["params"], variables["batch_stats"], batch, jax.random.key(0), 0
    )
    assert np.isfinite(float(loss)) and float(metrics["masked_frames"]) > 0
    assert float(jnp.abs(grads["speech_encoder"]["frontend"]["conv_0"]["kernel"]).max()) > 0


def test_utterance_normalised_logmel_ignores_padding_gain_and_a_fixed_channel():
    frontend = speech.LogMelFrontend(8, num_mels=20, normalize="utterance")
    config = model_config("tiny")
    config.frontend = "logmel"
    geometry = speech.frame_geometry(config)
    rng = np.random.default_rng(0)
    voice = rng.standard_normal(8000).astype(np.float32)
    # A fixed channel (a short FIR filter) and a gain are per-bin offsets in log-mel: CMVN
    # removes them up to the spectral leakage of the filter, which is small.
    coloured = 3.0 * np.convolve(voice, [1.0, 0.6], mode="same").astype(np.float32)
    padded = np.zeros((2, 12000), np.float32)
    padded[0, :8000] = voice
    padded[1, :8000] = coloured
    real = geometry.num_frames(8000)
    mask = np.arange(geometry.num_frames(12000))[None, :] < np.array([[real], [real]])
    variables = frontend.init(jax.random.key(0), jnp.asarray(padded), jnp.asarray(mask))
    out = np.asarray(frontend.apply(variables, jnp.asarray(padded), jnp.asarray(mask)))
    alone = np.asarray(
        frontend.apply(variables, jnp.asarray(voice[None]), jnp.ones((1, real), bool))
    )
    np.testing.assert_allclose(out[0, :real], alone[0], atol=1e-4)  # padding is ignored
    assert np.abs(out[1, :real] - out[0, :real]).mean() < 0.1 * np.abs(out[0, :real]).mean()
    with pytest.raises(ValueError, match="needs the frame mask"):
        frontend.apply(variables, jnp.asarray(padded))


def test_bf16_compute_keeps_fp32_params_and_a_finite_loss():
    config = model_config("tiny")
    model = fastvgs.FaSTVGSPlus(config, dtype=jnp.bfloat16)
    variables = fastvgs.init_variables(config, jax.random.key(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables["params"]))
    batch = _batch(config, lengths=(16000, 16000, 12000, 8000))
    loss = jax.jit(
        lambda p, s, b: objectives.joint_loss(model, p, s, b, jax.random.key(0), 0, 0.5)[0]
    )(variables["params"], variables["batch_stats"], batch)
    assert np.isfinite(float(loss))


def test_wrong_frame_mask_length_is_a_clear_error(tiny):
    config, variables, _, _ = tiny
    model = fastvgs.FaSTVGSPlus(config)
    batch = _batch(config)
    with pytest.raises(ValueError, match="frame_geometry"):
        model.apply(
            variables, batch["audio"], batch["frame_mask"][:, :-1], method=model.encode_audio
        )


def test_inconsistent_config_names_the_field():
    config = model_config("tiny")
    config.vgs_layer = 7
    with pytest.raises(ValueError, match="vgs_layer"):
        fastvgs.check_model_config(config)


def test_parameters_shard_over_an_fsdp_mesh():
    config = model_config("tiny")
    model = fastvgs.FaSTVGSPlus(config)
    inputs = fastvgs.example_inputs(config)
    abstract = jax.eval_shape(model.init, {"params": jax.random.key(0)}, *inputs)
    specs = nn.get_partition_spec(abstract)
    layer = specs["params"]["speech_encoder"]["transformer"]["layer_0"]
    assert layer["mlp_in"]["kernel"] == PartitionSpec("embed", "mlp")
    mesh = sharding.make_mesh((1, 8, 1))
    shardings = sharding.logical_shardings(abstract, mesh)
    init = jax.jit(model.init, out_shardings=shardings)
    variables = init({"params": jax.random.key(0)}, *inputs)
    kernel = nn.meta.unbox(variables)["params"]["speech_encoder"]["transformer"]["layer_0"][
        "mlp_in"
    ]["kernel"]
    assert kernel.sharding.spec == PartitionSpec("fsdp", "model")  # model axis of size 1
    assert len(kernel.addressable_shards) == 8
    assert kernel.addressable_shards[0].data.shape == (config.hidden_dim // 8, config.mlp_dim)


def test_region_image_encoder_and_missing_input_errors():
    config = model_config("tiny")
    config.image.kind = "regions"
    encoder = vgs.ImageEncoder(config.image, config.hidden_dim)
    rng = np.random.default_rng(0)
    regions = jnp.asarray(rng.standard_normal((3, 4, config.image.region_dim)), jnp.float32)
    boxes = jnp.asarray(rng.uniform(size=(3, 4, 4)), jnp.float32)
    variables = encoder.init(jax.random.key(0), regions=regions, boxes=boxes)
    embedding = encoder.apply(variables, regions=regions, boxes=boxes)
    assert embedding.shape == (3, config.hidden_dim)
    # Region order does not matter to a transformer without positions.
    permuted = encoder.apply(variables, regions=regions[:, ::-1], boxes=boxes[:, ::-1])
    np.testing.assert_allclose(np.asarray(embedding), np.asarray(permuted), atol=1e-5)
    with pytest.raises(ValueError, match="regions"):
        encoder.apply(variables, image=jnp.zeros((3, 64, 64, 3)))


def test_remat_keeps_parameter_names_and_gradients():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 7, 8)), jnp.float32)
    grads = []
    for remat in (False, True):
        stack = layers.TransformerStack(2, 2, 16, dropout=0.0, attention_dropout=0.0, remat=remat)
        variables = stack.init(jax.random.key(0), x, None, True)
        loss = lambda v, s=stack: jnp.sum(s.apply(v, x, None, True)[-1] ** 2)  # noqa: E731
        grads.append(jax.jit(jax.grad(loss))(variables))
    assert jax.tree.structure(grads[0]) == jax.tree.structure(grads[1])
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_abstract_then_concrete_initialisation_of_a_new_config():
    config = model_config("tiny")
    config.num_layers = 1
    config.vgs_layer = 1
    shapes = fastvgs.abstract_variables(config)  # traces the cached initialiser first
    variables = fastvgs.init_variables(config, jax.random.key(0))
    assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(lambda v: v.shape, variables)


def test_cnn_image_tower_trains_through_the_clip_loss():
    config = model_config("tiny")
    config.image.kind = "cnn"
    config.image.cnn_widths = (8, 16)
    config.coarse.loss = "clip"
    variables, step, _ = _loss_and_grad(config, alpha=1.0, ssl=False)
    cnn = variables["params"]["image_encoder"]["cnn"]
    assert sorted(cnn) == ["conv_0", "conv_1", "norm_0", "norm_1", "projection"]
    assert cnn["projection"]["kernel"].shape == (16, config.hidden_dim)
    batch = _batch(config, lengths=(16000, 16000, 12000, 8000))
    (loss, _), grads = step(
        variables["params"], variables["batch_stats"], batch, jax.random.key(0), 0
    )
    assert np.isfinite(float(loss))
    g = grads["image_encoder"]["cnn"]["conv_0"]["kernel"]
    assert float(jnp.abs(g).max()) > 0
    model = fastvgs.FaSTVGSPlus(config)
    embedding = model.apply(variables, batch["image"], method=model.encode_image)
    assert embedding.shape == (4, config.hidden_dim)
    # Different pictures (every row is its own noise image), different embeddings.
    assert float(jnp.abs(embedding[0] - embedding[1]).max()) > 1e-3
    with pytest.raises(ValueError, match="cnn"):
        vgs.ImageEncoder(config.image, config.hidden_dim).init(jax.random.key(0))


def test_mean_audio_pooler_is_a_linear_of_the_masked_frame_mean():
    config = model_config("tiny")
    config.audio_pool.kind = "mean"
    config.image.kind = "cnn"
    config.image.cnn_widths = (8, 16)
    variables = fastvgs.init_variables(config, jax.random.key(0))
    assert "batch_stats" not in variables  # no BatchNorm left in the model
    assert sorted(variables["params"]["audio_pooler"]) == ["projection"]
    model = fastvgs.FaSTVGSPlus(config)
    batch = _batch(config, lengths=(16000, 8000, 8000, 8000))
    embedding = model.apply(variables, batch["audio"], batch["frame_mask"], method="encode_audio")
    hidden = model.apply(
        variables, batch["audio"], batch["frame_mask"], config.vgs_layer, method="hidden_states"
    ).hidden_states[config.vgs_layer][:, 1:]  # CLS removed
    mask = np.asarray(batch["frame_mask"])[..., None]
    mean = (np.asarray(hidden) * mask).sum(1) / mask.sum(1)
    projection = variables["params"]["audio_pooler"]["projection"]
    expected = mean @ np.asarray(projection["kernel"]) + np.asarray(projection["bias"])
    np.testing.assert_allclose(np.asarray(embedding), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("skip_masked", [True, False])
def test_skip_masked_pools_only_the_frames_the_span_mask_left(skip_masked):
    config = model_config("tiny")
    config.audio_pool.kind, config.audio_pool.skip_masked = "mean", skip_masked
    config.image.kind, config.image.cnn_widths = "cnn", (8, 16)
    variables = fastvgs.init_variables(config, jax.random.key(0))
    batch = _batch(config, lengths=(16000, 12000, 16000, 8000))
    frame_mask = np.asarray(batch["frame_mask"])
    masked = np.zeros_like(frame_mask)
    masked[:, 3:20] = True  # a span inside every row's real frames
    out = fastvgs.FaSTVGSPlus(config).apply(
        variables,
        batch["audio"],
        batch["frame_mask"],
        batch["image"],
        mask_positions=jnp.asarray(masked),
        ssl=False,
    )
    hidden = np.asarray(out.encoder.hidden_states[config.vgs_layer][:, 1:])  # CLS removed
    pooled = (frame_mask & ~masked if skip_masked else frame_mask)[..., None]
    mean = (hidden * pooled).sum(1) / pooled.sum(1)
    projection = variables["params"]["audio_pooler"]["projection"]
    expected = mean @ np.asarray(projection["kernel"]) + np.asarray(projection["bias"])
    np.testing.assert_allclose(np.asarray(out.audio_embedding), expected, rtol=1e-5, atol=1e-5)


def test_unknown_audio_pool_kind_names_the_choices():
    config = model_config("tiny")
    config.audio_pool.kind = "max"
    with pytest.raises(ValueError, match=r"audio_pool.kind='max'.*mean.*resdavenet"):
        fastvgs.init_variables(config, jax.random.key(0))


def test_gelu_through_erf_matches_the_erfc_form_and_keeps_the_dtype():
    x = jnp.linspace(-12.0, 12.0, 20_001)
    np.testing.assert_allclose(layers.gelu(x), jax.nn.gelu(x, approximate=False), atol=2e-6)
    gradient = jax.vmap(jax.grad(layers.gelu))(x)
    reference = jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x)
    np.testing.assert_allclose(gradient, reference, atol=2e-6)
    half = x.astype(jnp.bfloat16)
    assert layers.gelu(half).dtype == jnp.bfloat16
    # Computed in fp32 and rounded once: the bf16 result is the rounded fp32 one.
    np.testing.assert_array_equal(
        layers.gelu(half), layers.gelu(half.astype(jnp.float32)).astype(jnp.bfloat16)
    )
