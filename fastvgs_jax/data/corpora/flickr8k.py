"""The Flickr8k Audio Caption Corpus in its published layout (40,000 captions, 8,000 images).

``ROOT`` is ``flickr_audio/``: ``wavs/<image stem>_<n>.wav``, ``wav2capt.txt`` (lines
``<wav> <image>.jpg #<n>``) and ``wav2spk.txt`` (lines ``<wav> <speaker>``). The split lists
and written captions come with Flickr8k itself (``TEXT_ROOT``, the ``Flickr8k_text`` folder):
``Flickr_8k.{train,dev,test}Images.txt`` (one image file name per line) and
``Flickr8k.token.txt`` (``<image>.jpg#<n>\\t<caption>``). Images are in ``IMAGE_ROOT``
(``Flicker8k_Dataset/``, as the archive spells it).
"""

from __future__ import annotations

from collections.abc import Iterator

from etils import epath

from fastvgs_jax.data.corpora.index import CorpusError, Entry, Problem

SPLITS = ("train", "dev", "test")


def _lines(path: epath.Path, what: str) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError as error:
        raise CorpusError(f"no Flickr8k {what} at {path}") from error


def rows(root: str, image_root: str, text_root: str, split: str) -> Iterator[Entry | Problem]:
    """Every spoken caption of the split's images, with its speaker and written caption."""
    if split not in SPLITS:
        raise CorpusError(f"unknown Flickr8k split {split!r}; expected one of {SPLITS}")
    audio_root, texts = epath.Path(root), epath.Path(text_root or root)
    images = set(_lines(texts / f"Flickr_8k.{split}Images.txt", f"{split} image list"))
    token_file = texts / "Flickr8k.token.txt"
    captions = {}
    if token_file.exists():
        for line in _lines(token_file, "captions"):
            key, _, text = line.partition("\t")
            captions[key] = text.strip()
    speakers = {}
    for line in _lines(audio_root / "wav2spk.txt", "speaker list"):
        wav, _, speaker = line.partition(" ")
        speakers[wav] = speaker.strip()
    wav2capt = audio_root / "wav2capt.txt"
    for number, line in enumerate(_lines(wav2capt, "caption list"), start=1):
        fields = line.split()
        if len(fields) != 3 or not fields[2].startswith("#"):
            yield Problem("malformed manifest entry", f"{wav2capt} line {number}")
            continue
        wav, image, caption_number = fields
        if image not in images:
            continue
        stem = epath.Path(image).stem
        yield Entry(
            utterance_id=epath.Path(wav).stem,
            audio=str(audio_root / "wavs" / wav),
            text=captions.get(f"{image}{caption_number}", ""),
            speaker=speakers.get(wav, ""),
            image=str(epath.Path(image_root or root) / image),
            image_key=stem,
        )
