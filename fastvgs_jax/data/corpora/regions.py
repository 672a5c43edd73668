r"""Precomputed detector region features (bottom-up-attention Faster R-CNN), keyed by image id.

FaST-VGS does not see pixels: its image side is the regions a Visual-Genome Faster R-CNN
(Anderson et al. 2018, "bottom-up attention") finds in each image, a pooled 2048-d feature and a
box per region, 36 per image. They are distributed as TSV files, one image a line. This module
reads those files, converts them to one HDF5 file, and serves ``(features, boxes)`` by image id.

TSV rows have no header; columns are tab-separated, and the published files end their lines with
``\r\n`` (the default of Python's ``csv`` writer that produced them). The column count tells the
two variants apart:

* 10 columns: LXMERT / VisualBERT ``*_obj36.tsv``, and what FaST-VGS's own extraction writes:
  ``img_id, img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf, num_boxes, boxes,
  features``.
* 6 columns: the original bottom-up-attention release (``*_resnet101_faster_rcnn_genome*.tsv``):
  ``image_id, image_w, image_h, num_boxes, boxes, features``. Width comes *before* height here.

Each array field is the base64 of an array's raw little-endian bytes: ``objects_id`` and
``attrs_id`` are int64 [n], ``objects_conf`` and ``attrs_conf`` float32 [n], ``boxes`` float32
[n, 4] (x1, y1, x2, y2 in pixels of the original image), ``features`` float32 [n, D] with
D = 2048. Lines are read as bytes and split on tabs, not parsed with ``csv``, so csv's field-size
limit (which the published readers raise to ``sys.maxsize``) does not apply.

HDF5 layout written by :func:`convert_tsv_to_hdf5` (N images, R = the largest ``num_boxes`` seen,
D = feature size; regions past an image's ``num_boxes`` hold the fill value):

======================  =====================  =================================================
dataset                 shape, dtype           contents
======================  =====================  =================================================
``image_ids``           [N] utf-8 str          the TSV's ids verbatim (COCO file stems, Places
                                               or Flickr paths), in input order
``image_hw``            [N, 2] int32           image height, width in pixels
``num_boxes``           [N] int32              regions the detector kept for the image
``features``            [N, R, D] float32      region features, 0 past ``num_boxes``
``boxes``               [N, R, 4] float32      x1/w, y1/h, x2/w, y2/h in [0, 1], 0 past
``objects_id``          [N, R] int64           Visual Genome object class, -1 past or absent
``objects_conf``        [N, R] float32         its confidence; NaN for 6-column rows
``attrs_id``            [N, R] int64           attribute class, -1 past or absent
``attrs_conf``          [N, R] float32         its confidence; NaN for 6-column rows
======================  =====================  =================================================

File attributes: ``format`` (``fastvgs-jax/regions``), ``version``, ``rows``, ``sources`` (a JSON
list of the TSV paths). Each image's features are one chunk, so a lookup reads one image.

:class:`RegionFeatures` also reads the HDF5 files FaST-VGS's preprocessing writes (datasets
``img_id``, ``img_h``, ``img_w``, ``features``, ``boxes`` in pixels, ``objects_conf``).

What FaST-VGS does with these (datasets/spokencoco_dataset.py and
datasets/preprocessing/img_id2ordered_coco_places_flickr8k.py in its repository), and what
:class:`RegionFeatures` does by default too: it orders each image's regions by ``objects_conf``,
most confident first, keeps the first 36, and divides x1, x2 by the image width and y1, y2 by its
height.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import json
import os
import posixpath
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

import h5py
import numpy as np
from etils import epath

NUM_REGIONS = 36  # regions per image in the published features and in FaST-VGS
HDF5_FORMAT = "fastvgs-jax/regions"
HDF5_VERSION = 1
BOX_TOLERANCE = 0.01  # normalised boxes may overshoot [0, 1] by this much (then clipped)
ORDERS = ("confidence", "file")

LXMERT_COLUMNS = (
    "img_id", "img_h", "img_w", "objects_id", "objects_conf",
    "attrs_id", "attrs_conf", "num_boxes", "boxes", "features",
)  # fmt: skip
BUTD_COLUMNS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_COCO_NAME = re.compile(r"COCO_[A-Za-z]+\d*_(\d+)")


class RegionFileError(ValueError):
    """A region-feature file is malformed; the message names the file (and a TSV's line)."""


@dataclasses.dataclass(frozen=True)
class RegionRow:
    """One image's detections, as a TSV row holds them (arrays are read-only).

    The four label arrays are None for 6-column rows, which do not have them.
    """

    image_id: str
    image_h: int
    image_w: int
    boxes: np.ndarray  # float32 [n, 4]: x1, y1, x2, y2 in pixels
    features: np.ndarray  # float32 [n, D]
    objects_id: np.ndarray | None  # int64 [n]
    objects_conf: np.ndarray | None  # float32 [n]
    attrs_id: np.ndarray | None  # int64 [n]
    attrs_conf: np.ndarray | None  # float32 [n]
    source: str  # "path:line", for messages

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])


# ----------------------------------------------------------------------------------------------
# TSV rows


def _int_field(raw: bytes, name: str, where: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise RegionFileError(f"{where}: {name} is {raw[:40]!r}, not an integer") from None
    if value < minimum:
        raise RegionFileError(f"{where}: {name} is {value}; it must be at least {minimum}")
    return value


def _array_field(raw: bytes, dtype: str, shape: tuple[int, ...], name: str, where: str):
    try:
        data = base64.b64decode(raw, validate=True)
    except binascii.Error as error:
        raise RegionFileError(f"{where}: {name} is not valid base64 ({error})") from None
    kind = np.dtype(dtype)
    if len(data) % kind.itemsize:
        raise RegionFileError(
            f"{where}: {name} holds {len(data)} bytes, not a whole number of {kind.name} values"
        )
    values = np.frombuffer(data, kind)
    try:
        array = values.reshape(shape)
    except ValueError:
        raise RegionFileError(
            f"{where}: {name} holds {values.size} {kind.name} values, which do not fit the"
            f" shape {shape} that num_boxes={shape[0]} implies"
        ) from None
    return array.astype(kind.newbyteorder("="), copy=False)


def parse_tsv_line(line: bytes, where: str) -> RegionRow:
    """One TSV line (either variant) as a RegionRow; RegionFileError naming ``where`` if bad."""
    fields = line.rstrip(b"\r\n").split(b"\t")
    if len(fields) == len(LXMERT_COLUMNS):
        raw_id, raw_h, raw_w, *labels, raw_n, raw_boxes, raw_features = fields
    elif len(fields) == len(BUTD_COLUMNS):
        raw_id, raw_w, raw_h, raw_n, raw_boxes, raw_features = fields
        labels = None
    else:
        raise RegionFileError(
            f"{where}: {len(fields)} tab-separated columns; expected {len(LXMERT_COLUMNS)}"
            f" ({', '.join(LXMERT_COLUMNS)}) or {len(BUTD_COLUMNS)} ({', '.join(BUTD_COLUMNS)})"
        )
    try:
        image_id = raw_id.decode("utf-8")
    except UnicodeDecodeError:
        raise RegionFileError(f"{where}: the image id is not UTF-8 text") from None
    if not image_id:
        raise RegionFileError(f"{where}: the image id is empty")
    image_h = _int_field(raw_h, "image height", where, 1)
    image_w = _int_field(raw_w, "image width", where, 1)
    n = _int_field(raw_n, "num_boxes", where, 1)
    boxes = _array_field(raw_boxes, "<f4", (n, 4), "boxes", where)
    features = _array_field(raw_features, "<f4", (n, -1), "features", where)
    if features.shape[1] == 0:
        raise RegionFileError(f"{where}: features is empty")
    arrays = [None] * 4
    if labels is not None:
        kinds = (("objects_id", "<i8"), ("objects_conf", "<f4"))
        kinds += (("attrs_id", "<i8"), ("attrs_conf", "<f4"))
        arrays = [
            _array_field(raw, dtype, (n,), name, where)
            for raw, (name, dtype) in zip(labels, kinds, strict=True)
        ]
    return RegionRow(image_id, image_h, image_w, boxes, features, *arrays, source=where)


def read_tsv_rows(path: str | os.PathLike) -> Iterator[RegionRow]:
    """Streams a region TSV (local or ``gs://``) one image at a time, in file order.

    Blank lines are skipped. Raises RegionFileError naming the file and line of a malformed row.
    """
    with epath.Path(path).open("rb") as f:
        for line_number, line in enumerate(f, start=1):
            if line.strip(b"\r\n"):
                yield parse_tsv_line(line, f"{path}:{line_number}")


def normalise_boxes(boxes: np.ndarray, image_h: int, image_w: int, where: str) -> np.ndarray:
    """Pixel x1, y1, x2, y2 divided by the image's width, height, width, height (float32).

    Coordinates that overshoot [0, 1] by at most BOX_TOLERANCE are clipped; further out is an
    error (most often height and width swapped), as is a non-finite coordinate.
    """
    scale = np.array([image_w, image_h, image_w, image_h], np.float32)
    out = (np.asarray(boxes, np.float32) / scale).astype(np.float32)
    if out.size and (
        not np.isfinite(out).all() or out.min() < -BOX_TOLERANCE or out.max() > 1 + BOX_TOLERANCE
    ):
        raise RegionFileError(
            f"{where}: boxes reach outside the {image_w}x{image_h} (width x height) image"
            f" (normalised coordinates from {out.min():.3f} to {out.max():.3f});"
            " are height and width swapped?"
        )
    return np.clip(out, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# TSV -> HDF5


class _Hdf5Writer:
    """Appends rows to the layout in the module docstring, growing N and R as needed."""

    _GROW = 1024  # images added to the datasets' capacity at a time

    def __init__(self, f: h5py.File, first: RegionRow):
        self.f = f
        self.count = 0
        self.regions = first.num_boxes
        self.dim = first.features.shape[1]
        n, r, d = self._GROW, self.regions, self.dim
        self.per_region = {  # name: (trailing shape, dtype, fill value)
            "features": ((d,), "float32", 0.0),
            "boxes": ((4,), "float32", 0.0),
            "objects_id": ((), "int64", -1),
            "objects_conf": ((), "float32", 0.0),
            "attrs_id": ((), "int64", -1),
            "attrs_conf": ((), "float32", 0.0),
        }
        for name, (tail, dtype, fill) in self.per_region.items():
            f.create_dataset(
                name, (n, r, *tail), dtype, maxshape=(None, None, *tail),
                chunks=(1, r, *tail), fillvalue=fill,
            )  # fmt: skip
        f.create_dataset("image_ids", (n,), h5py.string_dtype("utf-8"), maxshape=(None,))
        f.create_dataset("image_hw", (n, 2), "int32", maxshape=(None, 2))
        f.create_dataset("num_boxes", (n,), "int32", maxshape=(None,))

    def _resize(self, images: int, regions: int) -> None:
        for name in self.per_region:
            dataset = self.f[name]
            dataset.resize((images, regions, *dataset.shape[2:]))
        for name in ("image_ids", "image_hw", "num_boxes"):
            self.f[name].resize(images, axis=0)
        self.regions = regions

    def append(self, row: RegionRow) -> None:
        if row.features.shape[1] != self.dim:
            raise RegionFileError(
                f"{row.source}: features are {row.features.shape[1]}-d; earlier rows are"
                f" {self.dim}-d"
            )
        n, i = row.num_boxes, self.count
        capacity = self.f["image_ids"].shape[0]
        if i == capacity or n > self.regions:
            self._resize(capacity + self._GROW if i == capacity else capacity, max(n, self.regions))
        f = self.f
        f["features"][i, :n] = row.features
        f["boxes"][i, :n] = normalise_boxes(row.boxes, row.image_h, row.image_w, row.source)
        if row.objects_id is None:
            f["objects_conf"][i, :n] = np.nan
            f["attrs_conf"][i, :n] = np.nan
        else:
            f["objects_id"][i, :n] = row.objects_id
            f["objects_conf"][i, :n] = row.objects_conf
            f["attrs_id"][i, :n] = row.attrs_id
            f["attrs_conf"][i, :n] = row.attrs_conf
        f["image_ids"][i] = row.image_id
        f["image_hw"][i] = (row.image_h, row.image_w)
        f["num_boxes"][i] = n
        self.count += 1

    def finish(self) -> None:
        self._resize(self.count, self.regions)


def _is_local(path: str | os.PathLike) -> bool:
    return "://" not in os.fspath(path)


def _write_hdf5(staging: str, tsv_paths: list[str]) -> int:
    with h5py.File(staging, "w") as f:
        writer = None
        first_seen: dict[str, str] = {}
        for path in tsv_paths:
            for row in read_tsv_rows(path):
                if row.image_id in first_seen:
                    raise RegionFileError(
                        f"{row.source}: image id {row.image_id!r} repeats"
                        f" {first_seen[row.image_id]}"
                    )
                first_seen[row.image_id] = row.source
                writer = writer or _Hdf5Writer(f, row)
                writer.append(row)
        if writer is None:
            raise RegionFileError(f"no rows in {', '.join(tsv_paths)}")
        writer.finish()
        f.attrs["format"] = HDF5_FORMAT
        f.attrs["version"] = HDF5_VERSION
        f.attrs["rows"] = writer.count
        f.attrs["sources"] = json.dumps(tsv_paths)
        return writer.count


def convert_tsv_to_hdf5(
    tsv_paths: str | os.PathLike | Sequence[str | os.PathLike], hdf5_path: str | os.PathLike
) -> int:
    """Writes the rows of ``tsv_paths`` (in order) to one HDF5 file; returns the rows read.

    The file is built under a temporary name beside ``hdf5_path`` (for a ``gs://`` target: in
    the local temporary folder, then copied) and renamed into place at the end, so a failed
    conversion leaves no file behind and an existing ``hdf5_path`` untouched.

    Raises:
      RegionFileError: a malformed row (naming its file and line), an image id that repeats,
        rows whose feature sizes differ, or no rows at all.
    """
    if isinstance(tsv_paths, str | os.PathLike):
        tsv_paths = [tsv_paths]
    sources = [os.fspath(p) for p in tsv_paths]
    if not sources:
        raise ValueError("convert_tsv_to_hdf5 needs at least one TSV path")
    target = epath.Path(hdf5_path)
    suffix = f".incomplete-{uuid.uuid4().hex[:8]}"
    if _is_local(hdf5_path):
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = os.path.join(os.fspath(target.parent), f".{target.name}{suffix}")
    else:
        staging = os.path.join(tempfile.gettempdir(), f"{target.name}{suffix}")
    remote_staging = None
    try:
        count = _write_hdf5(staging, sources)
        if _is_local(hdf5_path):
            os.replace(staging, os.fspath(target))
        else:
            remote_staging = target.parent / f".{target.name}{suffix}"
            epath.Path(staging).copy(remote_staging)
            remote_staging.rename(target)
            remote_staging = None
    finally:
        if os.path.exists(staging):
            os.remove(staging)
        if remote_staging is not None and remote_staging.exists():
            remote_staging.unlink()
    return count


# ----------------------------------------------------------------------------------------------
# Random access


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
        self.raw = None if _is_local(path) else epath.Path(path).open("rb")
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


# ----------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastvgs_jax.data.corpora.regions",
        description="Convert bottom-up-attention region-feature TSVs to one HDF5 file.",
    )
    parser.add_argument("--tsv", required=True, help="TSV path(s), comma-separated, in order")
    parser.add_argument("--out", required=True, help="the HDF5 file to write (replaced whole)")
    args = parser.parse_args(argv)
    tsv_paths = [p for p in args.tsv.split(",") if p]
    start = time.perf_counter()
    try:
        rows = convert_tsv_to_hdf5(tsv_paths, args.out)
    except (RegionFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    print(
        f"converted {rows} rows from {len(tsv_paths)} TSV file(s) to {args.out} in {seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
