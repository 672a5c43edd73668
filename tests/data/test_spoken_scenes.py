"""The spoken-scenes generator piece by piece: scenes, captions, rendering, speakers, phones,
speech and the corpus plan (no TFDS build here; see test_build.py for that)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastvgs_jax.data.spoken_scenes import captions, corpus, phones, scenes, sentences, speakers
from fastvgs_jax.data.spoken_scenes.captions import Claim, Description, claim_holds
from fastvgs_jax.data.spoken_scenes.espeak import Espeak
from fastvgs_jax.data.spoken_scenes.render import render_scene
from fastvgs_jax.data.spoken_scenes.scenes import Scene, SceneObject, relation_holds
from fastvgs_jax.data.spoken_scenes.speech import SAMPLE_RATE, Variation, synthesize_utterance

# libespeak-ng carries hidden state from one synthesis to the next (Espeak.reset() clears it),
# so tests that compare bytes reset the engine first.
PLAIN_VOICE = dict(voice="en-us", rate_wpm=175, pitch=50, pitch_range=50, word_gap=0)


@pytest.fixture(scope="module")
def engine():
    """The module's one synthesiser: libespeak-ng is process-global."""
    synthesiser = Espeak()
    yield synthesiser
    synthesiser.close()


@pytest.fixture(scope="module")
def speaker() -> speakers.Speaker:
    return speakers.make_speakers(0, 2, 1, 1)["train"][0]


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


# ---- speakers and phones -------------------------------------------------------------------


def test_speaker_groups_share_no_voice_and_no_id():
    num_train = len(speakers.VOICE_VARIANTS) - 44  # every voice variant in use
    groups = speakers.make_speakers(5, num_train, 20, 24)
    assert {g: len(s) for g, s in groups.items()} == {"train": num_train, "heldout": 20, "pool": 24}
    everyone = [s for group in groups.values() for s in group]
    assert len({s.voice for s in everyone}) == len(everyone)
    assert len({s.speaker_id for s in everyone}) == len(everyone)
    for group, members in groups.items():
        assert all(s.group == group for s in members)
    assert speakers.make_speakers(5, num_train, 20, 24) == groups


def test_too_many_or_too_few_speakers_raise_value_error():
    with pytest.raises(ValueError, match="voice variants"):
        speakers.make_speakers(0, 40, 20, 20)
    with pytest.raises(ValueError, match="at least one"):
        speakers.make_speakers(0, 4, 0, 2)


def test_every_voice_variant_is_shipped_with_espeak():
    # espeak_SetVoiceByName silently falls back to the plain voice for an unknown variant.
    import espeakng_loader

    shipped = set(os.listdir(os.path.join(espeakng_loader.get_data_path(), "voices", "!v")))
    assert set(speakers.VOICE_VARIANTS) <= shipped


def _spoken_vocabulary() -> list[str]:
    families = [*captions.vocabulary_words().values(), *sentences.MINIMAL_PAIR_FAMILIES]
    families += [
        sentences.OTHER_NOUNS,
        sentences.DETERMINERS,
        sentences.ADJECTIVES,
        sentences.VERB_PHRASES,
        sentences.ADVERBIALS,
        sentences.CONJUNCTIONS,
        sentences.PRONOUNS,
        captions.LIST_INTROS,
        captions.GROUP_NOUNS,
        tuple(captions.NUMBER_WORDS.values()),
        tuple(_plural(w) for w in SHAPE_OF),
        *captions.PATTERN_PHRASES.values(),
        *captions.RELATION_WORDS.values(),
        *captions.REGION_WORDS.values(),
    ]
    return sorted({w for family in families for w in family if w.strip()})


def test_every_espeak_phoneme_of_the_vocabulary_maps_to_the_inventory(engine):
    produced = set()
    for text in _spoken_vocabulary():
        produced.update(engine.synthesize(text, **PLAIN_VOICE).phonemes)
    assert len(produced) > 30
    for mnemonic in sorted(produced):
        assert set(phones.espeak_to_arpabet(mnemonic)) <= set(phones.INVENTORY), mnemonic


def test_unknown_espeak_phoneme_raises_key_error_naming_it():
    with pytest.raises(KeyError, match="Q!.*ESPEAK_TO_ARPABET"):
        phones.espeak_to_arpabet("'Q!")
    assert phones.espeak_to_arpabet("'E") == ("EH",) == phones.espeak_to_arpabet(",E")


# ---- speech ----------------------------------------------------------------------------------


def _speak(engine, text, speaker, seed=0):
    rng = np.random.default_rng(seed)
    return synthesize_utterance(engine, text, speaker, Variation.sample(rng), rng)


def _frame_db(audio: np.ndarray) -> np.ndarray:
    """10 ms frame levels in dB relative to the loudest frame."""
    frame = SAMPLE_RATE // 100
    n = len(audio) // frame
    rms = np.sqrt((audio[: n * frame].astype(np.float64).reshape(n, frame) ** 2).mean(axis=1))
    return 20 * np.log10(rms / rms.max() + 1e-12)


@pytest.mark.parametrize(
    "text", ["two red stars to the left of a big blue circle", "a cat", "the old garden"]
)
def test_utterance_alignment_is_contiguous_and_covers_the_audio(engine, speaker, text):
    u = _speak(engine, text, speaker)
    assert u.audio.dtype == np.int16 and u.audio.ndim == 1
    assert 0.25 < len(u.audio) / SAMPLE_RATE < 0.6 * len(text.split()) + 0.5
    assert u.phone_starts[0] == 0 and u.phone_ends[-1] == len(u.audio)
    np.testing.assert_array_equal(u.phone_ends[:-1], u.phone_starts[1:])
    assert (u.phone_ends > u.phone_starts).all()
    assert ((u.phone_ids >= 0) & (u.phone_ids < len(phones.INVENTORY))).all()
    silence = phones.PHONE_ID[phones.SILENCE]
    assert not ((u.phone_ids[1:] == silence) & (u.phone_ids[:-1] == silence)).any()
    assert len(u.phone_ids) >= len(text.replace(" ", "")) // 2


def test_resampled_duration_matches_espeak_at_16khz(engine, speaker):
    text = "a picture of three striped hearts"
    raw = engine.synthesize(text, **PLAIN_VOICE)
    assert raw.sample_rate == 22050
    plain = speakers.Speaker("s", "en-us", 175, 50, 50, "train")
    u = synthesize_utterance(
        engine, text, plain, Variation(1.0, 0, 0, 0, 40.0, 0.8), np.random.default_rng(0)
    )
    expected = len(raw.samples) * SAMPLE_RATE / raw.sample_rate
    assert 0.6 * expected < len(u.audio) <= expected + 1  # trimming only shortens


def test_silence_is_trimmed_at_both_ends(engine):
    rng = np.random.default_rng(7)
    voices = speakers.make_speakers(1, 6, 2, 2)
    for k, s in enumerate(v for group in voices.values() for v in group):
        text = sentences.sample_sentence(rng, clauses=1 + k % 2)
        levels = _frame_db(_speak(engine, text, s, seed=k).audio)
        # Trimming keeps 30 ms of margin around frames within 35 dB of the loudest one.
        assert levels[:5].max() > -40, (text, s.voice, levels[:8].round(1))
        assert levels[-5:].max() > -40, (text, s.voice, levels[-8:].round(1))


def test_other_variation_and_noise_give_other_samples(engine, speaker):
    a = _speak(engine, "a small green ring", speaker, seed=1).audio
    b = _speak(engine, "a small green ring", speaker, seed=2).audio
    assert not np.array_equal(a, b)


def test_after_a_reset_utterance_bytes_do_not_depend_on_what_was_spoken_before(engine, speaker):
    engine.reset()
    first = _speak(engine, "a small green ring", speaker, seed=1).audio
    engine.synthesize("something else entirely", **PLAIN_VOICE)
    engine.reset()
    again = _speak(engine, "a small green ring", speaker, seed=1).audio
    np.testing.assert_array_equal(first, again)


def test_every_voice_variant_is_deterministic_after_a_reset(engine):
    def speak(variant: str) -> bytes:
        engine.reset()
        kw = dict(PLAIN_VOICE, voice=f"{speakers.LANGUAGE}+{variant}")
        return engine.synthesize("a cat sat on the striped mat", **kw).samples.tobytes()

    first = {variant: speak(variant) for variant in speakers.VOICE_VARIANTS}
    # A different history in between: other variants, other texts.
    engine.synthesize("something else entirely", **dict(PLAIN_VOICE, voice="en-us+m3"))
    again = {variant: speak(variant) for variant in reversed(speakers.VOICE_VARIANTS)}
    assert [v for v in first if first[v] != again[v]] == []


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_raises_value_error(engine, speaker, text):
    with pytest.raises(ValueError, match="empty"):
        engine.synthesize(text, **PLAIN_VOICE)
    with pytest.raises(ValueError, match="empty"):
        _speak(engine, text, speaker)


def test_unknown_voice_raises_value_error(engine):
    with pytest.raises(ValueError, match="xx-nope"):
        engine.synthesize("hello", **dict(PLAIN_VOICE, voice="xx-nope"))


def test_a_second_engine_in_one_process_is_refused():
    # In a subprocess: this test must not disturb the module's engine.
    code = textwrap.dedent(
        """
        from fastvgs_jax.data.spoken_scenes.espeak import Espeak
        kw = dict(voice="en-us", rate_wpm=175, pitch=50, pitch_range=50, word_gap=0)
        first = Espeak()
        try:
            Espeak()
        except RuntimeError:
            print("second engine refused")
        else:
            print("first engine gives", first.synthesize("a red star", **kw).samples.size)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout.strip()
    assert out == "second engine refused", out


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


def test_generate_split_bytes_do_not_depend_on_the_worker_count(engine, monkeypatch):
    settings = corpus.preset("tiny")

    def digests(examples, without=()):
        return [
            corpus.example_digest({k: v for k, v in e.items() if k not in without})
            for e in examples
        ]

    # A worker has always spoken something before (earlier chunks, earlier splits); here the
    # in-process worker has.
    engine.synthesize("warm up", **PLAIN_VOICE)
    with monkeypatch.context() as patch:
        # Workers(1) would make a second Espeak in this process, which is refused; reuse ours.
        patch.setattr(
            corpus,
            "_init_worker",
            lambda size: corpus._WORKER.update(engine=engine, image_size=size),
        )
        with corpus.Workers(settings.image_size, num_workers=1) as workers:
            one = list(corpus.generate_split(settings, "validation", workers))
    with corpus.Workers(settings.image_size, num_workers=2) as workers:
        two = list(corpus.generate_split(settings, "validation", workers))
    assert len(one) == len(two) == settings.num_examples("validation")
    speech = ("audio", "phone_ids", "phone_starts", "phone_ends")
    assert digests(one, without=speech) == digests(two, without=speech)
    assert digests(one) == digests(two)


def test_channel_scales_each_frequency_by_its_log_gain_curve():
    from fastvgs_jax.data.spoken_scenes.speech import apply_channel

    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE  # 1 s: every integer Hz is an exact FFT bin
    channel = ((6.0, 0.5, 0.0),)  # 6 · cos(π · log2 f) dB: +6 at 256 Hz, −6 at 512, 0 at 362
    for hz, expected_db in ((256, 6.0), (512, -6.0), (362, 6.0 * np.cos(np.pi * np.log2(362)))):
        tone = np.sin(2 * np.pi * hz * t)
        out = apply_channel(tone, channel)
        gain_db = 20 * np.log10(np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(tone**2)))
        assert gain_db == pytest.approx(expected_db, abs=1e-6), hz
    assert apply_channel(t, ()) is t


def test_recording_conditions_keep_a_corpus_without_them_unchanged(engine, speaker):
    """The channel draws come after the others: channel_db = 0 keeps every variation (and so
    the bytes of corpora built before the option); > 0 changes only the channel."""
    plain = Variation.sample(np.random.default_rng(3))
    assert Variation.sample(np.random.default_rng(3), (30.0, 45.0), 0.0) == plain
    with_channel = Variation.sample(np.random.default_rng(3), (30.0, 45.0), 10.0)
    assert dataclasses.replace(with_channel, channel=()) == plain
    assert len(with_channel.channel) == 3
    assert sum(abs(a) for a, _, _ in with_channel.channel) <= 10.0
    engine.reset()  # as the builder does before every task
    a = synthesize_utterance(engine, "a red star", speaker, plain, np.random.default_rng(0))
    engine.reset()
    b = synthesize_utterance(engine, "a red star", speaker, with_channel, np.random.default_rng(0))
    assert len(a.audio) == len(b.audio) and not np.array_equal(a.audio, b.audio)


@pytest.mark.parametrize(
    "field, message", [({"snr_db": (30.0, 10.0)}, "snr_db"), ({"channel_db": -1.0}, "channel_db")]
)
def test_bad_recording_conditions_are_named(field, message):
    with pytest.raises(ValueError, match=message):
        corpus.CorpusSettings(**field)
