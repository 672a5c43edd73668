"""The spoken-scenes speech side: speakers, phones, espeak synthesis, recording conditions
and split generation (scenes and captions: test_scene_captions.py; the plan:
test_corpus_plan.py; the TFDS build: test_build.py)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastvgs_jax.data.spoken_scenes import captions, corpus, phones, sentences, speakers
from fastvgs_jax.data.spoken_scenes.espeak import Espeak
from fastvgs_jax.data.spoken_scenes.speech import SAMPLE_RATE, Variation, synthesize_utterance
from tests.data.test_scene_captions import SHAPE_OF, _plural

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
