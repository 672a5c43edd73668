"""The spoken-scenes corpus settings and plan: presets, sizes, speaker groups, image ids."""

from __future__ import annotations

import pytest

from fastvgs_jax.data.spoken_scenes import corpus, speakers

# ---- corpus settings and plan --------------------------------------------------------------


def test_unknown_preset_raises_value_error_listing_the_presets():
    with pytest.raises(ValueError, match="nope") as error:
        corpus.preset("nope")
    for name in corpus.PRESETS:
        assert name in str(error.value)


@pytest.mark.parametrize(
    "bad",
    [
        dict(image_size=32),
        dict(captions_per_image=0),
        dict(num_test_images=0),
        dict(near_duplicate_fraction=1.5),
        dict(num_shapes=0),
    ],
)
def test_invalid_settings_raise_value_error(bad):
    with pytest.raises(ValueError):
        corpus.CorpusSettings(**bad)


@pytest.fixture(scope="module")
def tiny_plans() -> dict[str, list]:
    settings = corpus.preset("tiny")
    return {split: corpus.plan_split(settings, split) for split in corpus.SPLITS}


def test_plan_is_the_same_every_time(tiny_plans):
    settings = corpus.preset("tiny")
    for split in corpus.SPLITS:
        assert corpus.plan_split(settings, split) == tiny_plans[split], split
    other = corpus.plan_split(corpus.preset("tiny", seed=1), "train")
    assert [t.scene for t in other] != [t.scene for t in tiny_plans["train"]]


def test_plan_sizes_match_the_settings(tiny_plans):
    settings = corpus.preset("tiny")
    for split, plan in tiny_plans.items():
        utterances = [c for t in plan for c in t.captions] if split in corpus.IMAGE_SPLITS else plan
        assert len(utterances) == settings.num_examples(split), split
    ids = [
        u.utterance_id
        for plan in tiny_plans.values()
        for t in plan
        for u in (t.captions if isinstance(t, corpus.ImageTask) else [t])
    ]
    assert len(ids) == len(set(ids))


def test_plan_uses_each_speaker_group_only_where_it_belongs(tiny_plans):
    groups = speakers.make_speakers(0, 4, 2, 2)
    ids = {group: {s.speaker_id for s in members} for group, members in groups.items()}

    def used(split):
        plan = tiny_plans[split]
        if split in corpus.IMAGE_SPLITS:
            return {c.speaker.speaker_id for t in plan for c in t.captions}
        return {u.speaker.speaker_id for u in plan}

    assert used("train") | used("validation") <= ids["train"]
    assert used("test") <= ids["heldout"]
    assert used("abx") == ids["heldout"]
    assert used("audio_only") <= ids["pool"]
    assert used("train") and used("test") and used("audio_only")


def test_image_ids_are_disjoint_across_splits(tiny_plans):
    ids = {split: [t.image_id for t in tiny_plans[split]] for split in corpus.IMAGE_SPLITS}
    assert sum(len(v) for v in ids.values()) == len(set().union(*map(set, ids.values())))
    for plan in tiny_plans.values():
        for task in plan:
            if isinstance(task, corpus.ImageTask):
                assert all(
                    c.utterance_id.startswith(f"img{task.image_id:06d}-") for c in task.captions
                )


@pytest.mark.parametrize(
    "field, message", [({"snr_db": (30.0, 10.0)}, "snr_db"), ({"channel_db": -1.0}, "channel_db")]
)
def test_bad_recording_conditions_are_named(field, message):
    with pytest.raises(ValueError, match=message):
        corpus.CorpusSettings(**field)
