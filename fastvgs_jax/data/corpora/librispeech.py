"""LibriSpeech in its published layout: read audiobooks, FLAC at 16 kHz.

``ROOT/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with one
``<speaker>-<chapter>.trans.txt`` per chapter (lines ``<utterance id> UPPER CASE TEXT``).
``ROOT`` is the ``LibriSpeech`` folder; a split is one subset (``dev-clean``) or several
joined by ``+`` or ``,`` (``train-clean-100+train-clean-360+train-other-500``: the 960 h).
"""

from __future__ import annotations

from collections.abc import Iterator

from etils import epath

from fastvgs_jax.data.corpora.index import CorpusError, Entry, Problem

SUBSETS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)


def subsets(split: str) -> list[str]:
    names = [name.strip() for name in split.replace(",", "+").split("+") if name.strip()]
    if not names:
        raise CorpusError(f"empty LibriSpeech split {split!r}; e.g. 'train-clean-100'")
    return names


def read_transcripts(path: epath.Path) -> dict[str, str]:
    transcripts = {}
    for line in path.read_text().splitlines():
        utterance_id, _, text = line.strip().partition(" ")
        if utterance_id:
            transcripts[utterance_id] = text.strip()
    return transcripts


def rows(root: str, split: str) -> Iterator[Entry | Problem]:
    """Every utterance of the split's subsets (sorted), with its transcript and speaker.

    A transcript line whose FLAC is missing is a Problem; a FLAC without a transcript line is
    kept with empty text (the audio-only pool and ABX do not read text).
    """
    base = epath.Path(root)
    for subset in subsets(split):
        folder = base / subset
        if not folder.is_dir():
            present = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
            raise CorpusError(
                f"no LibriSpeech subset folder {folder}; data.corpora.librispeech.root must be "
                f"the LibriSpeech folder (it holds: {present or 'nothing'})"
            )
        for chapter in sorted(folder.glob("*/*")):
            if not chapter.is_dir():
                continue
            speaker = chapter.parent.name
            stem = f"{speaker}-{chapter.name}"
            transcript = chapter / f"{stem}.trans.txt"
            texts = read_transcripts(transcript) if transcript.exists() else {}
            audio = {p.stem: p for p in chapter.glob("*.flac")}
            for utterance_id in sorted(set(texts) | set(audio)):
                if utterance_id not in audio:
                    yield Problem("missing audio", str(chapter / f"{utterance_id}.flac"))
                    continue
                yield Entry(
                    utterance_id=utterance_id,
                    audio=str(audio[utterance_id]),
                    text=texts.get(utterance_id, ""),
                    speaker=speaker,
                )
