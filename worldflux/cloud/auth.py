"""Local credentials for WorldFlux Cloud: ``$WORLDFLUX_HOME/credentials.json`` (default ``~/.worldflux``),
written atomically with owner-only permissions (file 0600, a directory we create 0700). Reading a file that
group or others can access warns (``UserWarning``), as the key would be exposed."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path
from typing import Any

from worldflux.core.safe_io import write_json_atomic

__all__ = ["credentials_path", "get_api_key", "load_credentials", "save_credentials", "set_api_key"]


def credentials_path() -> Path:
    """The credentials file: ``$WORLDFLUX_HOME/credentials.json`` (``~/.worldflux`` when unset)."""
    root = Path(os.environ.get("WORLDFLUX_HOME") or Path.home() / ".worldflux").expanduser()
    return root / "credentials.json"


def load_credentials() -> dict[str, Any]:
    """The stored credentials ({} when there is no file or it does not hold a JSON object)."""
    path = credentials_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        warnings.warn(
            f"Credentials file {path} has permissions {oct(mode)}, readable by other users; run chmod 600 {path}",
            UserWarning,
            stacklevel=2,
        )
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


def save_credentials(payload: dict[str, Any]) -> None:
    """Replace the stored credentials with `payload` (file mode 0600, directory 0700)."""
    path = credentials_path()
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
        os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
    write_json_atomic(path, payload, sort_keys=True, trailing_newline=True)
    os.chmod(path, 0o600)


def get_api_key() -> str | None:
    """The stored API key, or None."""
    key = load_credentials().get("api_key")
    return key.strip() if isinstance(key, str) and key.strip() else None


def set_api_key(api_key: str) -> None:
    """Store `api_key` (keeping the other stored fields).

    Raises:
        ValueError: an empty key.
    """
    if not isinstance(api_key, str) or not api_key.strip():
        raise ValueError("API key must be a non-empty string")
    payload = load_credentials()
    payload["api_key"] = api_key.strip()
    save_credentials(payload)
