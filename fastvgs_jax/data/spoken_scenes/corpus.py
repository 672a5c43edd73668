"""The whole corpus: settings and presets, a deterministic plan, and parallel generation.

Generation is two-stage. ``plan_split`` decides everything cheap and random in one process
(scenes, caption texts, speakers, per-utterance variation seeds); ``generate_split`` renders
and synthesises the plan in worker processes. Every random draw is seeded from
(corpus seed, split, item index), so the bytes never depend on the number of workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterator

import numpy as np

from fastvgs_jax.data.spoken_scenes import captions as captions_lib
from fastvgs_jax.data.spoken_scenes import scenes as scenes_lib
from fastvgs_jax.data.spoken_scenes import sentences as sentences_lib
from fastvgs_jax.data.spoken_scenes.speakers import Speaker, make_speakers

IMAGE_SPLITS = ("train", "validation", "test")
AUDIO_SPLITS = ("audio_only", "abx")
SPLITS = IMAGE_SPLITS + AUDIO_SPLITS
_SPLIT_CODE = {name: k for k, name in enumerate(SPLITS)}


@dataclasses.dataclass(frozen=True)
class CorpusSettings:
    """Everything that determines the corpus bytes. Field comments give the knob's effect."""

    seed: int = 0
    # Images per split; test captions are spoken by held-out speakers only.
    num_train_images: int = 800
    num_validation_images: int = 100
    num_test_images: int = 100
    captions_per_image: int = 5
    image_size: int = 64  # pixels per side
    # Scene difficulty.
    min_objects: int = 1
    max_objects: int = 4  # up to 4
    repeat_probability: float = 0.25  # chance an object repeats a shape+colour: counts matter
    near_duplicate_fraction: float = 0.3  # images that differ from the previous in one detail
    num_shapes: int = 9  # vocabulary size: first N of scenes.SHAPES
    num_colours: int = 12  # first N of scenes.COLOURS
    num_sizes: int = 2
    num_patterns: int = 4
    # Speakers (each group has its own voices).
    num_train_speakers: int = 24
    num_heldout_speakers: int = 6
    num_pool_speakers: int = 10
    # Audio-only pool and ABX set.
    pool_utterances: int = 4000
    pool_max_clauses: int = 3  # pool sentences have 1..N clauses (longer than captions)
    abx_sentences: int = 40  # sentences read by every held-out speaker
    minimal_pair_rate: float = 0.5  # share of nouns drawn from minimal-pair families
    # Recording conditions per utterance: white-noise SNR range (dB) and the peak gain (dB) of
    # a random smooth channel EQ (0: none). Same-speaker tokens then differ by more than
    # prosody, as in real recordings; features that ignore the channel gain on ABX.
    snr_db: tuple[float, float] = (30.0, 45.0)
    channel_db: float = 0.0

    def __post_init__(self):
        if self.captions_per_image < 1:
            raise ValueError("captions_per_image must be >= 1")
        if min(self.num_train_images, self.num_validation_images, self.num_test_images) < 1:
            raise ValueError("every image split needs at least one image")
        if self.image_size < 64:
            raise ValueError(f"image_size must be >= 64, got {self.image_size}")
        if not 0.0 <= self.near_duplicate_fraction <= 1.0:
            raise ValueError("near_duplicate_fraction must be in [0, 1]")
        if len(self.snr_db) != 2 or not self.snr_db[0] <= self.snr_db[1]:
            raise ValueError(f"snr_db must be a (low, high) range in dB, got {self.snr_db}")
        if not self.channel_db >= 0:
            raise ValueError(f"channel_db must be >= 0, got {self.channel_db}")
        self.vocabulary()  # validates the vocabulary sizes

    def vocabulary(self) -> scenes_lib.SceneVocabulary:
        return scenes_lib.SceneVocabulary(
            shapes=scenes_lib.SHAPES[: self.num_shapes],
            colours=scenes_lib.COLOURS[: self.num_colours],
            sizes=scenes_lib.SIZES[: self.num_sizes],
            patterns=scenes_lib.PATTERNS[: self.num_patterns],
        )

    def num_images(self, split: str) -> int:
        return {
            "train": self.num_train_images,
            "validation": self.num_validation_images,
            "test": self.num_test_images,
        }[split]

    def first_image_id(self, split: str) -> int:
        """Image ids run across the image splits in order, so they never collide."""
        return sum(self.num_images(s) for s in IMAGE_SPLITS[: IMAGE_SPLITS.index(split)])

    def num_examples(self, split: str) -> int:
        if split in IMAGE_SPLITS:
            return self.num_images(split) * self.captions_per_image
        return {
            "audio_only": self.pool_utterances,
            "abx": self.abx_sentences * self.num_heldout_speakers,
        }[split]


PRESETS: dict[str, CorpusSettings] = {
    "tiny": CorpusSettings(
        num_train_images=12,
        num_validation_images=4,
        num_test_images=4,
        num_train_speakers=4,
        num_heldout_speakers=2,
        num_pool_speakers=2,
        pool_utterances=16,
        pool_max_clauses=2,
        abx_sentences=10,
        minimal_pair_rate=0.8,
    ),
    # The CPU demo's corpus: easy enough that a 2 M-parameter model trained from scratch for a
    # few hundred steps leaves retrieval chance (the defaults kept it at chance for 600 steps):
    # one or two objects, no near-duplicates or repeats, 6 shapes × 6 colours, no patterns.
    # Every voice variant in use (52 + 6 + 10 = 68): the most speaker variety for training.
    # Harder recording conditions (15-30 dB noise, a per-utterance channel EQ of up to 12 dB):
    # with the defaults' clean 30-45 dB speech the ABX set sat at its floor, where random
    # projections of log-mel beat every trained layer within speaker (docs/demo_design.md).
    "small": CorpusSettings(
        num_train_speakers=52,
        snr_db=(15.0, 30.0),
        channel_db=12.0,
        max_objects=2,
        repeat_probability=0.0,
        near_duplicate_fraction=0.0,
        num_shapes=6,
        num_colours=6,
        num_patterns=1,
    ),
    "large": CorpusSettings(
        num_train_images=10_000,
        num_validation_images=500,
        num_test_images=1_000,
        num_train_speakers=40,
        num_heldout_speakers=10,
        num_pool_speakers=18,  # 68 voice variants in all
        pool_utterances=50_000,
        abx_sentences=100,
    ),
}


def preset(name: str, seed: int = 0) -> CorpusSettings:
    """The named size preset with ``seed``.

    Raises:
      ValueError: naming the known presets, for an unknown name.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown corpus preset {name!r}; choose one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], seed=seed)


@dataclasses.dataclass(frozen=True)
class UtteranceTask:
    utterance_id: str
    text: str
    speaker: Speaker
    seed: tuple[int, ...]  # seeds the variation and the noise
    snr_db: tuple[float, float]  # the corpus's recording conditions (CorpusSettings)
    channel_db: float


def _recording(settings: CorpusSettings) -> dict:
    """The UtteranceTask fields that carry the corpus's recording conditions to a worker."""
    return {"snr_db": settings.snr_db, "channel_db": settings.channel_db}


@dataclasses.dataclass(frozen=True)
class ImageTask:
    """One image and all its spoken captions: rendered once, spoken once per caption."""

    image_id: int
    scene: scenes_lib.Scene
    image_seed: tuple[int, ...]
    captions: tuple[UtteranceTask, ...]


def _rng(settings: CorpusSettings, split: str, *path: int) -> np.random.Generator:
    return np.random.default_rng([settings.seed, _SPLIT_CODE[split], *path])


def plan_split(settings: CorpusSettings, split: str) -> list[ImageTask] | list[UtteranceTask]:
    """Everything random about ``split`` except the audio noise and pixel noise."""
    speakers = make_speakers(
        settings.seed,
        settings.num_train_speakers,
        settings.num_heldout_speakers,
        settings.num_pool_speakers,
    )
    if split in IMAGE_SPLITS:
        return _plan_images(settings, split, speakers)
    if split == "audio_only":
        rng = _rng(settings, split)
        return [
            UtteranceTask(
                utterance_id=f"pool-{k:06d}",
                text=sentences_lib.sample_sentence(
                    rng,
                    settings.minimal_pair_rate,
                    clauses=int(rng.integers(1, settings.pool_max_clauses + 1)),
                ),
                speaker=speakers["pool"][int(rng.integers(len(speakers["pool"])))],
                seed=(settings.seed, _SPLIT_CODE[split], k),
                **_recording(settings),
            )
            for k in range(settings.pool_utterances)
        ]
    if split == "abx":
        rng = _rng(settings, split)
        texts = [
            sentences_lib.sample_sentence(rng, settings.minimal_pair_rate, clauses=1)
            for _ in range(settings.abx_sentences)
        ]
        return [
            UtteranceTask(
                utterance_id=f"abx-{speaker.speaker_id}-{k:04d}",
                text=text,
                speaker=speaker,
                seed=(settings.seed, _SPLIT_CODE[split], s, k),
                **_recording(settings),
            )
            for s, speaker in enumerate(speakers["heldout"])
            for k, text in enumerate(texts)
        ]
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def _plan_images(settings, split, speakers) -> list[ImageTask]:
    voices = speakers["heldout"] if split == "test" else speakers["train"]
    vocabulary = settings.vocabulary()
    rng = _rng(settings, split)
    tasks = []
    previous = None
    for k in range(settings.num_images(split)):
        if previous is not None and rng.random() < settings.near_duplicate_fraction:
            scene = scenes_lib.near_duplicate(rng, previous, vocabulary)
        else:
            scene = scenes_lib.sample_scene(
                rng,
                vocabulary,
                settings.min_objects,
                settings.max_objects,
                settings.repeat_probability,
            )
        previous = scene
        image_id = settings.first_image_id(split) + k
        texts = captions_lib.caption_scene(scene, rng, settings.captions_per_image)
        caption_tasks = tuple(
            UtteranceTask(
                utterance_id=f"img{image_id:06d}-cap{c}",
                text=text,
                speaker=voices[int(rng.integers(len(voices)))],
                seed=(settings.seed, _SPLIT_CODE[split], k, c),
                **_recording(settings),
            )
            for c, (text, _) in enumerate(texts)
        )
        tasks.append(
            ImageTask(image_id, scene, (settings.seed, _SPLIT_CODE[split], k), caption_tasks)
        )
    return tasks


# ---- workers -------------------------------------------------------------------------------

# Per worker process: libespeak-ng is process-global anyway, so each worker owns one engine.
_WORKER: dict = {}


def _init_worker(image_size: int) -> None:
    from fastvgs_jax.data.spoken_scenes.espeak import Espeak

    if "engine" not in _WORKER:  # in-process (one worker) runs reuse the engine
        _WORKER["engine"] = Espeak()
    _WORKER["image_size"] = image_size


def _speak(task: UtteranceTask) -> dict:
    from fastvgs_jax.data.spoken_scenes.speech import Variation, synthesize_utterance

    rng = np.random.default_rng(task.seed)
    variation = Variation.sample(rng, task.snr_db, task.channel_db)
    utterance = synthesize_utterance(_WORKER["engine"], task.text, task.speaker, variation, rng)
    return {
        "utterance_id": task.utterance_id,
        "text": task.text,
        "speaker": task.speaker.speaker_id,
        "audio": utterance.audio,
        "phone_ids": utterance.phone_ids,
        "phone_starts": utterance.phone_starts,
        "phone_ends": utterance.phone_ends,
    }


def _run_task(task: ImageTask | UtteranceTask) -> list[dict]:
    # Every task starts from a fresh synthesiser, so its bytes do not depend on which worker
    # ran it or what that worker spoke before.
    _WORKER["engine"].reset()
    if isinstance(task, UtteranceTask):
        return [dict(_speak(task), image_id=-1, scene="")]
    from fastvgs_jax.data.spoken_scenes.render import render_scene

    image_rng = np.random.default_rng(task.image_seed)
    image = render_scene(task.scene, _WORKER["image_size"], image_rng)
    scene_json = json.dumps(task.scene.to_json_dict(), sort_keys=True)
    return [
        dict(_speak(caption), image_id=task.image_id, scene=scene_json, image=image)
        for caption in task.captions
    ]


class Workers:
    """A pool of synthesis processes, reused across splits (starting one costs ~1 s)."""

    def __init__(self, image_size: int, num_workers: int | None = None):
        self.num_workers = num_workers or os.cpu_count() or 1
        self._image_size = image_size
        self._pool = None

    def map(self, tasks) -> Iterator[list[dict]]:
        if self.num_workers == 1:
            _init_worker(self._image_size)
            return map(_run_task, tasks)
        if self._pool is None:
            # spawn: the parent may hold threads (TFDS, JAX) that fork would copy mid-lock.
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(
                self.num_workers, initializer=_init_worker, initargs=(self._image_size,)
            )
        return self._pool.imap(_run_task, tasks, chunksize=4)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def generate_split(settings: CorpusSettings, split: str, workers: Workers) -> Iterator[dict]:
    """Yields the examples of ``split`` in plan order (identical for any worker count).

    Audio-only examples carry an all-zero image and ``image_id == -1``.
    """
    blank = np.zeros((settings.image_size, settings.image_size, 3), np.uint8)
    for examples in workers.map(plan_split(settings, split)):
        for example in examples:
            example.setdefault("image", blank)
            yield example


def example_digest(example: dict) -> bytes:
    """A canonical hash of one example's content (independent of storage format)."""
    h = hashlib.sha256()
    for key in sorted(example):
        value = example[key]
        h.update(key.encode())
        if isinstance(value, np.ndarray):
            h.update(str(value.dtype).encode() + str(value.shape).encode())
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(repr(value).encode())
    return h.digest()
