"""SpokenCOCO in its published layout: spoken captions of MSCOCO images.

``ROOT/SpokenCOCO_<split>.json`` (``train``, ``val``, or FaST-VGS's Karpathy splits
``train_karpathy``, ``val_karpathy``, ``test_karpathy``, and their ``*_unrolled_*`` forms) holds
``{"data": [{"image": "val2014/COCO_val2014_000000325114.jpg", "captions": [{"text",
"speaker", "uttid", "wav": "wavs/val/0/<uttid>.wav"}, …]}, …]}``; the unrolled forms have one
``"caption"`` per entry instead of a ``"captions"`` list. ``wav`` paths are relative to the
SpokenCOCO root, ``image`` paths to the MSCOCO image root (the folder holding ``train2014/``
and ``val2014/``). The image id is the COCO number in the file name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from etils import epath

from fastvgs_jax.data.corpora.index import CorpusError, Entry, Problem

_COCO_NUMBER = re.compile(r"(\d+)\.\w+$")


def json_path(root: str, split: str) -> str:
    """``split`` names the JSON (``test_karpathy`` → ``SpokenCOCO_test_karpathy.json``), or is
    a path to one."""
    if split.endswith(".json"):
        return split if "/" in split else str(epath.Path(root) / split)
    return str(epath.Path(root) / f"SpokenCOCO_{split}.json")


def read_json(path: str) -> dict:
    try:
        return json.loads(epath.Path(path).read_text())
    except FileNotFoundError as error:
        raise CorpusError(
            f"no SpokenCOCO split file {path}; data.corpora.spokencoco.root must be the folder "
            "holding SpokenCOCO_<split>.json (e.g. SpokenCOCO_test_karpathy.json)"
        ) from error
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path} is not valid JSON ({error})") from error


def image_key(image: str) -> str:
    """``val2014/COCO_val2014_000000325114.jpg`` → ``325114`` (the COCO image id)."""
    match = _COCO_NUMBER.search(image)
    return str(int(match.group(1))) if match else epath.Path(image).stem


def rows(root: str, image_root: str, split: str) -> Iterator[Entry | Problem]:
    """Every caption of the split as an Entry; malformed manifest entries as Problems."""
    path = json_path(root, split)
    manifest = read_json(path)
    data = manifest.get("data") if isinstance(manifest, dict) else None
    if not isinstance(data, list):
        raise CorpusError(f'{path}: expected {{"data": [...]}} at the top level')
    audio_root, images = epath.Path(root), epath.Path(image_root or root)
    for i, item in enumerate(data):
        where = f"{path} data[{i}]"
        image = item.get("image") if isinstance(item, dict) else None
        captions = item.get("captions", [item.get("caption")]) if image else None
        if not image or not isinstance(captions, list):
            yield Problem("malformed manifest entry", where)
            continue
        key = image_key(image)
        for j, caption in enumerate(captions):
            if not isinstance(caption, dict) or not caption.get("wav"):
                yield Problem("malformed manifest entry", f"{where} caption {j}")
                continue
            wav = caption["wav"]
            yield Entry(
                utterance_id=str(caption.get("uttid") or epath.Path(wav).stem),
                audio=str(audio_root / wav),
                text=str(caption.get("text", "")),
                speaker=str(caption.get("speaker", "")),
                image=str(images / image),
                image_key=key,
                image_id=int(key) if key.isdigit() else -1,
            )
