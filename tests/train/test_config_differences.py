"""Kept runs against today's config: fields added to the project since a run was recorded
count as changes only where the new config moves them off their defaults."""

from fastvgs_jax.train import manifest


def test_a_field_added_later_counts_only_off_its_default():
    recorded = {"data": {"split": "train"}, "lr": 1e-4}
    defaults = {"data": {"split": "train", "corpus": "spoken_scenes", "fraction": 1.0}, "lr": 0.1}
    same = {"data": {"split": "train", "corpus": "spoken_scenes", "fraction": 1.0}, "lr": 1e-4}
    assert manifest.config_differences(recorded, same, defaults=defaults) == []
    moved = {"data": {"split": "train", "corpus": "spokencoco", "fraction": 1.0}, "lr": 2e-4}
    assert manifest.config_differences(recorded, moved, defaults=defaults) == [
        "data.corpus",
        "lr",
    ]
    # Without defaults every added key is a difference (restarts of one run compare so).
    assert manifest.config_differences(recorded, same) == ["data.corpus", "data.fraction"]
    # A whole section added later, at its defaults.
    defaults["image"] = {"kind": "pixels"}
    assert (
        manifest.config_differences(
            recorded, {**same, "image": {"kind": "pixels"}}, defaults=defaults
        )
        == []
    )
