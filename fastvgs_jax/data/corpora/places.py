"""Places Audio Captions in its published layout (about 400,000 spoken captions of Places205).

A split is a JSON manifest (``train_2020.json``, ``dev_seen_2020.json``, … under ``ROOT``, or a
path): ``{"audio_base_path": …, "image_base_path": …, "data": [{"wav": "wavs/…wav", "image":
"a/abbey/….jpg", "uttid": …, "speaker": …, "asr_text": …}, …]}``. The base paths in the file
are the authors' machines; ``audio_root`` / ``image_root`` replace them when set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from etils import epath

from fastvgs_jax.data.corpora.index import CorpusError, Entry, Problem


def manifest_path(root: str, split: str) -> str:
    if split.endswith(".json"):
        return split if "/" in split else str(epath.Path(root) / split)
    return str(epath.Path(root) / f"{split}.json")


def rows(root: str, audio_root: str, image_root: str, split: str) -> Iterator[Entry | Problem]:
    """Every caption of the manifest, paths resolved against the chosen base folders."""
    path = manifest_path(root, split)
    try:
        manifest = json.loads(epath.Path(path).read_text())
    except FileNotFoundError as error:
        raise CorpusError(
            f"no Places manifest {path}; data.corpora.places.root must hold <split>.json"
        ) from error
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path} is not valid JSON ({error})") from error
    data = manifest.get("data") if isinstance(manifest, dict) else None
    if not isinstance(data, list):
        raise CorpusError(f'{path}: expected {{"data": [...]}} at the top level')
    audio_base = epath.Path(audio_root or manifest.get("audio_base_path") or root)
    image_base = epath.Path(image_root or manifest.get("image_base_path") or root)
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not item.get("wav") or not item.get("image"):
            yield Problem("malformed manifest entry", f"{path} data[{i}]")
            continue
        image = str(item["image"])
        yield Entry(
            utterance_id=str(item.get("uttid") or epath.Path(item["wav"]).stem),
            audio=str(audio_base / item["wav"]),
            text=str(item.get("asr_text", "")),
            speaker=str(item.get("speaker", "")),
            image=str(image_base / image),
            image_key=image.rsplit(".", 1)[0],
        )
