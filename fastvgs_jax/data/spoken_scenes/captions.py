"""Spoken-style captions of a scene, each paired with the claims it makes.

Every caption is built from structured claims about the scene (an object exists, exactly n
objects match a description, a relation holds, an object sits in a region), and the claims are
checked against the scene geometry before the words are produced. Wording, order and synonyms
vary the way different annotators would describe the same picture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from fastvgs_jax.data.spoken_scenes.scenes import Scene, SceneObject, relation_holds, true_relations

NOUNS = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "heart": ("heart",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign"),
    "hexagon": ("hexagon",),
    "ring": ("ring", "doughnut"),
}
COLOUR_WORDS = {
    "red": ("red",),
    "green": ("green",),
    "blue": ("blue",),
    "yellow": ("yellow",),
    "purple": ("purple", "violet"),
    "orange": ("orange",),
    "pink": ("pink",),
    "brown": ("brown",),
    "white": ("white",),
    "black": ("black",),
    "grey": ("grey",),
    "teal": ("teal", "turquoise"),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large", "huge")}
# Patterns as a pre-noun adjective or a post-noun phrase.
PATTERN_ADJECTIVES = {
    "plain": ("plain", "solid"),
    "striped": ("striped", "stripy"),
    "dotted": ("dotted", "spotted", "polka dot"),
    "checked": ("checked", "checkered"),
}
PATTERN_PHRASES = {
    "plain": ("with no pattern",),
    "striped": ("with stripes",),
    "dotted": ("with dots", "with spots"),
    "checked": ("with a checkered pattern", "with checks"),
}
RELATION_WORDS = {
    "left_of": ("to the left of", "left of", "on the left of"),
    "right_of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over", "higher than"),
    "below": ("below", "under", "beneath", "underneath"),
}
CONVERSE = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}
REGION_WORDS = {
    "left": ("on the left", "on the left side"),
    "right": ("on the right", "on the right side"),
    "top": ("at the top", "near the top"),
    "bottom": ("at the bottom", "near the bottom"),
}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
GROUP_NOUNS = ("shapes", "objects", "things")
LIST_INTROS = (
    "",
    "there is",
    "i see",
    "this picture shows",
    "a picture of",
    "an image with",
    "we see",
)

# Attributes a description may mention besides the shape.
_MODIFIERS = ("colour", "size", "pattern")


@dataclasses.dataclass(frozen=True)
class Description:
    """Which attribute values a noun phrase commits to (None = not mentioned)."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    pattern: str | None = None

    def matches(self, obj: SceneObject) -> bool:
        return all(
            value is None or getattr(obj, field) == value
            for field, value in dataclasses.asdict(self).items()
        )

    @classmethod
    def of(cls, obj: SceneObject, fields: tuple[str, ...]) -> Description:
        return cls(**{f: getattr(obj, f) for f in fields})


@dataclasses.dataclass(frozen=True)
class Claim:
    """One checkable statement. kind: exists | count | relation | region."""

    kind: str
    subject: Description
    count: int | None = None
    relation: str | None = None
    other: Description | None = None
    region: str | None = None


def region_holds(obj: SceneObject, region: str) -> bool:
    return {
        "left": obj.x < 0.4,
        "right": obj.x > 0.6,
        "top": obj.y < 0.4,
        "bottom": obj.y > 0.6,
    }[region]


def claim_holds(scene: Scene, claim: Claim) -> bool:
    """Whether ``claim`` is true of ``scene`` (checked on geometry and attributes only)."""
    matching = [o for o in scene.objects if claim.subject.matches(o)]
    if claim.kind == "exists":
        return bool(matching)
    if claim.kind == "count":
        return len(matching) == claim.count
    if claim.kind == "region":
        return any(region_holds(o, claim.region) for o in matching)
    if claim.kind == "relation":
        others = [o for o in scene.objects if claim.other.matches(o)]
        return any(
            a is not b and relation_holds(a, claim.relation, b) for a in matching for b in others
        )
    raise ValueError(f"unknown claim kind {claim.kind!r}")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _plural(noun: str) -> str:
    head, _, tail = noun.rpartition(" ")
    last = tail or noun
    if last.endswith(("s", "x", "sh", "ch")):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


class _Phraser:
    """Turns descriptions into noun phrases with per-caption word choices."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.post_pattern = rng.random() < 0.3
        # One word per value within a caption: "a teal star and a turquoise star" would read
        # as two colours.
        self.noun_choice = {k: _pick(rng, words) for k, words in NOUNS.items()}
        self.colour_choice = {k: _pick(rng, words) for k, words in COLOUR_WORDS.items()}
        self.size_choice = {k: _pick(rng, words) for k, words in SIZE_WORDS.items()}

    def noun_phrase(self, d: Description, count: int | None = None) -> str:
        """``count`` None → singular with an article; otherwise a number word and a plural."""
        rng = self.rng
        noun = self.noun_choice[d.shape] if d.shape else _pick(rng, ("shape", "object", "thing"))
        words = []
        if d.size:
            words.append(self.size_choice[d.size])
        post = ""
        if d.pattern and self.post_pattern:
            post = " " + _pick(rng, PATTERN_PHRASES[d.pattern])
        elif d.pattern:
            words.append(_pick(rng, PATTERN_ADJECTIVES[d.pattern]))
        if d.colour:
            words.append(self.colour_choice[d.colour])
        if count is None or count == 1:
            words.append(noun)
            core = " ".join(words) + post
            return _article(core) if count is None else "one " + core
        words.append(_plural(noun))
        return f"{NUMBER_WORDS[count]} " + " ".join(words) + post


def _mention_fields(rng: np.random.Generator) -> tuple[str, ...]:
    fields = ["shape"]
    if rng.random() < 0.85:
        fields.append("colour")
    if rng.random() < 0.45:
        fields.append("size")
    if rng.random() < 0.45:
        fields.append("pattern")
    return tuple(fields)


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _list_caption(rng, scene, phraser) -> tuple[str, list[Claim]]:
    """All objects, duplicates grouped with a number word."""
    fields = _mention_fields(rng)
    groups: dict[Description, int] = {}
    for obj in scene.objects:
        d = Description.of(obj, fields)
        groups[d] = groups.get(d, 0) + 1
    order = list(groups)
    rng.shuffle(order)
    claims = [Claim("count", d, count=groups[d]) for d in order]
    phrases = [phraser.noun_phrase(d, None if groups[d] == 1 else groups[d]) for d in order]
    intro = _pick(rng, LIST_INTROS)
    if intro == "there is" and (len(phrases) > 1 or groups[order[0]] > 1):
        intro = "there are"
    return " ".join(filter(None, [intro, _join(phrases)])), claims


def _relation_caption(rng, scene, phraser) -> tuple[str, list[Claim]] | None:
    relations = true_relations(scene)
    if not relations:
        return None
    i, rel, j = relations[int(rng.integers(len(relations)))]
    a = Description.of(scene.objects[i], _mention_fields(rng))
    b = Description.of(scene.objects[j], _mention_fields(rng))
    claims = [Claim("relation", a, relation=rel, other=b)]
    pa, pb = phraser.noun_phrase(a), phraser.noun_phrase(b)
    form = int(rng.integers(4))
    if form == 0:
        text = f"{pa} {_pick(rng, RELATION_WORDS[rel])} {pb}"
    elif form == 1:
        text = f"there is {pa} {_pick(rng, RELATION_WORDS[rel])} {pb}"
    elif form == 2:
        text = f"{pb} is {_pick(rng, RELATION_WORDS[CONVERSE[rel]])} {pa}"
    else:
        text = f"{_pick(rng, RELATION_WORDS[rel])} {pb} there is {pa}"
    return text, claims


def _count_caption(rng, scene, phraser) -> tuple[str, list[Claim]]:
    n = len(scene.objects)
    noun = _pick(rng, GROUP_NOUNS)
    claims = [Claim("count", Description(), count=n)]
    if n == 1:
        d = Description.of(scene.objects[0], _mention_fields(rng))
        claims.append(Claim("exists", d))
        text = _pick(rng, ("just", "only", "a single shape,")) + " " + phraser.noun_phrase(d)
        return text, claims
    form = int(rng.integers(3))
    if form == 0:
        return f"{NUMBER_WORDS[n]} {noun}", claims
    if form == 1:
        return f"there are {NUMBER_WORDS[n]} {noun}", claims
    text, listed = _list_caption(rng, scene, phraser)
    return f"{NUMBER_WORDS[n]} {noun} {text}", claims + listed


def _region_caption(rng, scene, phraser) -> tuple[str, list[Claim]] | None:
    options = [
        (obj, region)
        for obj in scene.objects
        for region in REGION_WORDS
        if region_holds(obj, region)
    ]
    if not options:
        return None
    obj, region = options[int(rng.integers(len(options)))]
    d = Description.of(obj, _mention_fields(rng))
    phrase, where = phraser.noun_phrase(d), _pick(rng, REGION_WORDS[region])
    text = f"{where} there is {phrase}" if rng.random() < 0.5 else f"{phrase} {where}"
    return text, [Claim("region", d, region=region)]


def _rest_caption(rng, scene, phraser) -> tuple[str, list[Claim]]:
    """One object then what else is there: a second sentence shape people use."""
    text, claims = _list_caption(rng, scene, phraser)
    if len(scene.objects) == 1:
        return text, claims
    extra = _relation_caption(rng, scene, phraser)
    if extra is None:
        return text, claims
    return f"{text} and {extra[0]}", claims + extra[1]


_CAPTIONERS = (_list_caption, _relation_caption, _count_caption, _region_caption, _rest_caption)
_WEIGHTS = np.array([0.3, 0.3, 0.12, 0.16, 0.12])


def caption_scene(
    scene: Scene, rng: np.random.Generator, num_captions: int = 5
) -> list[tuple[str, list[Claim]]]:
    """``num_captions`` distinct captions of ``scene``, each with the claims it makes.

    Raises:
      RuntimeError: if the claims of a caption are false of the scene (a generator bug) or too
        few distinct captions could be produced.
    """
    captions: dict[str, list[Claim]] = {}
    for _ in range(200):
        phraser = _Phraser(rng)
        captioner = _CAPTIONERS[int(rng.choice(len(_CAPTIONERS), p=_WEIGHTS / _WEIGHTS.sum()))]
        produced = captioner(rng, scene, phraser)
        if produced is None:
            continue
        text, claims = produced
        bad = [c for c in claims if not claim_holds(scene, c)]
        if bad:
            raise RuntimeError(f"caption {text!r} makes false claims {bad} about {scene}")
        captions.setdefault(" ".join(text.split()), claims)
        if len(captions) == num_captions:
            return list(captions.items())
    raise RuntimeError(f"could only write {len(captions)} distinct captions for {scene}")


def vocabulary_words() -> Mapping[str, tuple[str, ...]]:
    """Every word family the captioner can say, for pronunciation and phone-set checks."""
    return {
        "nouns": tuple(w for ws in NOUNS.values() for w in ws),
        "colours": tuple(w for ws in COLOUR_WORDS.values() for w in ws),
        "sizes": tuple(w for ws in SIZE_WORDS.values() for w in ws),
        "patterns": tuple(w for ws in PATTERN_ADJECTIVES.values() for w in ws),
    }
