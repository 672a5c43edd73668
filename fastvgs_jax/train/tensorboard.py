"""A TensorBoard scalar writer without TensorFlow: hand-encoded `Event` protobufs in TFRecord
framing, one `events.out.tfevents.<time>.<host>` file per writer.

Only scalars are written. The caller decides which process writes (normally process 0).
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from collections.abc import Mapping
from types import TracebackType

# TensorBoard reads the first record's file_version to pick the event format.
FILE_VERSION = b"brain.Event:2"


def _crc32c_table() -> tuple[int, ...]:
    """The byte table of the reflected Castagnoli polynomial 0x82F63B78."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli) of `data`; pure Python, which is fast enough for scalar events."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC that TFRecord stores (masking keeps CRCs of CRCs from degenerating)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: uint64 length, masked CRC of the length, data, masked CRC of the data."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative int64 values take their 64-bit two's complement."""
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _float32(value: float) -> bytes:
    """`value` as a little-endian float32; NaN and inf pass through, overflow becomes inf."""
    try:
        return struct.pack("<f", value)
    except OverflowError:  # finite but beyond float32 range: what a float32 cast gives
        return struct.pack("<f", math.copysign(math.inf, value))


def _summary_value(tag: str, value: float) -> bytes:
    """Summary.Value{tag (1, string), simple_value (2, float)}."""
    return _length_delimited(1, tag.encode("utf-8")) + _key(2, 5) + _float32(value)


def encode_event(
    wall_time: float,
    step: int = 0,
    *,
    file_version: bytes | None = None,
    values: Mapping[str, float] | None = None,
) -> bytes:
    """Event{wall_time (1, double), step (2, int64), file_version (3), summary (5)}."""
    out = _key(1, 1) + struct.pack("<d", wall_time)
    if step:  # proto3 omits default values
        out += _key(2, 0) + _varint(step)
    if file_version is not None:
        out += _length_delimited(3, file_version)
    if values:
        summary = b"".join(
            _length_delimited(1, _summary_value(tag, float(v))) for tag, v in values.items()
        )
        out += _length_delimited(5, summary)
    return out


class EventWriter:
    """Appends scalar events to a new TensorBoard event file in `logdir`."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        now = time.time()
        base = os.path.join(logdir, f"events.out.tfevents.{int(now)}.{socket.gethostname()}")
        # Exclusive create: a second writer started in the same second gets a suffixed name
        # instead of truncating the first one's file (TensorBoard reads any "tfevents" name).
        self.path, n = base, 0
        while True:
            try:
                self._file = open(self.path, "xb")  # noqa: SIM115 (closed by close())
                break
            except FileExistsError:
                n += 1
                self.path = f"{base}.{n}"
        self._file.write(tfrecord(encode_event(now, file_version=FILE_VERSION)))

    def scalars(
        self, step: int, values: Mapping[str, float], wall_time: float | None = None
    ) -> None:
        """Writes one event holding every `values` entry at `step` (non-finite values as is)."""
        if self._file.closed:
            raise ValueError(f"EventWriter for {self.path} is closed")
        if not values:
            return
        when = time.time() if wall_time is None else float(wall_time)
        self._file.write(tfrecord(encode_event(when, int(step), values=values)))

    def flush(self) -> None:
        """Pushes buffered events to the OS so that readers see them."""
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        """Flushes and closes the file; closing twice is harmless."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
