"""The model family: named sizes from knobs, their parameter estimates, the paper's base."""

from __future__ import annotations

import jax
import pytest

from fastvgs_jax.models import family, fastvgs
from fastvgs_jax.models.config import model_config as preset_config
from fastvgs_jax.train import parameters

PARTS = ("encoder", "vgs_branch", "image", "total", "speech_encoder")


@pytest.mark.parametrize("size, frontend", [("xs", "logmel"), ("s", "cnn")])
def test_parameter_estimate_counts_an_initialised_model(size, frontend):
    config = family.model_config(size, preset_config("tiny"), frontend=frontend)
    variables = fastvgs.init_variables(config, jax.random.key(0))
    counts = parameters.parameter_counts(variables)
    estimate = family.estimate_parameters(config)
    assert {k: estimate[k] for k in PARTS} == {k: counts[k] for k in PARTS}


def test_parameter_estimate_holds_for_every_named_size_and_image_side():
    cases = [(size, "cnn") for size in family.SIZES] + [("xs", "vit"), ("xs", "regions")]
    for size, kind in cases:  # abstract shapes: nothing is initialised
        config = family.model_config(size)
        config.image.kind = kind
        for frontend in ("cnn", "logmel") if size == "xs" else ("cnn",):
            config.frontend = frontend
            counts = parameters.parameter_counts(fastvgs.abstract_variables(config))
            estimate = family.estimate_parameters(config)
            assert {k: estimate[k] for k in PARTS} == {k: counts[k] for k in PARTS}, (size, kind)


def test_sizes_span_a_tenth_of_a_million_to_three_hundred_million_encoder_parameters():
    encoders = [family.estimate_parameters(family.model_config(s))["encoder"] for s in family.SIZES]
    assert encoders == sorted(encoders)
    assert encoders[1] < 0.2e6 and 250e6 < encoders[-1] < 350e6


def test_the_family_base_with_a_cnn_frontend_is_the_papers_model():
    base = family.model_config("base", frontend="cnn")
    paper = preset_config("base")
    assert base.size == "base(frontend=cnn)"
    base.size = paper.size
    assert base.to_dict() == paper.to_dict()


def test_knobs_are_overridable_and_the_objective_stays_the_templates():
    template = preset_config("tiny")
    config = family.model_config("s", template, width=64, depth=2)
    assert (config.hidden_dim, config.num_layers, config.num_heads) == (64, 2, 4)
    assert config.mlp_dim == 256 and config.vgs_layer == 1
    assert config.audio_pool.widths[-1] == 64 and config.image.num_heads == 4
    for field in ("masking", "num_negatives", "coarse", "logit_temperature"):
        assert config[field] == template[field], field
    assert config.quantizer.entries == template.quantizer.entries
    fastvgs.check_model_config(config)


def test_invalid_knobs_are_named():
    with pytest.raises(ValueError, match="not divisible by 5 heads"):
        family.model_config("s", heads=5)
    with pytest.raises(ValueError, match="unknown model size 'xxl'"):
        family.model_config("xxl")
    with pytest.raises(ValueError, match="frontend"):
        family.model_config("s", frontend="wav")
