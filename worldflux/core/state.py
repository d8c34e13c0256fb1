"""``State``: the latent state of a world model, a dictionary of batch-major tensors plus metadata.

Binary envelope written by ``State.serialize`` (version "v1"), byte-compatible with the reference:

1. 9-byte header, big-endian ``struct`` format ``">4sBI"``: magic ``b"WFST"``, version id (1), N.
2. N bytes of UTF-8 JSON (sorted keys, compact separators):
   ``{"format": "worldflux.state", "meta": {...}, "tensors": [record, ...], "version": "v1"}`` with one
   record ``{"dtype", "name", "nbytes", "requires_grad", "shape", "source_device"}`` per tensor, in
   ``State.tensors`` insertion order.
3. The raw bytes of every tensor (detached, on CPU, C-contiguous, native byte order), same order.

``to_shared_memory`` publishes each tensor in its own POSIX shared-memory segment; ``from_shared_memory``
attaches zero-copy views (host memory only: CUDA tensors must be copied to the host explicitly).
"""

from __future__ import annotations

import builtins
import json
import math
import struct
import uuid
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .exceptions import ShapeMismatchError, StateError
from .safe_io import parse_json

__all__ = ["State", "STATE_DTYPE_NAMES"]

_MAGIC = b"WFST"
_SHARED_MAGIC = "WFST-SHM"
_HEADER = struct.Struct(">4sBI")
_VERSION_IDS: dict[str, int] = {"v1": 1}
_VERSION_NAMES: dict[int, str] = {v: k for k, v in _VERSION_IDS.items()}
_FORMAT_NAME = "worldflux.state"

# Metadata keys holding shared-memory bookkeeping; never serialized, never copied by clone().
_SHM_HANDLES_KEY = "_wf_shared_memory_handles"
_SHM_DESCRIPTOR_KEY = "_wf_shared_memory_descriptor"
_PRIVATE_META_KEYS = (_SHM_HANDLES_KEY, _SHM_DESCRIPTOR_KEY)

_DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.bool: "bool",
    torch.uint8: "uint8",
    torch.int8: "int8",
    torch.int16: "int16",
    torch.int32: "int32",
    torch.int64: "int64",
    torch.float16: "float16",
    torch.float32: "float32",
    torch.float64: "float64",
    torch.bfloat16: "bfloat16",
}
_DTYPES_BY_NAME: dict[str, torch.dtype] = {name: dtype for dtype, name in _DTYPE_NAMES.items()}
STATE_DTYPE_NAMES: tuple[str, ...] = tuple(_DTYPES_BY_NAME)


def _version_id(version: str) -> int:
    if version not in _VERSION_IDS:
        raise StateError(
            f"Unsupported State serialization version {version!r}. Known: {', '.join(sorted(_VERSION_IDS))}"
        )
    return _VERSION_IDS[version]


def _dtype_name(name: str, dtype: torch.dtype) -> str:
    dtype_name = _DTYPE_NAMES.get(dtype)
    if dtype_name is None:
        raise StateError(
            f"Unsupported dtype {dtype} of State tensor {name!r}. Supported: {', '.join(STATE_DTYPE_NAMES)}"
        )
    return dtype_name


def _dtype_from_name(name: Any, where: str) -> torch.dtype:
    dtype = _DTYPES_BY_NAME.get(str(name))
    if dtype is None:
        raise StateError(f"{where} has unsupported dtype name {name!r}. Known: {', '.join(sorted(STATE_DTYPE_NAMES))}")
    return dtype


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _public_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` without shared-memory bookkeeping, checked to be JSON-serializable."""
    public = {k: v for k, v in meta.items() if k not in _PRIVATE_META_KEYS}
    try:
        json.dumps(public)
    except (TypeError, ValueError) as exc:
        raise StateError(
            "State.meta must be JSON-serializable for serialization / shared memory "
            f"(use str/int/float/bool/None, lists and dicts): {exc}"
        ) from exc
    return public


def _host_tensor(name: str, tensor: Tensor, *, allow_device_copy: bool = True) -> Tensor:
    """Detached, CPU, contiguous version of ``tensor`` (raises StateError for non-CPU if not allowed)."""
    host = tensor.detach()
    if host.device.type != "cpu":
        if not allow_device_copy:
            raise StateError(
                f"State.to_shared_memory received non-CPU tensor {name!r} on {host.device}. "
                "Pass allow_copy_from_cuda=True to copy it to host memory explicitly."
            )
        host = host.to("cpu")
    return host.contiguous()


def _raw_bytes(host: Tensor) -> np.ndarray:
    """The bytes of a CPU contiguous tensor as a uint8 numpy view (works for bfloat16 and scalars)."""
    return host.reshape(-1).view(torch.uint8).numpy()


def _parse_shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise StateError(f"{where} must include list 'shape', got {value!r}")
    if not all(isinstance(dim, int) and not isinstance(dim, bool) for dim in value):
        raise StateError(f"{where} has non-integer shape dimensions {value!r}")
    if any(dim < 0 for dim in value):
        raise StateError(f"{where} has negative shape dimensions {value!r}")
    return tuple(value)


def _parse_count(value: Any, key: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StateError(f"{where} has invalid {key!r}={value!r} (expected a non-negative int)")
    return value


def _shared_memory_name(namespace: str) -> str:
    # POSIX shm names are short on some platforms (macOS: 31 chars); keep them compact.
    prefix = "".join(ch for ch in namespace if ch.isalnum()).lower()[:8] or "wfstate"
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _close_handle(handle: shared_memory.SharedMemory) -> bool:
    """Close one handle; False when tensors still view its memory (builtin BufferError)."""
    try:
        handle.close()
    except builtins.BufferError:
        return False
    return True


@dataclass
class State:
    """Generic state container: named tensors [B, ...] that share batch size B, plus metadata.

    Example:
        >>> state = State(tensors={"latent": torch.zeros(4, 32)}, meta={"latent_type": "simnorm"})
        >>> state.batch_size
        4
    """

    tensors: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Tensor | None = None) -> Tensor | None:
        """``tensors.get(key, default)``."""
        return self.tensors.get(key, default)

    @property
    def batch_size(self) -> int:
        """Dim 0 of the first tensor (ValueError if the state has no tensors)."""
        for name, tensor in self.tensors.items():
            if tensor.dim() == 0:
                raise ValueError(f"State tensor {name!r} is a scalar and has no batch axis")
            return int(tensor.shape[0])
        raise ValueError("State has no tensors to infer batch size")

    @property
    def device(self) -> torch.device:
        """Device of the first tensor (ValueError if the state has no tensors)."""
        for tensor in self.tensors.values():
            return tensor.device
        raise ValueError("State has no tensors to infer device")

    def to(self, device: torch.device | str) -> State:
        """Copy of the state with every tensor moved to ``device`` (``meta`` is shared, not copied)."""
        target = torch.device(device)
        return State(tensors={k: v.to(target) for k, v in self.tensors.items()}, meta=self.meta)

    def detach(self) -> State:
        """State whose tensors are detached from the autograd graph (``meta`` is shared)."""
        return State(tensors={k: v.detach() for k, v in self.tensors.items()}, meta=self.meta)

    def clone(self) -> State:
        """Deep copy of the tensors and a shallow copy of ``meta`` (without shared-memory handles)."""
        meta = {k: v for k, v in self.meta.items() if k not in _PRIVATE_META_KEYS}
        return State(tensors={k: v.clone() for k, v in self.tensors.items()}, meta=meta)

    def validate(self) -> None:
        """Validate that the state has tensors and they all share dim 0.

        Raises:
            StateError: no tensors.
            ShapeMismatchError: a tensor is a scalar or its dim 0 differs from the first tensor's.
        """
        if not self.tensors:
            raise StateError("State has no tensors")
        batch: int | None = None
        for name, tensor in self.tensors.items():
            if tensor.dim() == 0:
                raise ShapeMismatchError(f"State tensor '{name}' is a scalar; expected a leading batch axis")
            if batch is None:
                batch = int(tensor.shape[0])
            elif int(tensor.shape[0]) != batch:
                raise ShapeMismatchError(
                    f"State tensor '{name}' batch size mismatch", expected=(batch,), got=(int(tensor.shape[0]),)
                )

    # ------------------------------------------------------------------ binary envelope

    def serialize(self, version: str = "v1", format: str = "binary") -> bytes:
        """Serialize state with a versioned binary envelope.

        Binary envelope layout:
            magic (4 bytes), version id (1 byte), metadata length (4 bytes),
            metadata JSON bytes, then raw tensor bytes.

        Raises:
            StateError: format other than "binary", unknown version, unsupported dtype, or non-JSON meta.
        """
        if format != "binary":
            raise StateError(f"Unsupported State serialization format {format!r}. Use 'binary'.")
        version_id = _version_id(version)
        records: list[dict[str, Any]] = []
        chunks: list[bytes] = []
        for name, tensor in self.tensors.items():
            dtype_name = _dtype_name(name, tensor.dtype)
            host = _host_tensor(name, tensor)
            raw = _raw_bytes(host).tobytes()
            records.append(
                {
                    "name": str(name),
                    "dtype": dtype_name,
                    "shape": list(host.shape),
                    "nbytes": len(raw),
                    "requires_grad": bool(tensor.requires_grad),
                    "source_device": str(tensor.device),
                }
            )
            chunks.append(raw)
        metadata = {
            "format": _FORMAT_NAME,
            "version": version,
            "meta": _public_meta(self.meta),
            "tensors": records,
        }
        meta_bytes = json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode("utf-8")
        return _HEADER.pack(_MAGIC, version_id, len(meta_bytes)) + meta_bytes + b"".join(chunks)

    @classmethod
    def deserialize(cls, payload: bytes | bytearray | memoryview) -> State:
        """Deserialize state from ``State.serialize(...)`` payload (tensors are fresh CPU copies).

        Raises:
            StateError: short payload, bad magic, unknown version id, metadata out of range, undecodable
                or non-object JSON, header/metadata version mismatch, missing tensor list, malformed tensor
                spec (name, dtype, shape, nbytes), truncated data, trailing bytes, or non-object meta.
        """
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise StateError(f"State payload must be bytes, bytearray or memoryview, got {type(payload).__name__}")
        data = bytes(payload)
        if len(data) < _HEADER.size:
            raise StateError(f"State payload is too short for binary header ({len(data)} < {_HEADER.size} bytes)")
        magic, version_id, meta_len = _HEADER.unpack_from(data, 0)
        if magic != _MAGIC:
            raise StateError(f"Invalid State payload magic header {magic!r} (expected {_MAGIC!r})")
        version = _VERSION_NAMES.get(version_id)
        if version is None:
            raise StateError(
                f"Unsupported State serialization version id {version_id}. "
                f"Known ids: {', '.join(str(v) for v in sorted(_VERSION_NAMES))}"
            )
        offset = _HEADER.size + meta_len
        if offset > len(data):
            raise StateError(
                f"State payload is truncated (metadata length {meta_len} out of range for {len(data)}-byte payload)"
            )
        try:
            metadata = parse_json(data[_HEADER.size : offset], StateError, "State metadata")
        except StateError as exc:
            raise StateError(f"Failed to decode State metadata JSON: {exc}") from exc
        if not isinstance(metadata, dict):
            raise StateError(f"State metadata must decode into a JSON object, got {type(metadata).__name__}")
        declared = str(metadata.get("version", ""))
        if declared and declared != version:
            raise StateError(f"State payload version mismatch between header and metadata: {version!r} vs {declared!r}")
        specs = metadata.get("tensors")
        if not isinstance(specs, list):
            raise StateError("State payload metadata is missing tensor specs list 'tensors'")

        tensors: dict[str, Tensor] = {}
        for index, spec in enumerate(specs):
            if not isinstance(spec, dict):
                raise StateError(f"Invalid tensor spec #{index} in State metadata: expected an object")
            name = str(spec.get("name") or "")
            if not name:
                raise StateError(f"Tensor spec #{index} is missing a non-empty 'name'")
            where = f"Tensor spec for {name!r}"
            dtype = _dtype_from_name(spec.get("dtype", ""), where)
            shape = _parse_shape(spec.get("shape"), where)
            nbytes = _parse_count(spec.get("nbytes"), "nbytes", where)
            expected = math.prod(shape) * _itemsize(dtype)
            if nbytes != expected:
                raise StateError(f"{where} has inconsistent byte length: expected {expected}, got {nbytes}")
            if offset + nbytes > len(data):
                raise StateError(
                    f"State payload is truncated while reading tensor {name!r} "
                    f"(needs {nbytes} bytes at offset {offset}, payload has {len(data)})"
                )
            if nbytes == 0:
                tensor = torch.empty(shape, dtype=dtype)
            else:
                raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=offset).copy()
                tensor = torch.from_numpy(raw).view(dtype).reshape(shape)
            if spec.get("requires_grad", False):
                if not (tensor.dtype.is_floating_point or tensor.dtype.is_complex):
                    raise StateError(f"{where} sets requires_grad for non-floating dtype {dtype}")
                tensor.requires_grad_(True)
            tensors[name] = tensor
            offset += nbytes
        if offset != len(data):
            raise StateError(
                f"State payload has {len(data) - offset} trailing bytes after tensor decode. "
                "This usually indicates corruption or a version mismatch."
            )
        meta = metadata.get("meta", {})
        if not isinstance(meta, dict):
            raise StateError(f"State metadata field 'meta' must be an object, got {type(meta).__name__}")
        return cls(tensors=tensors, meta=dict(meta))

    # ------------------------------------------------------------------ shared memory

    def to_shared_memory(
        self,
        *,
        namespace: str = "worldflux-state",
        allow_copy_from_cuda: bool = False,
    ) -> dict[str, Any]:
        """Create shared-memory descriptor for zero-copy CPU state exchange.

        One POSIX segment (size ``max(1, nbytes)``) is created per tensor, named
        ``<first 8 alphanumerics of namespace, lowercased>-<12 hex chars>``. The segments outlive this call:
        release them with ``State.unlink_shared_memory(descriptor)`` (or ``close_shared_memory(unlink=True)``
        on an attached state).

        Notes:
            - CPU contiguous tensors retain zero-copy semantics when re-attached.
            - CUDA tensors require ``allow_copy_from_cuda=True`` and are copied to CPU.

        Returns:
            ``{"magic": "WFST-SHM", "version": "v1", "meta": ..., "tensors": [{"name", "dtype", "shape",
            "numel", "nbytes", "requires_grad", "source_device", "shm_name"}, ...]}`` (JSON-serializable).
        """
        meta = _public_meta(self.meta)
        records: list[dict[str, Any]] = []
        descriptor: dict[str, Any] = {"magic": _SHARED_MAGIC, "version": "v1", "meta": meta, "tensors": records}
        try:
            for name, tensor in self.tensors.items():
                dtype_name = _dtype_name(name, tensor.dtype)
                host = _host_tensor(name, tensor, allow_device_copy=allow_copy_from_cuda)
                nbytes = host.numel() * host.element_size()
                shm_name = _shared_memory_name(namespace)
                segment = shared_memory.SharedMemory(name=shm_name, create=True, size=max(1, nbytes))
                records.append(
                    {
                        "name": str(name),
                        "dtype": dtype_name,
                        "shape": list(host.shape),
                        "numel": int(host.numel()),
                        "nbytes": int(nbytes),
                        "requires_grad": bool(tensor.requires_grad),
                        "source_device": str(tensor.device),
                        "shm_name": shm_name,
                    }
                )
                try:
                    if nbytes:
                        target = np.ndarray((nbytes,), dtype=np.uint8, buffer=segment.buf)
                        target[:] = _raw_bytes(host)
                        del target
                finally:
                    segment.close()
        except BaseException:
            State.unlink_shared_memory(descriptor)
            raise
        return descriptor

    @classmethod
    def from_shared_memory(cls, descriptor: dict[str, Any], *, copy: bool = False) -> State:
        """Attach a state from shared-memory descriptor created by ``to_shared_memory``.

        With ``copy=False`` the tensors are zero-copy views of the segments (writes through either side are
        visible to the other); the open handles are kept in ``meta["_wf_shared_memory_handles"]`` and the
        descriptor in ``meta["_wf_shared_memory_descriptor"]`` until ``close_shared_memory()``. With
        ``copy=True`` the tensors are private copies and the segments are closed immediately.

        Raises:
            StateError: malformed descriptor (magic, version, tensor specs) or a missing segment.
        """
        if not isinstance(descriptor, dict):
            raise StateError(f"State shared-memory descriptor must be a dict, got {type(descriptor).__name__}")
        if descriptor.get("magic") != _SHARED_MAGIC:
            raise StateError(
                f"Invalid State shared-memory descriptor magic {descriptor.get('magic')!r} (expected {_SHARED_MAGIC!r})"
            )
        _version_id(str(descriptor.get("version", "v1")))
        specs = descriptor.get("tensors")
        if not isinstance(specs, list):
            raise StateError("State shared-memory descriptor is missing tensor list 'tensors'")
        meta = descriptor.get("meta", {})
        if not isinstance(meta, dict):
            raise StateError(f"Shared-memory descriptor field 'meta' must be an object, got {type(meta).__name__}")

        tensors: dict[str, Tensor] = {}
        handles: list[shared_memory.SharedMemory] = []
        try:
            for index, spec in enumerate(specs):
                if not isinstance(spec, dict):
                    raise StateError(f"Invalid tensor spec #{index} in shared-memory descriptor")
                name = str(spec.get("name") or "")
                if not name:
                    raise StateError(f"Shared-memory tensor spec #{index} is missing a non-empty 'name'")
                where = f"Shared-memory tensor {name!r}"
                dtype = _dtype_from_name(spec.get("dtype", ""), where)
                shape = _parse_shape(spec.get("shape"), where)
                numel = _parse_count(spec.get("numel", math.prod(shape)), "numel", where)
                if numel != math.prod(shape):
                    raise StateError(f"{where} has numel={numel} inconsistent with shape {list(shape)}")
                nbytes = numel * _itemsize(dtype)
                shm_name = spec.get("shm_name")
                if not isinstance(shm_name, str) or not shm_name:
                    raise StateError(f"{where} is missing 'shm_name'")
                try:
                    handle = shared_memory.SharedMemory(name=shm_name, create=False)
                except FileNotFoundError as exc:
                    raise StateError(f"{where}: shared-memory segment {shm_name!r} does not exist") from exc
                except (OSError, ValueError) as exc:  # invalid name, permissions, ...
                    raise StateError(f"{where}: cannot attach shared-memory segment {shm_name!r}: {exc}") from exc
                handles.append(handle)
                if handle.size < nbytes:
                    raise StateError(f"{where}: segment {shm_name!r} has {handle.size} bytes, needs {nbytes}")
                if nbytes == 0:
                    tensor = torch.empty(shape, dtype=dtype)
                else:
                    view = np.frombuffer(handle.buf, dtype=np.uint8, count=nbytes)
                    tensor = torch.from_numpy(view).view(dtype).reshape(shape)
                    del view
                    if copy:
                        tensor = tensor.clone()
                if spec.get("requires_grad", False):
                    if not (dtype.is_floating_point or dtype.is_complex):
                        raise StateError(f"{where} sets requires_grad for non-floating dtype {dtype}")
                    tensor.requires_grad_(True)
                tensors[name] = tensor
        except BaseException:
            tensors.clear()
            for handle in handles:
                _close_handle(handle)
            raise

        state = cls(tensors=tensors, meta=dict(meta))
        if copy:
            for handle in handles:
                _close_handle(handle)
            return state
        state.meta[_SHM_HANDLES_KEY] = handles
        state.meta[_SHM_DESCRIPTOR_KEY] = descriptor
        return state

    def close_shared_memory(self, *, unlink: bool = False) -> None:
        """Close attached shared-memory handles, optionally unlinking segments.

        The state's own zero-copy views are first replaced by private copies, so the state stays usable.
        ``unlink=True`` also removes the segments named in the attach descriptor.

        Raises:
            StateError: some segment could not be closed because other tensors still view it; those
                handles stay in ``meta`` so a later call (after dropping the views) can close them.
        """
        handles = self.meta.pop(_SHM_HANDLES_KEY, None)
        descriptor = self.meta.get(_SHM_DESCRIPTOR_KEY)
        if isinstance(descriptor, dict) and handles:
            shared_names = {spec.get("name") for spec in descriptor.get("tensors", []) if isinstance(spec, dict)}
            for name in list(self.tensors):
                if name in shared_names:
                    tensor = self.tensors[name]
                    self.tensors[name] = tensor.detach().clone().requires_grad_(tensor.requires_grad)
                    del tensor
        still_open = [h for h in (handles or []) if not _close_handle(h)]
        if unlink and isinstance(descriptor, dict):
            State.unlink_shared_memory(descriptor)
        if still_open:
            self.meta[_SHM_HANDLES_KEY] = still_open
            raise StateError(
                "Cannot close shared-memory segments "
                f"{sorted(h.name for h in still_open)}: tensors viewing them are still referenced. "
                "Drop those references and call close_shared_memory() again."
            )

    @staticmethod
    def unlink_shared_memory(descriptor: dict[str, Any]) -> None:
        """Unlink shared-memory segments created by ``to_shared_memory`` (missing segments are ignored).

        Views that are already attached stay valid until closed; the names just disappear.
        """
        specs = descriptor.get("tensors") if isinstance(descriptor, dict) else None
        if not isinstance(specs, list):
            return
        for spec in specs:
            shm_name = spec.get("shm_name") if isinstance(spec, dict) else None
            if not isinstance(shm_name, str) or not shm_name:
                continue
            try:
                handle = shared_memory.SharedMemory(name=shm_name, create=False)
            except FileNotFoundError:
                continue
            try:
                handle.unlink()
            finally:
                handle.close()
