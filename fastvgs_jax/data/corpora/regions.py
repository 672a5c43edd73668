"""Precomputed detector region features (bottom-up-attention Faster R-CNN), keyed by image id.

FaST-VGS does not see pixels: its image side is the regions a Visual-Genome Faster R-CNN
(Anderson et al. 2018, "bottom-up attention") finds in each image, a pooled 2048-d feature and a
box per region, 36 per image. They are distributed as TSV files, one image a line. This module
serves ``(features, boxes)`` by image id from those files or from one HDF5 file:

* ``region_rows`` reads the TSVs (both column variants; its docstring has the format);
* ``region_convert`` converts them to one HDF5 file (its docstring has the layout), also from the
  command line: ``python -m fastvgs_jax.data.corpora.regions --tsv=a.tsv,b.tsv --out=f.h5``;
* :class:`RegionFeatures` (here) looks images up in either.

Their public names are importable from here too.

:class:`RegionFeatures` also reads the HDF5 files FaST-VGS's preprocessing writes (datasets
``img_id``, ``img_h``, ``img_w``, ``features``, ``boxes`` in pixels, ``objects_conf``).

What FaST-VGS does with these (datasets/spokencoco_dataset.py and
datasets/preprocessing/img_id2ordered_coco_places_flickr8k.py in its repository), and what
:class:`RegionFeatures` does by default too: it orders each image's regions by ``objects_conf``,
most confident first, keeps the first 36, and divides x1, x2 by the image width and y1, y2 by its
height.
"""

from __future__ import annotations

import os
import posixpath
import re
import sys
import threading
from collections.abc import Sequence

import h5py
import numpy as np
from etils import epath

from fastvgs_jax.data.corpora.region_convert import (
    HDF5_FORMAT,
    HDF5_VERSION,
    convert_tsv_to_hdf5,
    main,
)
from fastvgs_jax.data.corpora.region_rows import (
    BOX_TOLERANCE,
    BUTD_COLUMNS,
    LXMERT_COLUMNS,
    RegionFileError,
    RegionRow,
    normalise_boxes,
    parse_tsv_line,
    read_tsv_rows,
)
from fastvgs_jax.data.corpora.staging import is_local

__all__ = [
    "BOX_TOLERANCE",
    "BUTD_COLUMNS",
    "HDF5_FORMAT",
    "HDF5_VERSION",
    "LXMERT_COLUMNS",
    "NUM_REGIONS",
    "ORDERS",
    "RegionFeatures",
    "RegionFileError",
    "RegionRow",
    "convert_tsv_to_hdf5",
    "image_id_aliases",
    "main",
    "normalise_boxes",
    "parse_tsv_line",
    "read_tsv_rows",
]

NUM_REGIONS = 36  # regions per image in the published features and in FaST-VGS
ORDERS = ("confidence", "file")

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_COCO_NAME = re.compile(r"COCO_[A-Za-z]+\d*_(\d+)")


class _Handles:
    """One open file per thread (file objects and h5py handles are not shared across threads)."""

    def __init__(self, opener):
        self._opener = opener
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list = []

    def get(self, key=0):
        files = getattr(self._local, "files", None)
        if files is None:
            files = self._local.files = {}
        if key not in files:
            handle = self._opener(key)
            with self._lock:
                self._open.append(handle)
            files[key] = handle
        return files[key]

    def close(self) -> None:
        with self._lock:
            handles, self._open = self._open, []
        for handle in reversed(handles):
            handle.close()
        self._local = threading.local()


class _TsvSource:
    """Images of one or more TSVs, found through a byte-offset index built in one pass."""

    def __init__(self, paths: list[str]):
        self.paths = paths
        self.ids: list[str] = []
        self.places: list[tuple[int, int, int]] = []  # (file, byte offset, line number)
        first_seen: dict[str, str] = {}
        for file_index, path in enumerate(paths):
            offset = 0
            with epath.Path(path).open("rb") as f:
                for line_number, line in enumerate(f, start=1):
                    if line.strip(b"\r\n"):
                        where = f"{path}:{line_number}"
                        if not self.ids:
                            self.dim = parse_tsv_line(line, where).features.shape[1]
                        tab = line.find(b"\t")
                        if tab <= 0:
                            raise RegionFileError(f"{where}: no image id before a tab")
                        try:
                            image_id = line[:tab].decode("utf-8")
                        except UnicodeDecodeError:
                            raise RegionFileError(f"{where}: the image id is not UTF-8") from None
                        if image_id in first_seen:
                            raise RegionFileError(
                                f"{where}: image id {image_id!r} repeats {first_seen[image_id]}"
                            )
                        first_seen[image_id] = where
                        self.ids.append(image_id)
                        self.places.append((file_index, offset, line_number))
                    offset += len(line)
        if not self.ids:
            raise RegionFileError(f"no rows in {', '.join(paths)}")
        self.handles = _Handles(lambda key: epath.Path(self.paths[key]).open("rb"))

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "handles"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.handles = _Handles(lambda key: epath.Path(self.paths[key]).open("rb"))

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        file_index, offset, line_number = self.places[index]
        f = self.handles.get(file_index)
        f.seek(offset)
        where = f"{self.paths[file_index]}:{line_number}"
        row = parse_tsv_line(f.readline(), where)
        if row.image_id != self.ids[index]:
            raise RegionFileError(f"{where}: changed since it was indexed")
        if row.features.shape[1] != self.dim:
            raise RegionFileError(
                f"{where}: features are {row.features.shape[1]}-d; the first row's are {self.dim}-d"
            )
        boxes = normalise_boxes(row.boxes, row.image_h, row.image_w, where)
        return row.features, boxes, row.objects_conf

    def num_boxes(self, index: int) -> int:
        return int(self.read(index)[0].shape[0])

    def close(self) -> None:
        self.handles.close()


class _Hdf5Handle:
    def __init__(self, path: str):
        # Local files go through HDF5's own driver (faster); others through an epath file.
        self.raw = None if is_local(path) else epath.Path(path).open("rb")
        self.file = h5py.File(path if self.raw is None else self.raw, "r")

    def close(self) -> None:
        self.file.close()
        if self.raw is not None:
            self.raw.close()


class _Hdf5Source:
    """This module's layout, or the layout FaST-VGS's preprocessing writes."""

    def __init__(self, path: str):
        self.path = path
        self.handles = _Handles(lambda key: _Hdf5Handle(self.path))
        f = self.handles.get().file
        if "image_ids" in f:
            version = f.attrs.get("version", HDF5_VERSION)
            if f.attrs.get("format") != HDF5_FORMAT or version > HDF5_VERSION:
                raise RegionFileError(
                    f"{path}: format {f.attrs.get('format')!r} version {version}; this reader"
                    f" knows {HDF5_FORMAT!r} up to version {HDF5_VERSION}"
                )
            self.ids = list(f["image_ids"].asstr()[:])
            self.counts = np.asarray(f["num_boxes"][:], np.int64)
            self.pixels = None
        elif "img_id" in f:  # FaST-VGS: boxes in pixels, every image's full 36 stored
            self.ids = list(f["img_id"].asstr()[:])
            self.counts = np.full(len(self.ids), f["features"].shape[1], np.int64)
            self.pixels = np.stack([f["img_h"][:], f["img_w"][:]], axis=1)
        else:
            raise RegionFileError(
                f"{path}: neither this module's layout (image_ids, ...) nor FaST-VGS's (img_id,"
                f" ...); it holds {sorted(f)}"
            )
        self.dim = int(f["features"].shape[2])
        self.has_conf = "objects_conf" in f

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "handles"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.handles = _Handles(lambda key: _Hdf5Handle(self.path))

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        f = self.handles.get().file
        n = int(self.counts[index])
        features = np.asarray(f["features"][index, :n], np.float32)
        boxes = np.asarray(f["boxes"][index, :n], np.float32)
        conf = np.asarray(f["objects_conf"][index, :n], np.float32) if self.has_conf else None
        if self.pixels is not None:
            height, width = (int(v) for v in self.pixels[index])
            boxes = normalise_boxes(boxes, height, width, f"{self.path} image {self.ids[index]}")
        return features, boxes, conf

    def num_boxes(self, index: int) -> int:
        return int(self.counts[index])

    def close(self) -> None:
        self.handles.close()


def image_id_aliases(image_id: str) -> list[str]:
    """Other names an image may be looked up by: without its extension, its file stem, and a
    COCO file's image number (the keys the corpus readers give images).

    ``COCO_val2014_000000325114`` -> ``325114``; ``l/laundromat/gsun_ab.jpg`` ->
    ``l/laundromat/gsun_ab`` and ``gsun_ab``.
    """
    stem = posixpath.splitext(posixpath.basename(image_id))[0]
    aliases = [posixpath.splitext(image_id)[0], stem]
    coco = _COCO_NAME.fullmatch(stem)
    if coco:
        aliases.append(str(int(coco.group(1))))
    return [a for a in dict.fromkeys(aliases) if a and a != image_id]


class RegionFeatures:
    """Random access to region features by image id, over an HDF5 file or TSVs.

    ``path`` is an HDF5 file (this module's layout or FaST-VGS's, told apart by its signature,
    not its name) or one or more TSVs (a sequence of paths), local or ``gs://``. A TSV is read
    once when the reader is made, to index its rows' byte offsets; each lookup then reads one
    line. Lookups are safe from several threads: each thread opens its own file handles. The
    reader pickles without its handles (worker processes reopen the files).

    ``reader[image_id]`` is ``(features [num_regions, D] float32, boxes [num_regions, 4]
    float32)``, boxes as x1, y1, x2, y2 divided by the image's width and height. With
    ``order="confidence"`` (FaST-VGS's order) regions are sorted by ``objects_conf``, most
    confident first (a stable sort; 6-column TSV rows have no confidences and keep file order);
    with ``order="file"`` they stay as stored. The first ``num_regions`` are kept, and an image
    with fewer is padded with zero rows (:meth:`num_boxes` tells how many are real).

    Ids are the file's own (:meth:`ids`); lookups also accept an unambiguous alias
    (:func:`image_id_aliases`: the id without its extension, its file stem, a COCO image
    number); an alias two images share is not accepted.
    """

    def __init__(
        self,
        path: str | os.PathLike | Sequence[str | os.PathLike],
        num_regions: int = NUM_REGIONS,
        order: str = "confidence",
    ):
        if num_regions < 1:
            raise ValueError(f"num_regions must be at least 1, not {num_regions}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
        paths = [path] if isinstance(path, str | os.PathLike) else list(path)
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("RegionFeatures needs a path")
        self.path = ", ".join(paths)
        self.num_regions = num_regions
        self.order = order
        with epath.Path(paths[0]).open("rb") as f:
            is_hdf5 = f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
        if is_hdf5 and len(paths) > 1:
            raise ValueError(f"one HDF5 file at a time, not {self.path}")
        self._source = _Hdf5Source(paths[0]) if is_hdf5 else _TsvSource(paths)
        self._index = {image_id: i for i, image_id in enumerate(self._source.ids)}
        claims: dict[str, set[int]] = {}
        for image_id, i in self._index.items():
            for alias in image_id_aliases(image_id):
                claims.setdefault(alias, set()).add(i)
        self._aliases = {
            alias: owners.pop()
            for alias, owners in claims.items()
            if len(owners) == 1 and alias not in self._index
        }

    @property
    def feature_dim(self) -> int:
        return self._source.dim

    def ids(self) -> list[str]:
        """The images' ids as the file spells them, in file order."""
        return list(self._source.ids)

    def __len__(self) -> int:
        return len(self._source.ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._index or image_id in self._aliases

    def _position(self, image_id: str) -> int:
        position = self._index.get(image_id, self._aliases.get(image_id))
        if position is None:
            raise KeyError(f"image id {image_id!r} is not in {self.path} ({len(self)} images)")
        return position

    def num_boxes(self, image_id: str) -> int:
        """How many regions the detector kept for the image (before padding or truncation)."""
        return self._source.num_boxes(self._position(image_id))

    def lookup(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``self[image_id]``: (features [num_regions, D], boxes [num_regions, 4])."""
        return self[image_id]

    def __getitem__(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        features, boxes, conf = self._source.read(self._position(image_id))
        if self.order == "confidence" and conf is not None and not np.isnan(conf).any():
            ranked = np.argsort(-conf, kind="stable")
            features, boxes = features[ranked], boxes[ranked]
        kept = min(len(features), self.num_regions)
        out_features = np.zeros((self.num_regions, features.shape[1]), np.float32)
        out_boxes = np.zeros((self.num_regions, 4), np.float32)
        out_features[:kept] = features[:kept]
        out_boxes[:kept] = boxes[:kept]
        return out_features, out_boxes

    def close(self) -> None:
        """Closes every thread's file handles (a later lookup reopens them)."""
        self._source.close()

    def __enter__(self) -> RegionFeatures:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
