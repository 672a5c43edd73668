"""The spoken-scenes captioner and renderer: scenes, captions read back word by word, images
(the speech side: test_spoken_scenes.py; the corpus plan: test_corpus_plan.py)."""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np
import pytest

from fastvgs_jax.data.spoken_scenes import captions, scenes
from fastvgs_jax.data.spoken_scenes.captions import Claim, Description, claim_holds
from fastvgs_jax.data.spoken_scenes.render import render_scene
from fastvgs_jax.data.spoken_scenes.scenes import Scene, SceneObject, relation_holds


def obj(shape="circle", colour="red", size="big", pattern="plain", x=0.5, y=0.5) -> SceneObject:
    return SceneObject(shape, colour, size, pattern, x, y)


def random_scenes(count: int, seed: int = 0) -> list[Scene]:
    rng = np.random.default_rng(seed)
    vocabulary = scenes.SceneVocabulary()
    return [
        scenes.sample_scene(rng, vocabulary, 1, 4, repeat_probability=0.7) for _ in range(count)
    ]


# ---- reading captions back, independently of the captioner ---------------------------------


def _plural(noun: str) -> str:
    irregular = {"box": "boxes", "cross": "crosses", "rhombus": "rhombuses"}
    head, _, last = noun.rpartition(" ")
    last = irregular.get(last, last + "s")
    return f"{head} {last}" if head else last


SHAPE_OF = {w: s for s, words in captions.NOUNS.items() for w in words}
SHAPE_OF_PLURAL = {_plural(w): s for w, s in SHAPE_OF.items()}
MODIFIER_OF = {
    **{w: ("colour", c) for c, words in captions.COLOUR_WORDS.items() for w in words},
    **{w: ("size", s) for s, words in captions.SIZE_WORDS.items() for w in words},
    **{w: ("pattern", p) for p, words in captions.PATTERN_ADJECTIVES.items() for w in words},
}
PATTERN_PHRASE_OF = {w: p for p, words in captions.PATTERN_PHRASES.items() for w in words}
NUMBER_OF = {w: n for n, w in captions.NUMBER_WORDS.items()}
_MULTIWORD = sorted(
    (w for w in [*SHAPE_OF, *SHAPE_OF_PLURAL, *MODIFIER_OF] if " " in w), key=len, reverse=True
)


def words_of(text: str) -> list[str]:
    """Caption words, with "plus sign(s)" and "polka dot" kept as one word each."""
    text = text.replace(",", " ")
    for phrase in _MULTIWORD:
        text = re.sub(rf"\b{phrase}\b", phrase.replace(" ", "_"), text)
    return [w.replace("_", " ") for w in text.split()]


def counted_groups(words: list[str]) -> list[tuple[int, dict[str, str], str]]:
    """(number, attributes, phrase) for every "<number> [modifiers] <plural noun> [with ...]"."""
    groups = []
    for i, word in enumerate(words):
        if word not in NUMBER_OF:
            continue
        attributes: dict[str, str] = {}
        j = i + 1
        while j < len(words) and words[j] in MODIFIER_OF:
            field, value = MODIFIER_OF[words[j]]
            attributes[field] = value
            j += 1
        phrase = " ".join(words[i : j + 1])
        assert j < len(words), f"number word without a noun: {phrase!r}"
        if words[j] in SHAPE_OF_PLURAL:
            attributes["shape"] = SHAPE_OF_PLURAL[words[j]]
        else:
            assert words[j] in captions.GROUP_NOUNS, f"not a counted plural noun: {phrase!r}"
        after = " ".join(words[j + 1 :]) + " "
        for post, pattern in PATTERN_PHRASE_OF.items():
            if after.startswith(post + " "):
                attributes["pattern"] = pattern
        groups.append((NUMBER_OF[word], attributes, phrase))
    return groups


def check_words_against_scene(text: str, scene: Scene) -> None:
    present = {f: {getattr(o, f) for o in scene.objects} for f in ("shape", "colour", "size")}
    present["pattern"] = {o.pattern for o in scene.objects}
    words = words_of(text)
    for word in words:
        if word in SHAPE_OF or word in SHAPE_OF_PLURAL:
            shape = SHAPE_OF.get(word) or SHAPE_OF_PLURAL[word]
            assert shape in present["shape"], f"{text!r}: {word!r} but shapes are {present}"
        if word in MODIFIER_OF:
            field, value = MODIFIER_OF[word]
            assert value in present[field], f"{text!r}: {word!r} but {field}s are {present}"
    for phrase, pattern in PATTERN_PHRASE_OF.items():
        if re.search(rf"\b{phrase}\b", text):
            assert pattern in present["pattern"], f"{text!r}: {phrase!r} but {present}"
    for number, attributes, phrase in counted_groups(words):
        matching = [o for o in scene.objects if Description(**attributes).matches(o)]
        assert len(matching) == number, f"{text!r}: {phrase!r} but {len(matching)} match"
    # Grammar the listener relies on: articles and "there is / are" agree with what follows.
    for article, following in itertools.pairwise(words):
        if article in ("a", "an"):
            assert (article == "an") == (following[0] in "aeiou"), text
    assert not re.search(r"\bthere is (two|three|four)\b", text), text


# ---- scenes and captions -------------------------------------------------------------------


def test_captions_are_true_of_their_scene_claim_by_claim_and_word_by_word():
    rng = np.random.default_rng(1)
    num_counted = 0
    for scene in random_scenes(300):
        written = captions.caption_scene(scene, rng, num_captions=5)
        texts = [text for text, _ in written]
        assert len(set(texts)) == 5, texts
        for text, claims in written:
            assert claims, text
            assert all(claim_holds(scene, c) for c in claims), (text, claims)
            check_words_against_scene(text, scene)
            num_counted += len(counted_groups(words_of(text)))
    assert num_counted > 100  # the count check was exercised, not vacuous


def test_word_check_rejects_a_caption_that_miscounts_or_names_a_missing_colour():
    scene = Scene((obj("star", "red", x=0.2), obj("star", "red", x=0.8)), (170, 170, 170))
    check_words_against_scene("two red stars", scene)
    check_words_against_scene("i see two stars", scene)
    wrong = ["three red stars", "two blue stars", "two red plus signs", "an red star"]
    for text in [*wrong, "there is two stars"]:
        with pytest.raises(AssertionError):
            check_words_against_scene(text, scene)


def test_claim_holds_detects_false_claims():
    circle = obj("circle", "red", x=0.2, y=0.3)
    square = obj("square", "blue", "small", "striped", x=0.8, y=0.7)
    scene = Scene((circle, square), (170, 170, 170))
    red_circle, blue_square = Description("circle", "red"), Description("square", "blue")
    true = [
        Claim("relation", red_circle, relation="left_of", other=blue_square),
        Claim("relation", blue_square, relation="below", other=red_circle),
        Claim("count", Description(colour="red"), count=1),
        Claim("count", Description(), count=2),
        Claim("exists", Description("square", size="small", pattern="striped")),
        Claim("region", red_circle, region="left"),
    ]
    false = [
        Claim("relation", red_circle, relation="right_of", other=blue_square),
        Claim("relation", blue_square, relation="above", other=red_circle),
        Claim("relation", red_circle, relation="left_of", other=red_circle),  # itself
        Claim("count", Description(colour="red"), count=2),
        Claim("count", Description(), count=3),
        Claim("exists", Description("star")),
        Claim("exists", Description("square", size="big")),
        Claim("region", red_circle, region="right"),
    ]
    assert all(claim_holds(scene, c) for c in true)
    assert not any(claim_holds(scene, c) for c in false)


def _difference(before: Scene, after: Scene) -> str:
    """'<attribute>' for a one-attribute change, 'swap' for two objects trading places."""
    assert after.background == before.background
    assert len(after.objects) == len(before.objects)
    changed = [
        k for k, (a, b) in enumerate(zip(before.objects, after.objects, strict=True)) if a != b
    ]
    if len(changed) == 1:
        a, b = before.objects[changed[0]], after.objects[changed[0]]
        fields = [f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]
        assert len(fields) == 1 and fields[0] in ("shape", "colour", "size", "pattern"), fields
        return fields[0]
    assert len(changed) == 2, f"{len(changed)} objects changed"
    i, j = changed
    a, b = before.objects[i], before.objects[j]
    assert after.objects[i] == dataclasses.replace(a, x=b.x, y=b.y)
    assert after.objects[j] == dataclasses.replace(b, x=a.x, y=a.y)
    return "swap"


def test_near_duplicate_changes_one_attribute_of_one_object_or_swaps_two_objects():
    rng = np.random.default_rng(2)
    vocabulary = scenes.SceneVocabulary()
    kinds = set()
    for scene in random_scenes(400, seed=3):
        twin = scenes.near_duplicate(rng, scene, vocabulary)
        kinds.add(_difference(scene, twin))
        for o in twin.objects:  # still a valid placement
            assert o.radius < o.x < 1 - o.radius and o.radius < o.y < 1 - o.radius
        for p, q in itertools.combinations(twin.objects, 2):
            assert np.hypot(p.x - q.x, p.y - q.y) > p.radius + q.radius
    assert kinds == {"shape", "colour", "size", "pattern", "swap"}


def test_relations_need_more_than_the_margin_between_centres():
    margin = scenes.RELATION_MARGIN
    a = obj(x=0.3, y=0.3)
    for delta, expected in ((margin - 0.01, False), (margin + 0.01, True)):
        right, low = obj(x=0.3 + delta, y=0.3), obj(x=0.3, y=0.3 + delta)
        assert relation_holds(a, "left_of", right) is expected
        assert relation_holds(right, "right_of", a) is expected
        assert relation_holds(a, "above", low) is expected
        assert relation_holds(low, "below", a) is expected
        # never the wrong way round
        assert not relation_holds(a, "right_of", right) and not relation_holds(a, "below", low)
    close = Scene((a, obj(x=0.3 + margin / 2, y=0.3 - margin / 2)), (170, 170, 170))
    assert scenes.true_relations(close) == []
    with pytest.raises(ValueError, match="unknown relation"):
        relation_holds(a, "behind", a)


# ---- rendering -------------------------------------------------------------------------------


def test_render_is_uint8_of_the_requested_size_and_deterministic_per_seed():
    scene = random_scenes(1, seed=4)[0]
    first = render_scene(scene, 64, np.random.default_rng(9))
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, render_scene(scene, 64, np.random.default_rng(9)))
    assert not np.array_equal(first, render_scene(scene, 64, np.random.default_rng(10)))
    assert render_scene(scene, 96, np.random.default_rng(9)).shape == (96, 96, 3)


@pytest.mark.parametrize("colour", scenes.COLOURS)
def test_a_plain_object_shows_its_colour_at_its_centre(colour):
    background = (90, 90, 90) if colour in ("white", "yellow", "pink") else (200, 200, 200)
    scene = Scene((obj("circle", colour, x=0.3, y=0.6),), background)
    image = render_scene(scene, 100, np.random.default_rng(0)).astype(float)
    centre = image[58:63, 28:33].reshape(-1, 3).mean(axis=0)  # rows are y
    np.testing.assert_allclose(centre, scenes.COLOUR_RGB[colour], atol=30)
    np.testing.assert_allclose(image[2:8, 90:96].reshape(-1, 3).mean(0), background, atol=3)
