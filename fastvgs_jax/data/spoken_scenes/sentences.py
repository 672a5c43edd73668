"""Sentences not tied to any image: the audio-only pool (LibriSpeech's role) and the ABX set.

The grammar mixes everyday words with families of minimal pairs (bat/bet/bit/boat/boot, ...),
so that the same phone context recurs with different centre phones within one speaker: the
within- and across-speaker ABX cells need exactly that.
"""

from __future__ import annotations

import numpy as np

from fastvgs_jax.data.spoken_scenes.captions import COLOUR_WORDS, NOUNS, SIZE_WORDS

# Each family shares onset and coda consonants and differs in the vowel.
MINIMAL_PAIR_FAMILIES = (
    ("bat", "bet", "bit", "but", "boat", "boot", "bait", "beat"),
    ("cat", "cot", "cut", "kit", "coat", "kite"),
    ("pan", "pen", "pin", "pun", "pine", "pain"),
    ("sack", "sock", "sick", "seek", "soak"),
    ("tan", "ten", "tin", "tone", "tune", "teen"),
    ("hat", "hit", "hot", "hut", "heat", "hate"),
    ("pat", "pet", "pit", "pot", "put"),
    ("fan", "fin", "fun", "fine", "phone"),
    ("lack", "lick", "lock", "luck", "lake", "look"),
    ("dig", "dog", "dug"),
    ("map", "mop", "mope"),
    ("rod", "road", "ride", "rude", "red"),
)
OTHER_NOUNS = (
    "garden",
    "window",
    "table",
    "river",
    "teacher",
    "basket",
    "kitchen",
    "letter",
    "bottle",
    "bridge",
    "doctor",
    "pencil",
    "ladder",
    "blanket",
    "candle",
    "monkey",
    "rabbit",
    "button",
)
DETERMINERS = ("the", "a", "my", "her", "his", "our", "that")
ADJECTIVES = ("old", "new", "wet", "warm", "cold", "tall", "short", "heavy", "quiet", "clean")
VERB_PHRASES = (
    "sat near",
    "looked at",
    "was next to",
    "fell on",
    "rolled under",
    "stayed by",
    "found",
    "dropped",
    "painted",
    "carried",
    "pushed",
    "moved",
    "liked",
    "wanted",
    "passed",
    "hid behind",
)
ADVERBIALS = (
    "",
    "",
    "yesterday",
    "this morning",
    "again",
    "in the evening",
    "before lunch",
    "after the game",
    "on monday",
    "for a while",
)
CONJUNCTIONS = ("and then", "but", "so", "while")
PRONOUNS = ("she", "he", "we", "they", "i")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _noun(rng: np.random.Generator, minimal_pair_rate: float) -> str:
    roll = rng.random()
    if roll < minimal_pair_rate:
        return _pick(rng, _pick(rng, MINIMAL_PAIR_FAMILIES))
    if roll < minimal_pair_rate + (1 - minimal_pair_rate) / 2:
        return _pick(rng, _pick(rng, tuple(NOUNS.values())))
    return _pick(rng, OTHER_NOUNS)


def _noun_phrase(rng: np.random.Generator, minimal_pair_rate: float) -> str:
    words = [_pick(rng, DETERMINERS)]
    roll = rng.random()
    if roll < 0.3:
        words.append(_pick(rng, ADJECTIVES))
    elif roll < 0.55:
        words.append(_pick(rng, _pick(rng, tuple(COLOUR_WORDS.values()))))
    elif roll < 0.65:
        words.append(_pick(rng, _pick(rng, tuple(SIZE_WORDS.values()))))
    words.append(_noun(rng, minimal_pair_rate))
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def sample_sentence(
    rng: np.random.Generator, minimal_pair_rate: float = 0.5, clauses: int = 1
) -> str:
    """One sentence of ``clauses`` clauses (2–3 give the pool its longer utterances)."""
    parts = []
    for k in range(clauses):
        subject = _noun_phrase(rng, minimal_pair_rate) if k == 0 else _pick(rng, PRONOUNS)
        clause = f"{subject} {_pick(rng, VERB_PHRASES)} {_noun_phrase(rng, minimal_pair_rate)}"
        adverbial = _pick(rng, ADVERBIALS)
        if adverbial:
            clause += " " + adverbial
        parts.append(clause if k == 0 else f"{_pick(rng, CONJUNCTIONS)} {clause}")
    return " ".join(parts)
