r"""Bottom-up-attention region-feature TSV rows: parsing both variants, normalising boxes.

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
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Iterator

import numpy as np
from etils import epath

BOX_TOLERANCE = 0.01  # normalised boxes may overshoot [0, 1] by this much (then clipped)

LXMERT_COLUMNS = (
    "img_id", "img_h", "img_w", "objects_id", "objects_conf",
    "attrs_id", "attrs_conf", "num_boxes", "boxes", "features",
)  # fmt: skip
BUTD_COLUMNS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")


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
