"""Region-feature TSVs (the published bottom-up-attention format), HDF5 conversion, lookups."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import pickle

import h5py
import numpy as np
import pytest

from fastvgs_jax.data.corpora import regions

DIM = 2048  # the published features' size
# (id, height, width, num_boxes): a COCO file stem, one more, and a Places path.
IMAGES = [
    ("COCO_val2014_000000325114", 480, 640, 36),
    ("COCO_train2014_000000000009", 427, 640, 10),
    ("l/laundromat/gsun_df5b011043802b4049b632a005de20e3.jpg", 256, 341, 40),
]


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype).tobytes()).decode("ascii")


def _detections(image_id: str, h: int, w: int, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x1, y1 = rng.uniform(0, w / 2, n), rng.uniform(0, h / 2, n)
    x2, y2 = x1 + rng.uniform(1, w / 2 - 1, n), y1 + rng.uniform(1, h / 2 - 1, n)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    if seed == 0:
        boxes[0] = (64, 48, 320, 240)  # in 640x480: 0.1, 0.1, 0.5, 0.5
    return dict(
        image_id=image_id, h=h, w=w, n=n, boxes=boxes,
        features=rng.standard_normal((n, DIM)).astype(np.float32),
        objects_id=rng.integers(0, 1600, n), objects_conf=rng.permutation(n) / n + 0.01,
        attrs_id=rng.integers(0, 400, n), attrs_conf=rng.uniform(0, 1, n),
    )  # fmt: skip


def _lxmert_line(d: dict) -> str:
    """img_id, img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf, num_boxes, boxes,
    features; CRLF like the csv module that wrote the published files."""
    fields = [
        d["image_id"], str(d["h"]), str(d["w"]),
        _b64(d["objects_id"], "<i8"), _b64(d["objects_conf"], "<f4"),
        _b64(d["attrs_id"], "<i8"), _b64(d["attrs_conf"], "<f4"),
        str(d["n"]), _b64(d["boxes"], "<f4"), _b64(d["features"], "<f4"),
    ]  # fmt: skip
    return "\t".join(fields) + "\r\n"


def _butd_line(d: dict) -> str:
    """The original release: image_id, image_w, image_h, num_boxes, boxes, features."""
    fields = [d["image_id"], str(d["w"]), str(d["h"]), str(d["n"])]
    return "\t".join([*fields, _b64(d["boxes"], "<f4"), _b64(d["features"], "<f4")]) + "\r\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("regions")
    written = [_detections(*image, seed=i) for i, image in enumerate(IMAGES)]
    tsv = root / "val2014_obj36.tsv"
    tsv.write_text("".join(_lxmert_line(d) for d in written))
    hdf5 = root / "features.h5"
    rows = regions.convert_tsv_to_hdf5([str(tsv)], str(hdf5))
    return {"root": root, "written": written, "tsv": str(tsv), "hdf5": str(hdf5), "rows": rows}


def _fastvgs_order(d: dict) -> np.ndarray:
    return np.argsort(d["objects_conf"].astype(np.float32))[::-1]  # confidences are distinct


def _normalised(d: dict) -> np.ndarray:
    return d["boxes"] / np.array([d["w"], d["h"], d["w"], d["h"]], np.float32)


def test_tsv_rows_decode_to_the_written_arrays(data):
    rows = list(regions.read_tsv_rows(data["tsv"]))
    assert [r.image_id for r in rows] == [image[0] for image in IMAGES]
    for row, d in zip(rows, data["written"], strict=True):
        assert (row.image_h, row.image_w, row.num_boxes) == (d["h"], d["w"], d["n"])
        assert row.features.dtype == np.float32 and row.features.shape == (d["n"], DIM)
        assert row.boxes.dtype == np.float32 and row.boxes.shape == (d["n"], 4)
        assert row.objects_id.dtype == np.int64 and row.attrs_id.dtype == np.int64
        np.testing.assert_array_equal(row.features, d["features"])
        np.testing.assert_array_equal(row.boxes, d["boxes"])
        np.testing.assert_array_equal(row.objects_id, d["objects_id"])
        np.testing.assert_array_equal(row.objects_conf, d["objects_conf"].astype(np.float32))
        np.testing.assert_array_equal(row.attrs_id, d["attrs_id"])
        np.testing.assert_array_equal(row.attrs_conf, d["attrs_conf"].astype(np.float32))
        assert row.source.startswith(data["tsv"] + ":")


def test_six_column_rows_put_width_before_height(data, tmp_path):
    d = data["written"][0]
    path = tmp_path / "karpathy_val_resnet101_faster_rcnn_genome.tsv"
    path.write_text(_butd_line(d))
    (row,) = regions.read_tsv_rows(str(path))
    assert (row.image_h, row.image_w) == (480, 640)
    assert row.objects_id is None and row.objects_conf is None
    np.testing.assert_array_equal(row.features, d["features"])
    # No confidences to sort by: the file's order is kept, also after conversion.
    regions.convert_tsv_to_hdf5(str(path), str(tmp_path / "f.h5"))
    for source in (str(path), str(tmp_path / "f.h5")):
        features, _ = regions.RegionFeatures(source)[d["image_id"]]
        np.testing.assert_array_equal(features, d["features"])


def test_hdf5_conversion_round_trip(data):
    assert data["rows"] == 3
    with h5py.File(data["hdf5"], "r") as f:
        assert f.attrs["format"] == regions.HDF5_FORMAT and f.attrs["rows"] == 3
        assert list(f["image_ids"].asstr()[:]) == [image[0] for image in IMAGES]
        assert f["features"].shape == (3, 40, DIM) and f["features"].dtype == np.float32
        assert f["boxes"].shape == (3, 40, 4)
        np.testing.assert_array_equal(f["num_boxes"][:], [36, 10, 40])
        np.testing.assert_array_equal(f["image_hw"][:], [[480, 640], [427, 640], [256, 341]])
        for i, d in enumerate(data["written"]):
            n = d["n"]
            np.testing.assert_array_equal(f["features"][i, :n], d["features"])
            np.testing.assert_allclose(f["boxes"][i, :n], _normalised(d), rtol=1e-6)
            np.testing.assert_array_equal(f["objects_id"][i, :n], d["objects_id"])
            assert not f["features"][i, n:].any() and not f["boxes"][i, n:].any()
            assert (f["objects_id"][i, n:] == -1).all()


def test_box_normalisation_by_hand(data):
    reader = regions.RegionFeatures(data["hdf5"], order="file")
    _, boxes = reader["COCO_val2014_000000325114"]
    np.testing.assert_allclose(boxes[0], [64 / 640, 48 / 480, 320 / 640, 240 / 480])
    np.testing.assert_allclose(boxes[0], [0.1, 0.1, 0.5, 0.5], rtol=1e-6)


@pytest.mark.parametrize("order", regions.ORDERS)
@pytest.mark.parametrize("num_regions", [5, 36, 50])
def test_tsv_and_hdf5_readers_give_identical_arrays(data, order, num_regions):
    from_tsv = regions.RegionFeatures(data["tsv"], num_regions=num_regions, order=order)
    from_hdf5 = regions.RegionFeatures(data["hdf5"], num_regions=num_regions, order=order)
    assert from_tsv.ids() == from_hdf5.ids() == [image[0] for image in IMAGES]
    assert len(from_tsv) == len(from_hdf5) == 3
    for image_id in from_tsv.ids():
        a, b = from_tsv[image_id], from_hdf5[image_id]
        assert a[0].shape == (num_regions, DIM) and a[1].shape == (num_regions, 4)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert from_tsv.num_boxes(image_id) == from_hdf5.num_boxes(image_id)


def test_regions_are_ordered_by_confidence_then_padded_or_truncated(data):
    reader = regions.RegionFeatures(data["tsv"], num_regions=36)
    in_file_order = regions.RegionFeatures(data["tsv"], num_regions=36, order="file")
    for d in data["written"]:
        kept = min(d["n"], 36)
        ranked = _fastvgs_order(d)[:kept]
        features, boxes = reader[d["image_id"]]
        np.testing.assert_array_equal(features[:kept], d["features"][ranked])
        np.testing.assert_allclose(boxes[:kept], _normalised(d)[ranked], rtol=1e-6)
        assert not features[kept:].any() and not boxes[kept:].any()
        features, _ = in_file_order[d["image_id"]]
        np.testing.assert_array_equal(features[:kept], d["features"][:kept])
    assert reader.num_boxes("COCO_train2014_000000000009") == 10


def test_missing_image_id_raises_key_error_naming_id_and_file(data):
    reader = regions.RegionFeatures(data["hdf5"])
    assert "COCO_val2014_000000000001" not in reader
    with pytest.raises(KeyError, match=r"COCO_val2014_000000000001.*features\.h5"):
        reader["COCO_val2014_000000000001"]


def test_lookups_accept_the_corpus_readers_image_keys(data):
    reader = regions.RegionFeatures(data["hdf5"])
    places = "l/laundromat/gsun_df5b011043802b4049b632a005de20e3"
    assert "325114" in reader and places in reader and places.split("/")[-1] in reader
    np.testing.assert_array_equal(reader.lookup("325114")[0], reader[IMAGES[0][0]][0])
    np.testing.assert_array_equal(reader.lookup(places)[0], reader[IMAGES[2][0]][0])
    assert "9" in reader and "COCO_train2014_000000000009.jpg" not in reader


def test_an_alias_two_images_share_is_not_accepted(data, tmp_path):
    path = tmp_path / "two.tsv"
    twins = [
        dict(d, image_id=f"{folder}/x.jpg")
        for d, folder in zip(data["written"][:2], "ab", strict=True)
    ]
    path.write_text("".join(_lxmert_line(d) for d in twins))
    reader = regions.RegionFeatures(str(path))
    assert "a/x" in reader and "b/x" in reader and "x" not in reader


def _corrupt(line: str, how: str) -> str:
    fields = line.rstrip("\r\n").split("\t")
    if how == "columns":
        fields = fields[:7]
    elif how == "base64":
        fields[9] = fields[9][:-8] + "!!!!!!!!"
    elif how == "features":
        fields[9] = _b64(np.zeros(10 * 3 + 1, np.float32), "<f4")
    elif how == "num_boxes":
        fields[7] = "ten"
    elif how == "swapped":
        fields[1], fields[2] = fields[2], fields[1]
    return "\t".join(fields) + "\r\n"


@pytest.mark.parametrize(
    "how, message",
    [
        ("columns", "7 tab-separated columns"),
        ("base64", "features is not valid base64"),
        ("features", "features holds 31 float32 values"),
        ("num_boxes", "num_boxes is b'ten'"),
        ("swapped", "height and width swapped"),
    ],
)
def test_malformed_row_error_names_file_line_and_problem(data, tmp_path, how, message):
    lines = [_lxmert_line(d) for d in data["written"][:2]]
    lines[1] = _corrupt(lines[1], how)
    path = tmp_path / "bad.tsv"
    path.write_text("".join(lines))
    with pytest.raises(regions.RegionFileError, match=rf"bad\.tsv:2: .*{message}"):
        if how == "swapped":  # decodes fine; only the boxes' normalisation finds it
            regions.RegionFeatures(str(path))["COCO_train2014_000000000009"]
        else:
            list(regions.read_tsv_rows(str(path)))


def test_failed_conversion_leaves_no_file_and_keeps_the_old_one(data, tmp_path):
    good = tmp_path / "a.tsv"
    good.write_text(_lxmert_line(data["written"][0]))
    bad = tmp_path / "b.tsv"
    bad.write_text(
        _lxmert_line(data["written"][1]) + _corrupt(_lxmert_line(data["written"][2]), "base64")
    )
    out = tmp_path / "out" / "features.h5"
    out.parent.mkdir()
    out.write_bytes(b"the previous conversion")
    with pytest.raises(regions.RegionFileError, match=r"b\.tsv:2"):
        regions.convert_tsv_to_hdf5([str(good), str(bad)], str(out))
    assert os.listdir(out.parent) == ["features.h5"]
    assert out.read_bytes() == b"the previous conversion"


def test_an_image_id_in_two_files_is_an_error(data, tmp_path):
    line = _lxmert_line(data["written"][1])
    (tmp_path / "a.tsv").write_text(line)
    (tmp_path / "b.tsv").write_text(line)
    paths = [str(tmp_path / "a.tsv"), str(tmp_path / "b.tsv")]
    with pytest.raises(regions.RegionFileError, match=r"b\.tsv:1: .*repeats .*a\.tsv:1"):
        regions.convert_tsv_to_hdf5(paths, str(tmp_path / "f.h5"))
    with pytest.raises(regions.RegionFileError, match="repeats"):
        regions.RegionFeatures(paths)
    assert not (tmp_path / "f.h5").exists()


@pytest.mark.parametrize("source", ["tsv", "hdf5"])
def test_lookups_from_several_threads_and_after_pickling(data, source):
    reader = regions.RegionFeatures(data[source])
    expected = {image_id: reader[image_id] for image_id in reader.ids()}
    work = [image_id for image_id in reader.ids() for _ in range(8)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for image_id, got in zip(work, pool.map(reader.__getitem__, work), strict=True):
            np.testing.assert_array_equal(got[0], expected[image_id][0])
    reader.close()
    copy = pickle.loads(pickle.dumps(reader))
    for image_id, (features, boxes) in expected.items():
        np.testing.assert_array_equal(copy[image_id][0], features)
        np.testing.assert_array_equal(copy[image_id][1], boxes)


def test_reads_the_hdf5_fastvgs_preprocessing_writes(data, tmp_path):
    """Its layout: img_id (27-byte utf-8), img_h, img_w, boxes in pixels, all 36 regions."""
    coco = data["written"][0]
    path = tmp_path / "SpokenCOCO_val_imgfeat.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("img_id", data=[coco["image_id"]], dtype=h5py.string_dtype("utf-8", 27))
        f.create_dataset("img_h", data=[coco["h"]], dtype="int64")
        f.create_dataset("img_w", data=[coco["w"]], dtype="int64")
        f.create_dataset("features", data=coco["features"][None])
        f.create_dataset("boxes", data=coco["boxes"][None])
        f.create_dataset("objects_conf", data=coco["objects_conf"][None].astype(np.float32))
    theirs = regions.RegionFeatures(str(path))[coco["image_id"]]
    ours = regions.RegionFeatures(data["hdf5"])[coco["image_id"]]
    np.testing.assert_array_equal(theirs[0], ours[0])
    np.testing.assert_allclose(theirs[1], ours[1], rtol=1e-6)


def test_command_line_converts_and_reports(data, tmp_path, capsys):
    first, second = tmp_path / "train.tsv", tmp_path / "val.tsv"
    first.write_text(_lxmert_line(data["written"][0]))
    second.write_text("".join(_lxmert_line(d) for d in data["written"][1:]))
    out = tmp_path / "features.h5"
    assert regions.main(["--tsv", f"{first},{second}", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"converted 3 rows from 2 TSV file(s) to {out} in ") and "\n" not in line
    assert regions.RegionFeatures(str(out)).ids() == [image[0] for image in IMAGES]
