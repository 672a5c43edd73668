"""The TensorFlow-free TensorBoard writer: files decode with an independent reader (and with
TensorBoard itself where installed), CRCs match the Castagnoli check value, and flushed events
are readable before close."""

from __future__ import annotations

import glob
import math
import os
import struct

import numpy as np
import pytest

from fastvgs_jax.train import tensorboard


def _bitwise_crc32c(data: bytes) -> int:
    """CRC32C one bit at a time: no table, so it checks the writer's table independently."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    crc = _bitwise_crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32


def _records(path: str) -> list[bytes]:
    """TFRecord payloads of `path`, checking both CRCs of every record."""
    with open(path, "rb") as f:
        raw = f.read()
    out, pos = [], 0
    while pos < len(raw):
        header = raw[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack_from("<I", raw, pos + 8)
        assert length_crc == _masked(header)
        data = raw[pos + 12 : pos + 12 + length]
        (data_crc,) = struct.unpack_from("<I", raw, pos + 12 + length)
        assert data_crc == _masked(data)
        out.append(data)
        pos += 16 + length
    assert pos == len(raw)
    return out


def _fields(buf: bytes) -> list[tuple[int, int | float | bytes]]:
    """(field number, value) pairs of one protobuf message; fixed64 fields read as doubles and
    fixed32 as floats, which is what Event and Summary.Value use them for."""
    out, pos = [], 0

    def varint() -> int:
        nonlocal pos
        value, shift = 0, 0
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
        elif wire == 1:
            (value,) = struct.unpack_from("<d", buf, pos)
            pos += 8
        elif wire == 2:
            n = varint()
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            (value,) = struct.unpack_from("<f", buf, pos)
            pos += 4
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((field, value))
    return out


def _events(path: str) -> list[dict]:
    """Each record as {"wall_time", "step", "file_version", "values": {tag: value}}."""
    events = []
    for record in _records(path):
        event = {"step": 0, "file_version": None, "values": {}}
        for field, value in _fields(record):
            if field == 1:
                event["wall_time"] = value
            elif field == 2:
                event["step"] = value
            elif field == 3:
                event["file_version"] = value
            elif field == 5:
                for _, entry in _fields(value):
                    parts = dict(_fields(entry))
                    event["values"][parts[1].decode()] = parts[2]
        events.append(event)
    return events


def _only_file(logdir) -> str:
    (path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    return path


def test_crc32c_matches_the_castagnoli_check_value():
    assert tensorboard.crc32c(b"123456789") == 0xE3069283
    assert tensorboard.crc32c(b"") == 0
    data = bytes(range(256)) * 3
    assert tensorboard.crc32c(data) == _bitwise_crc32c(data)


def test_events_decode_with_an_independent_reader(tmp_path):
    logdir = tmp_path / "not" / "yet" / "there"  # created by the writer
    with tensorboard.EventWriter(str(logdir)) as writer:
        writer.scalars(0, {"loss": 2.5, "lr": np.float32(1e-4)}, wall_time=1000.25)
        writer.scalars(7, {"loss": float("nan"), "grad_norm": math.inf})
        writer.scalars(2**40, {"loss": 0.1})  # past int32: exercises multi-byte varints
    path = _only_file(logdir)
    assert os.path.basename(path).startswith("events.out.tfevents.")

    first, *events = _events(path)
    assert first["file_version"] == b"brain.Event:2" and not first["values"]
    assert [e["step"] for e in events] == [0, 7, 2**40]
    assert events[0]["wall_time"] == 1000.25
    assert events[0]["values"] == {"loss": 2.5, "lr": np.float32(1e-4)}
    assert math.isnan(events[1]["values"]["loss"])
    assert events[1]["values"]["grad_norm"] == math.inf
    assert events[2]["values"]["loss"] == np.float32(0.1)  # stored as float32


def test_flushed_events_are_readable_before_close(tmp_path):
    writer = tensorboard.EventWriter(str(tmp_path))
    writer.scalars(3, {"loss": 1.5})
    writer.flush()
    events = _events(_only_file(tmp_path))
    assert [(e["step"], e["values"]) for e in events[1:]] == [(3, {"loss": 1.5})]
    writer.close()
    writer.close()  # a second close is harmless
    with pytest.raises(ValueError):
        writer.scalars(4, {"loss": 1.0})


def test_a_second_writer_in_the_same_dir_keeps_the_first_file(tmp_path):
    with tensorboard.EventWriter(str(tmp_path)) as a, tensorboard.EventWriter(str(tmp_path)) as b:
        a.scalars(1, {"a": 1.0})
        b.scalars(1, {"b": 2.0})
    assert a.path != b.path
    assert _events(a.path)[1]["values"] == {"a": 1.0}
    assert _events(b.path)[1]["values"] == {"b": 2.0}


def test_tensorboard_reads_the_file(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import event_accumulator

    with tensorboard.EventWriter(str(tmp_path)) as writer:
        for step in range(5):
            writer.scalars(step, {"train/loss": 1.0 / (step + 1), "train/lr": 0.5 * step})
    acc = event_accumulator.EventAccumulator(str(tmp_path))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["train/loss", "train/lr"]
    loss = acc.Scalars("train/loss")
    assert [s.step for s in loss] == list(range(5))
    np.testing.assert_allclose([s.value for s in loss], [1.0 / (s + 1) for s in range(5)], 1e-6)
    assert [s.value for s in acc.Scalars("train/lr")] == [0.5 * s for s in range(5)]
