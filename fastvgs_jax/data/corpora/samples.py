"""Sample corpora in the real corpora's exact published layouts, made of synthetic files.

The tests read them (tiny), benchmarks/data_pipeline.py times the readers on bigger ones, and
a user can try the readers and the pipelines before pointing them at the real data. File
names, JSON keys, text formats and encodings (16 kHz int16 wav, FLAC) follow docs/corpora.md.
The speech is a sequence of tones, one pitch per "phone" (``repeat`` reads a sentence that many
times: longer utterances), so that an ABX item file over it has a right answer.
"""

from __future__ import annotations

import json
import os

import numpy as np
import soundfile
from PIL import Image

RATE = 16_000
PHONE_HZ = {"AA": 300.0, "IY": 700.0, "S": 1500.0, "T": 2300.0}
PHONE_SECONDS = 0.12


def speech(
    phones: list[str], speaker: int, seed: int, rate: int = RATE, repeat: int = 1
) -> np.ndarray:
    """int16 tones, one PHONE_SECONDS segment per phone; the speaker shifts every pitch."""
    phones = list(phones) * repeat
    rng = np.random.default_rng(seed)
    t = np.arange(round(PHONE_SECONDS * rate)) / rate
    parts = [0.3 * np.sin(2 * np.pi * PHONE_HZ[p] * (1 + 0.05 * speaker) * t) for p in phones]
    wave = np.concatenate(parts) + 0.01 * rng.standard_normal(len(parts) * len(t))
    return np.round(wave * 32767).astype(np.int16)


def write_audio(path: str, samples: np.ndarray, rate: int = RATE) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    subtype = "PCM_16"
    soundfile.write(path, samples, rate, subtype=subtype, format=path.rsplit(".", 1)[1].upper())


def write_jpeg(path: str, seed: int, size: tuple[int, int] = (48, 36)) -> np.ndarray:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=95)
    return pixels


SENTENCES = (["AA", "S", "IY", "T", "AA"], ["T", "IY", "S", "AA", "T"], ["S", "AA", "T", "IY"])


def make_spokencoco(
    root: str,
    coco_root: str,
    split: str = "test_karpathy",
    images: int = 2,
    captions: int = 2,
    *,
    repeat: int = 1,
    image_size: tuple[int, int] = (48, 36),
) -> dict:
    """``root/SpokenCOCO_<split>.json`` + ``root/wavs/...`` and ``coco_root/val2014/*.jpg``.

    Returns ``{"json": path, "wavs": {uttid: samples}, "image_ids": [...]}``.
    """
    data, wavs, image_ids = [], {}, []
    folder = "train" if split.startswith("train") else "val"
    for i in range(images):
        coco_id = 42 + 1000 * i
        image = f"val2014/COCO_val2014_{coco_id:012d}.jpg"
        write_jpeg(os.path.join(coco_root, image), seed=i, size=image_size)
        entries = []
        for j in range(captions):
            speaker = f"m{j}speaker{i % 2}"
            uttid = f"{speaker}-3ABCDEF_{coco_id}_{100 + j}"
            wav = f"wavs/{folder}/{i}/{uttid}.wav"
            samples = speech(SENTENCES[(i + j) % 3], speaker=j, seed=10 * i + j, repeat=repeat)
            write_audio(os.path.join(root, wav), samples)
            wavs[uttid] = samples
            entries.append(
                {
                    "text": f"A PICTURE NUMBER {i} {j}",
                    "speaker": speaker,
                    "uttid": uttid,
                    "wav": wav,
                }
            )
        data.append({"image": image, "captions": entries})
        image_ids.append(coco_id)
    path = os.path.join(root, f"SpokenCOCO_{split}.json")
    os.makedirs(root, exist_ok=True)
    with open(path, "w") as f:
        json.dump({"data": data}, f)
    return {"json": path, "wavs": wavs, "image_ids": image_ids}


def make_librispeech(
    root: str, subset: str, speakers=(19, 26), chapters=1, utterances=3, *, repeat: int = 1
) -> dict:
    """``root/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` + trans.txt.

    Returns ``{"flacs": {utterance id: samples}, "phones": {utterance id: phone list}}``.
    """
    flacs, phones = {}, {}
    for s, speaker in enumerate(speakers):
        for chapter in range(198, 198 + chapters):
            folder = os.path.join(root, subset, str(speaker), str(chapter))
            lines = []
            for u in range(utterances):
                utterance_id = f"{speaker}-{chapter}-{u:04d}"
                sentence = SENTENCES[u % len(SENTENCES)]
                samples = speech(sentence, speaker=s, seed=100 * s + u, repeat=repeat)
                write_audio(os.path.join(folder, f"{utterance_id}.flac"), samples)
                flacs[utterance_id], phones[utterance_id] = samples, sentence * repeat
                lines.append(f"{utterance_id} WORDS OF UTTERANCE {u}")
            with open(os.path.join(folder, f"{speaker}-{chapter}.trans.txt"), "w") as f:
                f.write("\n".join(lines) + "\n")
    return {"flacs": flacs, "phones": phones}


def write_item_file(path: str, phones: dict[str, list[str]], speaker_of) -> int:
    """A Libri-light ``.item`` file over the tone utterances: one row per inner phone."""
    rows = ["#file onset offset #phone prev-phone next-phone speaker"]
    for utterance_id, sentence in sorted(phones.items()):
        for k in range(1, len(sentence) - 1):
            onset, offset = k * PHONE_SECONDS, (k + 1) * PHONE_SECONDS
            rows.append(
                f"{utterance_id} {onset:.4f} {offset:.4f} {sentence[k]} {sentence[k - 1]} "
                f"{sentence[k + 1]} {speaker_of(utterance_id)}"
            )
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    return len(rows) - 1


def make_flickr8k(root: str, image_root: str, text_root: str, images=("1000_a", "2000_b")):
    """flickr_audio/{wavs, wav2capt.txt, wav2spk.txt}, Flicker8k_Dataset/, Flickr8k_text/."""
    capt, spk, tokens = [], [], []
    for i, stem in enumerate(images):
        write_jpeg(os.path.join(image_root, f"{stem}.jpg"), seed=i)
        for n in range(2):
            wav = f"{stem}_{n}.wav"
            write_audio(os.path.join(root, "wavs", wav), speech(SENTENCES[n], n, seed=i + n))
            capt.append(f"{wav} {stem}.jpg #{n}")
            spk.append(f"{wav} {n + 1}")
            tokens.append(f"{stem}.jpg#{n}\tA dog number {i} runs .")
    os.makedirs(text_root, exist_ok=True)
    for name, lines in (("wav2capt.txt", capt), ("wav2spk.txt", spk)):
        with open(os.path.join(root, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    with open(os.path.join(text_root, "Flickr8k.token.txt"), "w") as f:
        f.write("\n".join(tokens) + "\n")
    for split, chosen in (("train", images[:1]), ("dev", ()), ("test", images[1:])):
        with open(os.path.join(text_root, f"Flickr_8k.{split}Images.txt"), "w") as f:
            f.write("".join(f"{stem}.jpg\n" for stem in chosen))


def make_places(root: str, audio_root: str, image_root: str, split: str = "dev_seen_2020"):
    """``root/<split>.json`` with the authors' base paths, wavs and images under the roots."""
    data = []
    for i, image in enumerate(("a/abbey/gsun_0001.jpg", "b/bakery/gsun_0002.jpg")):
        write_jpeg(os.path.join(image_root, image), seed=i)
        wav = f"wavs/{i}/utterance_{i}.wav"
        write_audio(os.path.join(audio_root, wav), speech(SENTENCES[i], i, seed=i))
        data.append(
            {
                "wav": wav,
                "image": image,
                "uttid": f"A{i}-GSUN{i}",
                "speaker": f"A{i}",
                "asr_text": f"an abbey number {i}",
            }
        )
    manifest = {
        "audio_base_path": "/data/sls/PlacesAudio/",
        "image_base_path": "/data/places/",
        "data": data,
    }
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, f"{split}.json"), "w") as f:
        json.dump(manifest, f)
