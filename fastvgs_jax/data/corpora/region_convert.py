"""Region-feature TSVs (``region_rows``) converted to one HDF5 file, and its command line.

    python -m fastvgs_jax.data.corpora.regions --tsv=a.tsv,b.tsv --out=regions.h5

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
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

import h5py
import numpy as np

from fastvgs_jax.data.corpora.region_rows import (
    RegionFileError,
    RegionRow,
    normalise_boxes,
    read_tsv_rows,
)
from fastvgs_jax.data.corpora.staging import staged_local_file

HDF5_FORMAT = "fastvgs-jax/regions"
HDF5_VERSION = 1


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
    with staged_local_file(hdf5_path) as staging:
        return _write_hdf5(staging, sources)


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
