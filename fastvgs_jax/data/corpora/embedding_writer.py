"""A split's images embedded batch by batch and written as one region-features HDF5 file.

The writing half of ``image_embeddings`` (whose docstring has the layout): images are decoded a
few batches ahead on threads, each batch goes through an ``embed`` function (the frozen ViT), and
the tokens are written with the boxes of the crop or patch each one stands for.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator

import h5py
import numpy as np
from tqdm.auto import tqdm

from fastvgs_jax.data.corpora import decode, regions
from fastvgs_jax.data.corpora.index import CorpusError

EMBEDDING_VERSION = 1  # bump when the layout or the embedding changes: caches are then rebuilt
PREFETCH_BATCHES = 4  # decoded batches kept ahead of the ViT


def token_boxes(grid: int, tokens: str) -> np.ndarray:
    """float32 [R, 4]: [0, 0, 1, 1] for the pooled embedding or CLS, then (``tokens="all"``)
    each patch's x1, y1, x2, y2 in row-major order (the order of the ViT's patch tokens)."""
    whole = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
    if tokens == "pooled":
        return whole
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    patches = np.stack([cols, rows, cols + 1, rows + 1], axis=1).astype(np.float32) / grid
    return np.concatenate([whole, patches])


def _decoded(
    images: list[tuple[str, str]], size: int, threads: int, window: int, where: str
) -> Iterator[np.ndarray]:
    """The images decoded to ``size`` (in order), at most ``window`` read ahead by ``threads``."""

    def read(path: str) -> np.ndarray:
        try:
            return decode.read_image(path, size)
        except decode.DecodeError as error:
            raise CorpusError(
                f"{where}: {error}; the file changed since the index was built (delete the index"
                " folder to check the corpus again)"
            ) from error

    pool = concurrent.futures.ThreadPoolExecutor(max(1, threads))
    pending: collections.deque = collections.deque()
    paths = iter(path for _, path in images)
    try:
        for path in paths:
            pending.append(pool.submit(read, path))
            if len(pending) >= window:
                break
        while pending:
            image = pending.popleft().result()
            path = next(paths, None)
            if path is not None:
                pending.append(pool.submit(read, path))
            yield image
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _batches(items: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def write_embeddings(
    staging: str,
    images: list[tuple[str, str]],
    embed: Callable[[np.ndarray], np.ndarray],
    settings,
    tokens: str,
    batch_size: int,
    threads: int,
    progress: bool,
    attrs: dict,
    start: float,
) -> None:
    """Writes the embeddings of ``images`` (``(image_key, path)``, in order) to ``staging``.

    ``embed`` maps uint8 [n, S, S, 3] to float32 [n, R, D]; ``attrs`` are the provenance
    attributes; ``seconds`` counts from ``start`` (``time.perf_counter``).
    """
    where = f"{attrs['corpus']}/{attrs['split']}"
    boxes = token_boxes(settings.grid, tokens)
    n, r, d, s = len(images), len(boxes), settings.hidden_size, settings.image_size
    with h5py.File(staging, "w") as f:
        f.create_dataset("image_ids", data=[key for key, _ in images], dtype=h5py.string_dtype())
        features = f.create_dataset("features", (n, r, d), "float32", chunks=(1, r, d))
        f.create_dataset("boxes", data=np.broadcast_to(boxes, (n, r, 4)), chunks=(1, r, 4))
        f.create_dataset("num_boxes", data=np.full(n, r, np.int32))
        f.create_dataset("image_hw", data=np.full((n, 2), s, np.int32))
        window = PREFETCH_BATCHES * batch_size
        reading = _decoded(images, s, threads, window, where)
        bar = tqdm(total=n, desc=f"embedding {where}", disable=not progress, leave=False)
        done = 0
        with contextlib.closing(reading) as decoded, bar:  # closing: stop the readers on error
            for batch in _batches(decoded, batch_size):
                out = np.asarray(embed(batch), np.float32)
                if out.shape != (len(batch), r, d):
                    raise ValueError(f"embedder gave {out.shape}; expected {(len(batch), r, d)}")
                features[done : done + len(batch)] = out
                done += len(batch)
                bar.update(len(batch))
        f.attrs["format"] = regions.HDF5_FORMAT
        f.attrs["version"] = regions.HDF5_VERSION
        f.attrs["embedding_version"] = EMBEDDING_VERSION
        f.attrs["rows"] = done
        f.attrs.update(attrs)
        f.attrs["seconds"] = round(time.perf_counter() - start, 3)
