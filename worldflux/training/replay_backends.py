"""Replay storage backends (reference ``worldflux.training.replay_backends``) over our ``ReplayBuffer``.

``MemoryReplayBackend(buffer)`` wraps an in-memory buffer; ``ParquetReplayBackend.from_parquet(path)`` loads
a ``ReplayBuffer.to_parquet`` export. Both are batch providers (``sample(batch_size, seq_len, device)``) that
``Trainer`` / ``train`` accept, and expose ``capacity``, ``obs_shape``, ``action_dim`` and ``batch_layout()``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from worldflux.core.batch import Batch

from .data import ReplayBuffer

__all__ = ["MemoryReplayBackend", "ParquetReplayBackend", "ReplayBackend"]


@runtime_checkable
class ReplayBackend(Protocol):
    """What a replay storage backend offers."""

    @property
    def capacity(self) -> int: ...

    @property
    def obs_shape(self) -> tuple[int, ...]: ...

    @property
    def action_dim(self) -> int: ...

    def sample(self, batch_size: int, seq_len: int, device: str = "cpu") -> Batch: ...


class _BufferBackend:
    """A backend that serves a ``ReplayBuffer``."""

    def __init__(self, buffer: ReplayBuffer) -> None:
        if not isinstance(buffer, ReplayBuffer):
            raise TypeError(f"buffer must be a ReplayBuffer, got {type(buffer).__name__}")
        self.buffer = buffer

    @property
    def capacity(self) -> int:
        return int(self.buffer.capacity)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self.buffer.obs_shape)

    @property
    def action_dim(self) -> int:
        return int(self.buffer.action_dim)

    @property
    def data_provenance(self) -> dict:
        return self.buffer.data_provenance

    def __len__(self) -> int:
        return len(self.buffer)

    def batch_layout(self) -> dict[str, str]:
        return self.buffer.batch_layout()

    def sample(self, batch_size: int, seq_len: int, device: str = "cpu") -> Batch:
        """``buffer.sample(batch_size, seq_len, device)``: obs ``[B, T, *obs_shape]``, actions ``[B, T, A]``,
        rewards / terminations ``[B, T]``."""
        return self.buffer.sample(batch_size=batch_size, seq_len=seq_len, device=device)


class MemoryReplayBackend(_BufferBackend):
    """Thin adapter over an in-memory ``ReplayBuffer``."""

    def to_parquet(self, path: str | os.PathLike[str], *, compression: str = "zstd") -> Path:
        """Export the buffer (``ReplayBuffer.to_parquet``); returns the path."""
        output = Path(path)
        self.buffer.to_parquet(output, compression=compression)
        return output


class ParquetReplayBackend(_BufferBackend):
    """A backend loaded from a ``ReplayBuffer.to_parquet`` export (``from_parquet``)."""

    def __init__(self, buffer: ReplayBuffer, source_path: str | os.PathLike[str]) -> None:
        super().__init__(buffer)
        self.source_path = Path(source_path)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike[str]) -> ParquetReplayBackend:
        """Load `path` (``ReplayBuffer.from_parquet``; needs pyarrow)."""
        return cls(ReplayBuffer.from_parquet(path), path)
