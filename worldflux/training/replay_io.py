"""Replay files (``.npz`` and Parquet) read as untrusted input, and the checksum that travels with them.

``ReplayBuffer.save`` / ``to_parquet`` add ``checksum``: ``"sha256:<hex>"`` over the dtype, shape and bytes of
the four stored arrays (obs, actions, rewards, dones, as written). ``ReplayBuffer.load`` / ``from_parquet``
(:func:`load_npz`, :func:`load_parquet`) then:

* refuse special files (``/dev/zero``, FIFOs) and anything that is not a regular file;
* check every size the file declares against its real content and :func:`~worldflux.core.safe_io.load_byte_cap`
  BEFORE allocating: each ``.npy`` member's header (shape x itemsize) must equal the member's size, and a
  member cannot expand beyond what deflate allows for its compressed size; ``capacity`` x row size and Parquet
  rows x columns must fit the cap;
* refuse complex, object, string and structured dtypes, Parquet columns that the metadata does not declare (or
  declared ones that are missing), and a checksum mismatch;
* report NaN/inf in observations or rewards (``on_nonfinite="raise"`` -> ``BufferError``, ``"warn"`` ->
  ``UserWarning``);
* raise only ``BufferError`` naming the path and the problem.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
import zipfile
import zlib
from typing import Any

import numpy as np

from worldflux.core.exceptions import BufferError
from worldflux.core.safe_io import load_byte_cap, open_regular, parse_json

__all__ = ["NONFINITE_POLICIES", "arrays_checksum", "load_npz", "load_parquet"]

NONFINITE_POLICIES = ("raise", "warn")
_DEFLATE_MAX_RATIO = 1032  # deflate cannot expand data more than this (RFC 1951 worst case), plus headers
_ARRAY_KEYS = ("obs", "actions", "rewards", "dones")
_META_KEYS = ("obs_shape", "action_dim", "capacity")
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, TypeError, MemoryError)


def arrays_checksum(obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> str:
    """``"sha256:<hex>"`` of the dtype, shape and C-order bytes of the four replay arrays."""
    digest = hashlib.sha256()
    for array in (obs, actions, rewards, dones):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return "sha256:" + digest.hexdigest()


def _check_policy(on_nonfinite: str) -> None:
    if on_nonfinite not in NONFINITE_POLICIES:
        raise BufferError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")


def _report_nonfinite(shown: str, obs: np.ndarray, rewards: np.ndarray, on_nonfinite: str) -> None:
    bad = []
    for name, array in (("obs", obs), ("rewards", rewards)):
        if array.dtype.kind == "f" and array.size:
            count = int(array.size - np.count_nonzero(np.isfinite(array)))
            if count:
                bad.append(f"{count} non-finite {name} value(s)")
    if not bad:
        return
    message = f"Replay file {shown!r} holds {' and '.join(bad)} (NaN/inf would poison training)"
    if on_nonfinite == "raise":
        raise BufferError(message + "; clean the data or load with on_nonfinite='warn'")
    warnings.warn(message, UserWarning, stacklevel=4)


def _check_capacity(shown: str, capacity: int, row_bytes: int) -> None:
    cap = load_byte_cap()
    if capacity * row_bytes > cap:
        raise BufferError(
            f"Replay file {shown!r} declares capacity {capacity}, which needs {capacity * row_bytes} bytes: more than "
            f"the load limit of {cap} bytes (WORLDFLUX_MAX_LOAD_BYTES)"
        )


# ---------------------------------------------------------------------------------------------- npz


def _check_members(shown: str, archive: zipfile.ZipFile) -> None:
    """Every ``.npy`` member's declared array size equals its real size, and the total fits the load cap."""
    total = 0
    for info in archive.infolist():
        if info.compress_type == zipfile.ZIP_STORED:
            limit = info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            limit = info.compress_size * _DEFLATE_MAX_RATIO + 1024
        else:
            raise BufferError(
                f"Invalid replay buffer file {shown!r}: member {info.filename!r} uses an unsupported compression method"
            )
        if info.file_size > limit:
            raise BufferError(
                f"Invalid replay buffer file {shown!r}: member {info.filename!r} declares "
                f"{info.file_size} bytes, more than its compressed data can hold"
            )
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member, max_header_size=10000)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member, max_header_size=10000)
            else:  # pragma: no cover - read_magic only returns these
                raise ValueError(f"unsupported .npy version {version}")
            header = member.tell() if member.seekable() else None
        name = info.filename.removesuffix(".npy")
        if dtype.hasobject or dtype.kind not in ("biuf" if name != "checksum" else "U"):
            what = f"{name} metadata" if name in _META_KEYS else f"{name} dtype in replay buffer file"
            raise BufferError(
                f"Invalid {what} {shown!r}: unsupported dtype {dtype} (numeric arrays only: no complex, object, "
                "string or structured data)"
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if header is not None and header + nbytes != info.file_size:
            raise BufferError(
                f"Invalid replay buffer file {shown!r}: {name} declares shape {shape} ({nbytes} bytes) "
                f"but holds {info.file_size - header} bytes"
            )
        total += nbytes
    cap = load_byte_cap()
    if total > cap:
        raise BufferError(f"Replay file {shown!r} declares {total} bytes of arrays, more than the load limit of {cap}")


def load_npz(cls: Any, path: Any, *, obs_dtype: Any = np.float32, on_nonfinite: str = "warn") -> Any:
    """``ReplayBuffer.load``: see the module docstring. ``cls`` is the buffer class to build."""
    from .data import _NPZ_KEYS, _int_metadata, _shape_metadata

    _check_policy(on_nonfinite)
    shown = os.fspath(path) if isinstance(path, str | os.PathLike) else repr(path)
    with open_regular(path, BufferError, "replay buffer file") as handle:
        if not zipfile.is_zipfile(handle):
            raise BufferError(f"Invalid replay buffer file {shown!r}: expected an .npz archive of named arrays")
        try:
            with zipfile.ZipFile(handle) as archive:
                _check_members(shown, archive)
            handle.seek(0)
            with np.load(handle, allow_pickle=False) as data:
                missing = sorted(set(_NPZ_KEYS[:-1]).difference(data.files))
                if missing:
                    raise BufferError(f"Invalid replay buffer file {shown!r}: missing keys {missing}")
                arrays = {key: data[key] for key in (*_ARRAY_KEYS, *_META_KEYS, "checksum") if key in data.files}
        except BufferError:
            raise
        except _READ_ERRORS as exc:
            raise BufferError(f"Cannot read replay buffer file {shown!r}: {type(exc).__name__}: {exc}") from exc
    obs, actions, rewards, dones = (arrays[k] for k in _ARRAY_KEYS)
    obs_shape = _shape_metadata(arrays["obs_shape"])
    action_dim = _int_metadata(arrays["action_dim"], "action_dim")
    capacity = None if "capacity" not in arrays else _int_metadata(arrays["capacity"], "capacity")
    cls._validate_rows(obs, actions, rewards, dones, obs_shape, action_dim)
    _verify_checksum(shown, arrays.get("checksum"), obs, actions, rewards, dones)
    _report_nonfinite(shown, obs, rewards, on_nonfinite)
    size = int(obs.shape[0])
    capacity = max(size, 1) if capacity is None else capacity
    if size > capacity:
        raise BufferError(
            f"Invalid replay buffer file {shown!r}: number of stored rows exceeds capacity ({size} > {capacity})"
        )
    _check_capacity(shown, capacity, math.prod(obs_shape) * np.dtype(obs_dtype).itemsize + 4 * (action_dim + 2))
    buffer = cls(capacity=capacity, obs_shape=obs_shape, action_dim=action_dim, obs_dtype=obs_dtype)
    buffer._set_contents(obs, actions, rewards, dones)
    return buffer


def _verify_checksum(shown: str, stored: Any, *arrays: np.ndarray) -> None:
    if stored is None:
        return  # files of the reference and of older versions carry none
    text = str(np.asarray(stored).reshape(-1)[0]) if np.size(stored) == 1 else None
    if text is None or text != arrays_checksum(*arrays):
        raise BufferError(
            f"Replay file {shown!r} failed its integrity check: the arrays do not match the checksum stored with them "
            "(the file was corrupted or edited)"
        )


# ---------------------------------------------------------------------------------------------- parquet


def load_parquet(cls: Any, path: Any, *, on_nonfinite: str = "warn") -> Any:
    """``ReplayBuffer.from_parquet``: see the module docstring."""
    from .data import _PARQUET_FORMAT_VERSION, _PARQUET_META_KEY, _int_metadata, _require_pyarrow, _shape_metadata

    _check_policy(on_nonfinite)
    pa, pq = _require_pyarrow()
    shown = os.fspath(path) if isinstance(path, str | os.PathLike) else repr(path)
    with open_regular(path, BufferError, "Parquet replay file") as handle:
        try:
            parquet = pq.ParquetFile(handle)
            schema = parquet.schema_arrow
            num_rows = int(parquet.metadata.num_rows)
            metadata = schema.metadata or {}
            if _PARQUET_META_KEY not in metadata:
                raise BufferError(
                    f"Invalid Parquet replay file {shown!r}: missing schema metadata 'worldflux_replay_meta'"
                )
            try:
                meta = parse_json(metadata[_PARQUET_META_KEY], BufferError, f"Parquet replay metadata of {shown!r}")
            except BufferError as exc:  # the reference's message prefix, with the parser's reason
                raise BufferError(f"Invalid Parquet replay metadata of {shown!r}: {exc.__cause__ or exc}") from exc
            if not isinstance(meta, dict):
                raise BufferError(f"Invalid Parquet replay metadata of {shown!r}: expected a JSON object")
            missing_meta = sorted({"format_version", "obs_shape", "action_dim", "capacity"}.difference(meta))
            if missing_meta:
                raise BufferError(f"Invalid Parquet replay metadata of {shown!r}: missing keys {missing_meta}")
            if meta["format_version"] != _PARQUET_FORMAT_VERSION:
                raise BufferError(
                    f"Unsupported Parquet replay format_version {meta['format_version']!r} in "
                    f"{shown!r} (supported: {_PARQUET_FORMAT_VERSION})"
                )
            obs_shape = _shape_metadata(meta["obs_shape"])
            action_dim = _int_metadata(meta["action_dim"], "action_dim")
            capacity = _int_metadata(meta["capacity"], "capacity")
            obs_dim = math.prod(obs_shape)
            cap = load_byte_cap()
            if (obs_dim + action_dim + 2) * 4 > cap:
                raise BufferError(
                    f"Invalid Parquet replay metadata of {shown!r}: obs_shape {obs_shape} and "
                    f"action_dim {action_dim} exceed the load limit"
                )
            expected = [f"obs_{i}" for i in range(obs_dim)] + [f"action_{i}" for i in range(action_dim)]
            expected += ["reward", "done"]
            _check_columns(shown, schema, expected, pa)
            if num_rows > capacity:
                raise BufferError(
                    f"Invalid Parquet replay file {shown!r}: number of stored rows exceeds capacity "
                    f"({num_rows} > {capacity})"
                )
            if num_rows * len(expected) * 8 > cap:
                raise BufferError(
                    f"Parquet replay file {shown!r} declares {num_rows} rows x {len(expected)} "
                    f"columns, more than the load limit of {cap} bytes"
                )
            _check_capacity(shown, capacity, 4 * (obs_dim + action_dim + 2))
            table = parquet.read()
            if table.num_rows != num_rows:
                raise BufferError(
                    f"Invalid Parquet replay file {shown!r}: footer declares {num_rows} rows, data "
                    f"holds {table.num_rows}"
                )
            columns = {name: np.asarray(table.column(name).to_numpy(), dtype=np.float32) for name in expected}
        except BufferError:
            raise
        except (*_READ_ERRORS, pa.ArrowException) as exc:
            raise BufferError(f"Cannot read Parquet replay file {shown!r}: {type(exc).__name__}: {exc}") from exc
    obs = np.stack([columns[f"obs_{i}"] for i in range(obs_dim)], axis=1).reshape(num_rows, *obs_shape)
    actions = np.stack([columns[f"action_{i}"] for i in range(action_dim)], axis=1).reshape(num_rows, action_dim)
    rewards, dones = columns["reward"], columns["done"]
    _verify_checksum(shown, meta.get("checksum"), obs, actions, rewards, dones)
    _report_nonfinite(shown, obs, rewards, on_nonfinite)
    buffer = cls(capacity=capacity, obs_shape=obs_shape, action_dim=action_dim)
    buffer._set_contents(obs, actions, rewards, dones)
    return buffer


def _check_columns(shown: str, schema: Any, expected: list[str], pa: Any) -> None:
    names = list(schema.names)
    missing = [name for name in expected if name not in names]
    extra = sorted(set(names) - set(expected))
    if missing or extra or len(names) != len(set(names)):
        parts = []
        if missing:
            parts.append(f"missing columns {missing[:8]}{' ...' if len(missing) > 8 else ''} ({len(missing)} missing)")
        if extra:
            parts.append(f"columns not declared by its obs_shape/action_dim metadata {extra[:8]}")
        if len(names) != len(set(names)):
            parts.append("duplicate column names")
        raise BufferError(f"Invalid Parquet replay file {shown!r}: " + "; ".join(parts))
    for field in schema:
        kind = field.type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
            raise BufferError(
                f"Invalid Parquet replay file {shown!r}: column {field.name!r} has type {kind} (numeric columns only)"
            )
