"""Synthetic speakers: an espeak voice variant crossed with a speaking rate and pitch setting.

Three disjoint groups, each with its own voice variants so that a held-out voice is truly
unheard: training speakers (image captions of train/validation), held-out speakers (test
captions and the ABX set) and pool speakers (the audio-only pool).
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Variants of espeak-ng's voices/!v that sound like speech (robotic, whispered and novelty
# variants are left out). Also left out: Alicia, f2, f3, f5, sandro and victor, whose samples
# differ from run to run even from a freshly loaded library (libespeak-ng reads uninitialised
# memory for them), which would break byte-identical corpora.
VOICE_VARIANTS = (
    "Alex", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo",
    "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Reed", "Storm", "Tweaky",
    "adam", "anika", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed",
    "edward", "edward2", "f1", "f4", "gustave", "ian", "iven", "iven2", "iven3", "john", "klatt",
    "klatt2", "klatt3", "klatt4", "klatt6", "linda", "m1", "m2", "m3", "m4", "m5", "m6", "m7",
    "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob",
    "robert", "shelby", "steph", "travis", "zac",
)  # fmt: skip
LANGUAGE = "en-us"


@dataclasses.dataclass(frozen=True)
class Speaker:
    speaker_id: str
    voice: str  # espeak voice name, e.g. "en-us+Denis"
    rate_wpm: int
    pitch: int
    pitch_range: int
    group: str  # "train" | "heldout" | "pool"


def make_speakers(
    seed: int, num_train: int, num_heldout: int, num_pool: int
) -> dict[str, tuple[Speaker, ...]]:
    """Speakers per group, drawn deterministically from ``seed``; no voice in two groups."""
    total = num_train + num_heldout + num_pool
    if min(num_train, num_heldout, num_pool) < 1:
        raise ValueError("every speaker group needs at least one speaker")
    if total > len(VOICE_VARIANTS):
        raise ValueError(f"{total} speakers requested; only {len(VOICE_VARIANTS)} voice variants")
    rng = np.random.default_rng([seed, 0x5BEA])
    variants = [VOICE_VARIANTS[i] for i in rng.permutation(len(VOICE_VARIANTS))[:total]]
    groups = {}
    start = 0
    for group, count in (("train", num_train), ("heldout", num_heldout), ("pool", num_pool)):
        groups[group] = tuple(
            Speaker(
                speaker_id=f"{group}{k:02d}-{variant}",
                voice=f"{LANGUAGE}+{variant}",
                rate_wpm=int(rng.integers(140, 196)),
                pitch=int(rng.integers(25, 76)),
                pitch_range=int(rng.integers(25, 86)),
                group=group,
            )
            for k, variant in enumerate(variants[start : start + count])
        )
        start += count
    return groups
