"""The presets that run the paper's study and Peng's FaST-VGS+ on the paper's corpora."""

from __future__ import annotations

import pytest

from configs import fastvgs_plus, study
from fastvgs_jax.data.corpora import index, registry
from fastvgs_jax.study import plan
from fastvgs_jax.train import loop


def test_spokencoco_study_is_the_papers_scale_and_data():
    settings = study.get_config("spokencoco")
    run = settings.run
    assert (run.model.frontend, run.model.num_layers, run.model.hidden_dim) == ("cnn", 12, 768)
    assert run.model.vgs_layer == 8 and run.model.image.kind == "regions"
    roles = {role: registry.role_config(run.data, role) for role in registry.ROLES}
    assert roles["audio_image"] == ("spokencoco", "train_karpathy")
    assert (
        roles["retrieval"] == ("spokencoco", "test_karpathy") == ("spokencoco", settings.test_split)
    )
    assert roles["abx"] == ("librispeech", "dev-clean")
    assert roles["audio_only"][0] == "librispeech" and "train-other-500" in roles["audio_only"][1]
    assert not registry.uses_embedded(run.data) and not settings.image_tower.enabled
    config = plan.model_config(settings, "w2v2_vgs", seed=0)
    first, second = (p.steps for p in config.phases)
    assert first + second == study.SPOKENCOCO_STEPS and round(second / first, 1) == 2.5  # 20 : 50
    loop.prepare(config)  # validates without reading any data


def test_fastvgs_plus_on_spokencoco_mixes_librispeech_half_and_half():
    config = fastvgs_plus.get_config("spokencoco")
    (phase,) = config.phases
    assert dict(phase.mix) == {"audio_image": 0.5, "audio_only": 0.5}
    assert tuple(phase.weights) == (0.1, 1.0, 1.0)
    assert registry.role_config(config.data, "audio_only")[0] == "librispeech"
    loop.prepare(config)


def test_a_preset_without_paths_names_the_field_to_set():
    config = fastvgs_plus.get_config("spokencoco")
    with pytest.raises(index.CorpusError, match=r"data.corpora.spokencoco.root is empty"):
        registry.open_role(config.data, "audio_image")
