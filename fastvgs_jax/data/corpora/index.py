"""A corpus split's index: its utterances as file paths and labels, checked once, cached.

A layout reader (``spokencoco``, ``librispeech``, …) turns a corpus's published files into
``Entry`` rows (and ``Problem`` rows for what it cannot parse). ``build_index`` checks every
entry's files (audio header: exists, decodable, 16 kHz, not empty; image header; caption
text), applies the bad-data policy (``fail``: an error naming the files and counts, nothing
written; ``skip``: the bad ones left out and counted in the index manifest) and writes the
index atomically (a temporary folder renamed into place), so an interrupted build leaves
nothing half-built. Later runs read the cached index instead of walking the corpus again.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator

from etils import epath
from tqdm.auto import tqdm

from fastvgs_jax.data.corpora import decode

INDEX_VERSION = 1  # bump when Entry or the checks change: cached indexes are then rebuilt
POLICIES = ("fail", "skip")
EXAMPLES_PER_PROBLEM = 10  # file names quoted per problem kind in reports


class CorpusError(RuntimeError):
    """A corpus is missing, malformed, or holds bad examples under the ``fail`` policy."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One utterance: where its files are and what it says.

    ``image_key`` is the image's own name in the corpus (a COCO number, a Flickr8k or Places
    file stem): region features are looked up by it. ``image_id`` is the integer retrieval
    uses to tell images apart (-1 for audio-only corpora). ``num_samples`` is filled in by the
    check (-1 before).
    """

    utterance_id: str
    audio: str
    text: str = ""
    speaker: str = ""
    image: str = ""
    image_key: str = ""
    image_id: int = -1
    num_samples: int = -1


@dataclasses.dataclass(frozen=True)
class Problem:
    """A bad example: what is wrong (``kind``) and the file or manifest entry (``where``)."""

    kind: str
    where: str


@dataclasses.dataclass
class CorpusIndex:
    """A checked split: its entries and the manifest (counts, skipped, settings)."""

    corpus: str
    split: str
    entries: list[Entry]
    manifest: dict
    path: str = ""

    def __len__(self) -> int:
        return len(self.entries)


def check_entry(entry: Entry, needs_text: bool, sample_rate: int) -> Entry | Problem:
    """``entry`` with ``num_samples`` filled in, or the first Problem found with its files."""
    if needs_text and not entry.text.strip():
        return Problem("empty caption", entry.audio)
    try:
        rate, samples = decode.audio_info(entry.audio)
    except decode.DecodeError as error:
        kind = "missing audio" if "missing file" in str(error) else "unreadable audio"
        return Problem(kind, entry.audio)
    if rate != sample_rate:
        return Problem(f"wrong sample rate ({rate} Hz)", entry.audio)
    if samples == 0:
        return Problem("empty audio", entry.audio)
    if entry.image:
        try:
            decode.check_image(entry.image)
        except decode.DecodeError as error:
            kind = "missing image" if "missing file" in str(error) else "unreadable image"
            return Problem(kind, entry.image)
    return dataclasses.replace(entry, num_samples=samples)


def summarize_problems(problems: Iterable[Problem]) -> dict[str, dict]:
    """``{kind: {"count": n, "examples": [first files]}}``, kinds sorted."""
    grouped: dict[str, list[str]] = collections.defaultdict(list)
    for problem in problems:
        grouped[problem.kind].append(problem.where)
    return {
        kind: {"count": len(where), "examples": where[:EXAMPLES_PER_PROBLEM]}
        for kind, where in sorted(grouped.items())
    }


def format_problems(summary: dict[str, dict]) -> str:
    lines = []
    for kind, info in summary.items():
        more = info["count"] - len(info["examples"])
        tail = f", … and {more} more" if more > 0 else ""
        lines.append(f"  {kind}: {info['count']} ({', '.join(info['examples'])}{tail})")
    return "\n".join(lines)


def _assign_image_ids(entries: list[Entry]) -> list[Entry]:
    """Integer ids for images the reader could not number: sorted image keys, enumerated."""
    if not any(e.image and e.image_id < 0 for e in entries):
        return entries
    keys = sorted({e.image_key for e in entries if e.image})
    ids = {key: i for i, key in enumerate(keys)}
    return [dataclasses.replace(e, image_id=ids[e.image_key]) if e.image else e for e in entries]


def cache_key(settings: dict) -> str:
    blob = json.dumps({**settings, "index_version": INDEX_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def index_path(index_dir: str, corpus: str, split: str, settings: dict) -> str:
    slug = split.replace("/", "_").replace("+", "_").replace(",", "_")
    return os.path.join(index_dir, corpus, f"{slug}-{cache_key(settings)}")


def _write_atomically(path: str, entries: list[Entry], manifest: dict) -> None:
    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.incomplete-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        with (staging / "entries.jsonl").open("w") as f:
            for entry in entries:
                f.write(json.dumps(dataclasses.asdict(entry), ensure_ascii=False) + "\n")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
        if target.exists():  # a concurrent build finished first: keep that one
            staging.rmtree()
            return
        staging.rename(target)
    except BaseException:
        if staging.exists():
            staging.rmtree()
        raise


def load_index(path: str, corpus: str, split: str) -> CorpusIndex | None:
    """The index cached at ``path`` (None when there is none or it is unreadable).

    Read once per process: a run opens each stream at every phase, and SpokenCOCO's 600k
    entries take seconds to parse (an index folder's content never changes: its name is the
    hash of what built it).
    """
    try:
        return _read_index(path, corpus, split)
    except (FileNotFoundError, json.JSONDecodeError, TypeError, ValueError, OSError):
        return None  # not cached by lru_cache: a rebuilt index is read next time


@functools.lru_cache(maxsize=8)
def _read_index(path: str, corpus: str, split: str) -> CorpusIndex:
    root = epath.Path(path)
    manifest = json.loads((root / "manifest.json").read_text())
    with (root / "entries.jsonl").open() as f:
        entries = [Entry(**json.loads(line)) for line in f if line.strip()]
    if len(entries) != manifest.get("examples"):
        raise ValueError(f"{path}: {len(entries)} entries, manifest says {manifest['examples']}")
    return CorpusIndex(corpus, split, entries, manifest, path)


def build_index(
    corpus: str,
    split: str,
    rows: Callable[[], Iterator[Entry | Problem]],
    *,
    settings: dict,
    index_dir: str,
    on_bad: str = "fail",
    needs_text: bool = False,
    sample_rate: int = decode.SAMPLE_RATE,
    threads: int = 16,
    progress: bool = True,
) -> CorpusIndex:
    """The checked index of one split, read from the cache or built (and cached) now.

    Args:
      rows: yields the layout reader's entries and parse problems.
      settings: what identifies this index (corpus paths, split, reader options); its hash
        names the cache folder, so changing a path or option builds a new index.
      on_bad: ``fail`` raises on any bad example; ``skip`` leaves them out, counted.
      threads: concurrent header reads (I/O bound: local disks and buckets both gain).
    Raises:
      CorpusError: bad examples under ``fail`` (the report names kinds, counts and files),
        or no usable example at all.
    """
    if on_bad not in POLICIES:
        raise ValueError(f"bad-example policy {on_bad!r}; expected one of {POLICIES}")
    path = index_path(index_dir, corpus, split, settings)
    cached = load_index(path, corpus, split)
    if cached is not None:
        return cached
    if epath.Path(path).exists():  # unreadable (truncated by hand, a full disk): rebuild it
        epath.Path(path).rmtree()
    start = time.perf_counter()
    parsed = list(rows())
    candidates = [row for row in parsed if isinstance(row, Entry)]
    problems = [row for row in parsed if isinstance(row, Problem)]
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        checked = list(
            tqdm(
                pool.map(lambda e: check_entry(e, needs_text, sample_rate), candidates),
                total=len(candidates),
                desc=f"checking {corpus}/{split}",
                disable=not progress,
                leave=False,
            )
        )
    entries = [row for row in checked if isinstance(row, Entry)]
    problems += [row for row in checked if isinstance(row, Problem)]
    summary = summarize_problems(problems)
    if problems and on_bad == "fail":
        raise CorpusError(
            f"{corpus}/{split}: {len(problems)} bad examples of {len(parsed)} "
            f"(data.on_bad_examples='fail'; set it to 'skip' to leave them out):\n"
            + format_problems(summary)
        )
    if not entries:
        raise CorpusError(
            f"{corpus}/{split}: no usable example"
            + (f"; {len(problems)} bad:\n{format_problems(summary)}" if problems else "")
        )
    entries = _assign_image_ids(entries)
    manifest = {
        "corpus": corpus,
        "split": split,
        "settings": settings,
        "index_version": INDEX_VERSION,
        "examples": len(entries),
        "skipped": len(problems),
        "problems": summary,
        "images": len({e.image_id for e in entries if e.image}),
        "speakers": len({e.speaker for e in entries}),
        "audio_hours": sum(e.num_samples for e in entries) / sample_rate / 3600,
        "seconds_to_build": round(time.perf_counter() - start, 3),
    }
    _write_atomically(path, entries, manifest)
    return CorpusIndex(corpus, split, entries, manifest, path)
