"""TensorBoard scalar writing for ``LoggingCallback(use_tensorboard=True)``: ``make_summary_writer(logdir)`` picks
torch's or tensorboardX's ``SummaryWriter``, else ``EventFileWriter``, a dependency-free writer of
TFRecord-framed ``Event`` protobufs (scalars only) that TensorBoard reads."""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

__all__ = ["EventFileWriter", "crc32c", "make_summary_writer", "masked_crc32c"]


def make_summary_writer(logdir: str | os.PathLike[str]) -> Any:
    """A TensorBoard writer with ``add_scalar(tag, value, step)``, ``flush()`` and ``close()``:
    ``torch.utils.tensorboard.SummaryWriter`` if usable, else ``tensorboardX``'s, else ``EventFileWriter``."""
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=os.fspath(logdir))
    except Exception:  # noqa: BLE001 - ImportError, or torch's check for the tensorboard package
        pass
    try:
        from tensorboardX import SummaryWriter as XWriter

        return XWriter(logdir=os.fspath(logdir))
    except Exception:  # noqa: BLE001
        pass
    return EventFileWriter(logdir)


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as used by TFRecord framing."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 and add 0xA282EAD8 (mod 2^32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint((field << 3) | 2) + _varint(len(payload)) + payload


class EventFileWriter:
    """A minimal TensorBoard event-file writer (scalars only; no dependencies).

    Writes ``events.out.tfevents.<time>.<host>`` in ``logdir``: TFRecord-framed ``Event`` protobufs (a
    ``file_version`` event, then one ``Summary.Value(tag, simple_value)`` event per ``add_scalar``), which
    TensorBoard reads.
    """

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = self.logdir / name
        self._handle: Any = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._write_event(self._event(time.time(), 0, _length_delimited(3, b"brain.Event:2")))
        self.flush()

    @staticmethod
    def _event(wall_time: float, step: int, body: bytes) -> bytes:
        return b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(int(step)) + body

    def _write_event(self, event: bytes) -> None:
        header = struct.pack("<Q", len(event))
        self._handle.write(header + struct.pack("<I", masked_crc32c(header)))
        self._handle.write(event + struct.pack("<I", masked_crc32c(event)))

    def add_scalar(self, tag: str, value: float, global_step: int = 0) -> None:
        """Record one scalar ``value`` under ``tag`` at ``global_step``."""
        if self._handle is None:
            raise ValueError(f"EventFileWriter for {str(self.path)!r} is closed")
        summary_value = _length_delimited(1, tag.encode("utf-8")) + b"\x15" + struct.pack("<f", float(value))
        summary = _length_delimited(1, summary_value)
        self._write_event(self._event(time.time(), global_step, _length_delimited(5, summary)))

    def flush(self) -> None:
        """Flush buffered events to disk."""
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if self._handle is not None:
            self._handle.flush()
            self._handle.close()
            self._handle = None
