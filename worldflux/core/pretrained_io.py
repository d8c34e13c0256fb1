"""The files of a ``save_pretrained`` directory: writing them atomically and reading them as untrusted input.

Layout (the reference's, plus safetensors; CONTRACTS.md §2):

* ``config.json`` — ``config.to_dict()`` (indent 2);
* ``model.safetensors`` — ``safetensors.numpy.save`` of the reference torch ``state_dict`` (exactly its names and
  shapes, float32; tensors that share storage in torch are stored once per name), metadata ``{"format": "pt"}``;
* ``model.pt`` — ``torch.save`` of the same ``state_dict`` (what the reference reads);
* ``worldflux_meta.json`` — the reference's six keys plus ``weights_sha256: {file name: hex SHA-256}`` of the
  weights files written (indent 2, sorted keys, trailing newline).

Reading (:func:`read_config`, :func:`read_meta`, :func:`read_weights`) refuses special files, oversized or
over-deep JSON, verifies ``weights_sha256`` for the file it loads when the meta file lists it, prefers
``model.safetensors`` over ``model.pt`` and raises only ``CheckpointError`` naming the path and the problem.
Every file is written with the package's atomic writer, the meta file last (its hashes describe the others).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from worldflux.core.exceptions import CheckpointError
from worldflux.core.safe_io import atomic_write, load_byte_cap, open_regular, read_json, write_json_atomic

__all__ = [
    "CONFIG_FILE",
    "META_FILE",
    "SAFETENSORS_FILE",
    "TORCH_FILE",
    "read_config",
    "read_meta",
    "read_weights",
    "save_pretrained_files",
    "weights_file",
]

CONFIG_FILE = "config.json"
META_FILE = "worldflux_meta.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "model.pt"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def save_pretrained_files(
    root: str | os.PathLike[str], *, config: Mapping[str, Any], state_dict: Mapping[str, Any], meta: Mapping[str, Any]
) -> None:
    """Write ``config.json``, ``model.safetensors``, ``model.pt`` and ``worldflux_meta.json`` (with
    ``weights_sha256``) into ``root``, each atomically, the meta file last.

    Args:
        state_dict: the reference torch state dict (name -> CPU tensor).
        meta: the reference meta keys; ``weights_sha256`` is added.
    """
    import safetensors.numpy
    import torch

    directory = Path(root)
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / CONFIG_FILE, dict(config), indent=2)
    arrays = {name: np.ascontiguousarray(tensor.detach().cpu().numpy()) for name, tensor in state_dict.items()}
    safetensors_bytes = safetensors.numpy.save(arrays, metadata={"format": "pt"})
    buffer = io.BytesIO()
    torch.save(dict(state_dict), buffer)
    torch_bytes = buffer.getvalue()
    atomic_write(directory / SAFETENSORS_FILE, lambda f: f.write(safetensors_bytes))
    atomic_write(directory / TORCH_FILE, lambda f: f.write(torch_bytes))
    payload = dict(meta)
    payload["weights_sha256"] = {SAFETENSORS_FILE: _sha256(safetensors_bytes), TORCH_FILE: _sha256(torch_bytes)}
    write_json_atomic(directory / META_FILE, payload, indent=2, sort_keys=True, trailing_newline=True)


def read_config(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` object of a pretrained directory (must hold a non-empty ``model_type``)."""
    path = Path(root) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"Cannot load {os.fspath(root)}: {CONFIG_FILE} not found")
    data = read_json(path, CheckpointError, "config")
    if not isinstance(data, dict) or not data.get("model_type") or not isinstance(data["model_type"], str):
        raise CheckpointError(f"Invalid {path}: expected a JSON object with a 'model_type' string field")
    return data


def read_meta(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``worldflux_meta.json`` object ({} when absent); ``weights_sha256`` checked for shape."""
    path = Path(root) / META_FILE
    if not (path.exists() or path.is_symlink()):
        return {}
    meta = read_json(path, CheckpointError, "metadata")
    if not isinstance(meta, dict):
        raise CheckpointError(f"Invalid {path}: expected a JSON object")
    hashes = meta.get("weights_sha256")
    if hashes is not None and not (
        isinstance(hashes, dict) and all(isinstance(v, str) and _HEX64.match(v) for v in hashes.values())
    ):
        raise CheckpointError(f"Invalid {path}: weights_sha256 must map file names to hex SHA-256 digests")
    return meta


def weights_file(root: str | os.PathLike[str]) -> Path:
    """``model.safetensors`` when present, else ``model.pt``."""
    directory = Path(root)
    for name in (SAFETENSORS_FILE, TORCH_FILE):
        candidate = directory / name
        if candidate.exists() or candidate.is_symlink():
            return candidate
    raise CheckpointError(f"Cannot load {directory}: neither {SAFETENSORS_FILE} nor {TORCH_FILE} found")


def read_weights(root: str | os.PathLike[str], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict (name -> array/tensor) of the preferred weights file, verified against ``weights_sha256``.

    Raises:
        CheckpointError: no weights file, a special or oversized file, a hash mismatch, or a file that is not a
            state dict of numeric arrays.
    """
    path = weights_file(root)
    with open_regular(path, CheckpointError, "weights file") as handle:
        size = os.fstat(handle.fileno()).st_size
        cap = load_byte_cap()
        if size > cap:
            raise CheckpointError(f"Cannot read {path}: {size} bytes is more than the load limit of {cap} bytes")
        try:
            data = handle.read()
        except OSError as exc:
            raise CheckpointError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    expected = (meta.get("weights_sha256") or {}).get(path.name)
    if expected is not None and _sha256(data) != expected:
        raise CheckpointError(
            f"Integrity check failed for {path}: its SHA-256 does not match weights_sha256 in {META_FILE} (the file "
            "was corrupted or replaced after saving)"
        )
    try:
        if path.name == SAFETENSORS_FILE:
            import safetensors.numpy

            state_dict: Any = safetensors.numpy.load(data)
        else:
            import torch

            state_dict = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the readers raise many types (MemoryError, RecursionError too)
        raise CheckpointError(f"Cannot read {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state_dict, Mapping) or not all(isinstance(k, str) for k in state_dict):
        raise CheckpointError(f"Invalid {path}: expected a state dict (names -> tensors)")
    return dict(state_dict)
