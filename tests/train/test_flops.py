"""The analytic step FLOPs against XLA's count of the real step, the peak table, MFU, and
parameter counts."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastvgs_jax.models import config as model_configs
from fastvgs_jax.models import fastvgs, layers, masking, speech
from fastvgs_jax.train import config as run_config
from fastvgs_jax.train import flops, mfu, parameters


# SSL + VGS runs every part; VGS alone stops the encoder at vgs_layer. (SSL alone, and the
# tiny and base presets: benchmarks/flops_check.py.)
@pytest.mark.parametrize("ssl,vgs", [(True, True), (False, True)], ids=["ssl_vgs", "vgs"])
def test_analytic_flops_match_xla_for_the_small_preset_step(ssl, vgs):
    config = run_config.base_config("small", "tiny")
    batch, samples = 8, 16_000
    analytic = flops.step_flops(config.model, batch, samples, ssl=ssl, vgs=vgs)
    lowered = flops.lower_train_step(config, batch, samples, ssl=ssl, vgs=vgs)
    check = flops.check_against_xla(analytic["total"], flops.xla_step_flops(lowered))
    assert check["within_tolerance"], check
    # Matmuls dominate: the count and XLA's differ by the elementwise work the count leaves out
    # (softmax, norms, GELU), a few percent either way (measured 0.98-1.004).
    assert 0.95 < check["ratio"] < 1.01, check
    assert analytic["frames"] == speech.frame_geometry(config.model).num_frames(samples)
    assert analytic["encoder_layers"] == (6 if ssl else 4)
    assert analytic["per_audio_second"] == pytest.approx(analytic["total"] / (batch * 1.0))


def test_analytic_flops_match_xla_at_base_width():
    config = run_config.base_config("base", "tiny")  # the CNN frontend and a ViT image side
    config.model.num_layers = config.model.vgs_layer = 2
    batch, samples = 2, 16_000
    analytic = flops.step_flops(config.model, batch, samples, ssl=True, vgs=True)
    lowered = flops.lower_train_step(config, batch, samples, ssl=True, vgs=True)
    check = flops.check_against_xla(analytic["total"], flops.xla_step_flops(lowered))
    assert check["within_tolerance"] and check["ratio"] > 0.95, check


def test_one_transformer_layer_costs_the_hand_count():
    # Layer 3 of the tiny encoder on B=8 utterances of 1 s: 49 frames + CLS = 50 tokens.
    config = model_configs.model_config("tiny")
    b, n, d, m = 8, 50, config.hidden_dim, config.mlp_dim
    deep = flops.step_flops(config, b, 16_000, ssl=True, vgs=False)
    config.num_layers = 2
    shallow = flops.step_flops(config, b, 16_000, ssl=True, vgs=False)
    assert deep["tokens"] == n
    projections = 4 * 2 * b * n * d * d  # q, k, v, out
    attention = 2 * 2 * b * n * n * d  # scores and weighted sum
    mlp = 2 * 2 * b * n * d * m
    for part, forward in [
        ("encoder_attention_projections", projections),
        ("encoder_attention", attention),
        ("encoder_mlp", mlp),
    ]:
        extra = {k: deep["parts"][part][k] - shallow["parts"][part][k] for k in deep["parts"][part]}
        assert extra == {"forward": forward, "backward": 2 * forward, "total": 3 * forward}
    assert deep["total"] - shallow["total"] == 3 * (projections + attention + mlp)


def test_a_transformer_layer_forward_and_backward_as_xla_counts_it():
    b, n, d, m = 4, 64, 256, 1024
    layer = layers.TransformerLayer(num_heads=4, mlp_dim=m, dropout=0.0, attention_dropout=0.0)
    x = jnp.ones((b, n, d))
    params = nn.meta.unbox(layer.init(jax.random.key(0), x, None, True))

    def loss(params, x):
        return jnp.sum(layer.apply(params, x, None, True))

    lowered = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x)
    hand = 3 * (4 * 2 * b * n * d * d + 2 * 2 * b * n * n * d + 2 * 2 * b * n * d * m)
    ratio = hand / flops.xla_step_flops(lowered)
    assert 0.95 < ratio <= 1.0, ratio  # XLA adds the softmax, norms and GELU


def test_frozen_parts_cost_their_forward_only():
    config = model_configs.model_config("small")
    config.image.kind = "cnn"
    trained = flops.step_flops(config, 4, 16_000, ssl=True, vgs=True)
    config.frontend_grad_scale = 0.0
    config.image.cnn_frozen = True
    frozen = flops.step_flops(config, 4, 16_000, ssl=True, vgs=True)
    # The frontend: the FFT and filterbank never get a gradient; its conv no longer does.
    assert frozen["parts"]["frontend"]["backward"] == 0
    assert trained["parts"]["frontend"]["backward"] > 0
    # The frozen tower's projection still trains (dW, no dx): backward = its forward.
    projection = 2 * 4 * config.image.cnn_widths[-1] * config.hidden_dim
    assert frozen["parts"]["image_encoder"]["backward"] == projection
    assert frozen["parts"]["feature_projection"] == trained["parts"]["feature_projection"]


def test_remat_recomputation_is_reported_apart():
    config = model_configs.model_config("tiny")
    plain = flops.step_flops(config, 2, 16_000, ssl=True, vgs=False)
    config.remat = True
    remat = flops.step_flops(config, 2, 16_000, ssl=True, vgs=False)
    assert plain["recompute"] == 0 and remat["total"] == plain["total"]
    encoder = [p for p in plain["parts"] if p.startswith("encoder_")]
    assert remat["recompute"] == sum(plain["parts"][p]["forward"] for p in encoder)


def test_expected_masked_share_matches_the_span_masks():
    frames, m = 49, model_configs.model_config("tiny").masking
    frame_mask = jnp.ones((1, frames), bool)
    keys = jax.random.split(jax.random.key(0), 2000)
    masks = jax.jit(
        jax.vmap(lambda k: masking.mask_spans(k, frame_mask, m.prob, m.span, m.min_spans))
    )(keys)
    expected = flops.expected_masked_share(frames, m.prob, m.span, m.min_spans)
    assert float(jnp.mean(masks)) == pytest.approx(expected, abs=0.01)


class _Executable:
    def __init__(self, cost):
        self.cost = cost

    def cost_analysis(self):
        if isinstance(self.cost, Exception):
            raise self.cost
        return self.cost


@pytest.mark.parametrize(
    "cost,expected",
    [
        ({"flops": 12.0, "bytes accessed": 3.0}, 12.0),
        ([{"flops": 12.0}], 12.0),  # older jax: one dict per program
        ([{"flops": 2.0}, {"flops": 3.0}], 5.0),
        (None, None),
        ([], None),
        ({"bytes accessed": 3.0}, None),
        ({"flops": float("nan")}, None),
        (NotImplementedError("no cost analysis"), None),
    ],
)
def test_xla_step_flops_reads_every_cost_analysis_form(cost, expected):
    assert flops.xla_step_flops(_Executable(cost)) == expected


def test_check_against_xla():
    assert flops.check_against_xla(95.0, 100.0)["within_tolerance"]
    assert not flops.check_against_xla(85.0, 100.0)["within_tolerance"]
    assert flops.check_against_xla(85.0, None) == {
        "analytic": 85.0,
        "xla": None,
        "ratio": None,
        "within_tolerance": None,
    }


def test_parameter_counts_split_the_total():
    config = model_configs.model_config("tiny")
    variables = fastvgs.abstract_variables(config)
    counts = parameters.parameter_counts(variables, config)
    everything = sum(math.prod(x.shape) for x in jax.tree.leaves(variables["params"]))
    assert counts["encoder"] + counts["vgs_branch"] + counts["image"] == counts["total"]
    assert counts["total"] == everything
    assert 0 < counts["speech_encoder"] < counts["encoder"]  # + quantizer and projections
    assert counts["frozen"] == 0
    config.frontend_grad_scale = 0.0
    frontend = variables["params"]["speech_encoder"]["frontend"]
    expected = sum(math.prod(x.shape) for x in jax.tree.leaves(frontend))
    assert parameters.parameter_counts(variables, config)["frozen"] == expected
    concrete = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), variables["params"])
    assert parameters.parameter_counts(concrete)["total"] == everything  # a bare params tree


@pytest.mark.parametrize(
    "kind,entry",
    [
        ("TPU v4", "TPU v4"),
        ("TPU v4 lite", None),  # v4i: an inference chip, not in the table
        ("TPU v5 lite", "TPU v5e"),
        ("TPU v5e", "TPU v5e"),
        ("TPU v5", "TPU v5p"),
        ("TPU v5p", "TPU v5p"),
        ("TPU v6 lite", "TPU v6e"),
        ("TPU7x", None),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100-PCIE-40GB", "A100"),
        ("NVIDIA A10", None),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", None),
        ("NVIDIA H200", "H200"),
        ("NVIDIA GH200 480GB", None),
        ("cpu", None),
    ],
)
def test_peak_table_matches_device_kinds(kind, entry):
    assert mfu.table_entry(kind) == entry


def test_table_peaks_by_precision():
    assert mfu.table_peak("H100 SXM", "bf16") == (989.4e12, "bf16")
    assert mfu.table_peak("TPU v5e", "bf16")[0] == 197e12
    # fp32 matmuls at jax's default precision: TF32 on GPUs, one bf16 pass on TPUs.
    assert mfu.table_peak("A100", "fp32")[0] == 156e12
    assert mfu.table_peak("TPU v4", "fp32")[0] == 275e12
    with jax.default_matmul_precision("highest"):
        assert mfu.table_peak("A100", "fp32")[0] == 19.5e12
        assert mfu.table_peak("TPU v4", "fp32")[0] == 275e12 / 6
    with pytest.raises(ValueError, match="precision"):
        mfu.table_peak("A100", "fp16")


def test_device_peak_on_cpu_is_measured_or_overridden():
    peak, source = mfu.device_peak("fp32")
    assert peak > 1e8 and source.startswith("measured CPU matmul")
    assert mfu.measured_matmul_peak(jnp.float32, size=256, repeats=3) > 0
    count = jax.device_count()
    assert mfu.device_peak("bf16", override=1e12) == (
        1e12 * count,
        f"override: 1e+12 FLOP/s per device × {count}",
    )
    with pytest.raises(ValueError, match="positive"):
        mfu.device_peak("bf16", override=0.0)


def test_mfu_arithmetic():
    assert mfu.mfu(2e12, 4.0, 16e12) == pytest.approx(0.5)
    assert mfu.mfu(0.0, 4.0, 16e12) == 0.0
    with pytest.raises(ValueError):
        mfu.mfu(1.0, 1.0, 0.0)
