"""Write a `save_pretrained`-style model directory without torch: `config.json`, `model.safetensors`,
`worldflux_meta.json` (the layout `worldflux.WorldModel.from_pretrained` loads).

`model.safetensors` holds the reference torch `state_dict` (names and layouts from the family's
`torch_state_dict`), written with `safetensors.numpy.save_file(..., metadata={"format": "pt"})`.
`worldflux_meta.json` has the reference's keys (`save_format_version`, `worldflux_version`, `api_version`,
`model_type`, `created_at_utc`; no `contract_fingerprint`, which needs the torch package) plus
`weights_sha256 = {"model.safetensors": "<hex>"}`. Every file is written atomically (temp + fsync + rename).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SAVE_FORMAT_VERSION = 1
API_VERSION = "v0.2"


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("worldflux-jax")
    except metadata.PackageNotFoundError:
        return "0.1.1.dev0"


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_text(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    _atomic(path, write)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_model_dir(directory: str | os.PathLike[str], family: Any, params: Any, extras: Any = None) -> Path:
    """Write `directory/{config.json, model.safetensors, worldflux_meta.json}` for host `params`/`extras`."""
    from safetensors.numpy import save_file

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    config = family.config
    _write_text(root / "config.json", json.dumps(config.to_dict(), indent=2))
    state = {name: np.ascontiguousarray(value) for name, value in family.torch_state_dict(params, extras).items()}
    weights = root / "model.safetensors"
    _atomic(weights, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    meta = {
        "save_format_version": SAVE_FORMAT_VERSION,
        "worldflux_version": _version(),
        "api_version": API_VERSION,
        "model_type": config.model_type,
        "created_at_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "weights_sha256": {"model.safetensors": sha256_file(weights)},
    }
    _write_text(root / "worldflux_meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return root
