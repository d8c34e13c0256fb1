"""Safe file I/O shared by every writer and loader of the package.

Writing: :func:`atomic_write` (temp file in the same directory, fsync, ``os.replace``, fsync of the directory)
and :func:`write_json_atomic` on top of it are THE way config and small JSON files are written, so a process
killed at any moment leaves either the old or the new file, never a torn one.

Reading untrusted files: :func:`open_regular` refuses anything that is not a regular file (``/dev/zero``, FIFOs,
sockets, directories) without blocking on it; :func:`read_json` adds a size cap and a nesting-depth cap (checked
before the JSON parser recurses); :func:`load_byte_cap` is the largest allocation a loader may make from a
file's declared sizes (``WORLDFLUX_MAX_LOAD_BYTES``, default: the machine's physical memory). Every failure is
raised as the caller's named error class (``CheckpointError``, ``ConfigurationError``, ``BufferError``, ...)
with the path and the problem.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "atomic_write",
    "fsync_dir",
    "json_depth_ok",
    "load_byte_cap",
    "not_found_error",
    "open_regular",
    "read_json",
    "sha256_file",
    "write_json_atomic",
]

MAX_JSON_BYTES = 64 * 1024 * 1024
"""Largest JSON file (config, metadata, marker) a loader reads."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects a loader accepts (the package's own files nest < 10 deep)."""


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it survives a crash (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(handle)`` on a temp file in the same directory, fsync, rename, fsync dir.

    The temp file is named ``.<name>.<random>.tmp`` and removed when ``write`` fails. Parent directories must
    exist. OS errors propagate (the callers wrap them in their named errors).
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def write_json_atomic(
    path: str | os.PathLike[str],
    payload: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    trailing_newline: bool = False,
    default: Callable[[Any], Any] | None = None,
    make_parents: bool = True,
) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically (see :func:`atomic_write`); returns the path.

    The text is encoded before the file is touched, so a payload that is not JSON-serializable leaves any
    existing file unchanged (``TypeError``/``ValueError`` from :func:`json.dumps`).
    """
    target = Path(path)
    text = json.dumps(payload, indent=indent, sort_keys=sort_keys, default=default)
    if trailing_newline:
        text += "\n"
    data = text.encode("utf-8")
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda handle: handle.write(data))
    return target


def open_regular(path: str | os.PathLike[str], error: type[Exception], what: str = "file") -> IO[bytes]:
    """Open ``path`` for binary reading, refusing anything but a regular file.

    The file is opened with ``O_NONBLOCK`` (a FIFO never blocks the caller) and checked with ``fstat`` on the
    open descriptor (no window between the check and the read).

    Raises:
        error: missing, unreadable, or not a regular file (device, FIFO, socket, directory).
    """
    shown = os.fspath(path)
    try:
        fd = os.open(shown, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise not_found_error(error)(f"Cannot read {what} {shown!r}: no such file") from exc
    except OSError as exc:
        raise error(f"Cannot read {what} {shown!r}: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "directory" if stat.S_ISDIR(mode) else "special file (device, FIFO or socket)"
            raise error(f"Cannot read {what} {shown!r}: it is a {kind}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@functools.cache
def not_found_error(error: type[Exception]) -> type[Exception]:
    """A subclass of both ``error`` and ``FileNotFoundError`` (a missing file stays catchable as either, as
    callers of the reference expect ``FileNotFoundError``)."""
    return type(f"{error.__name__}FileNotFound", (error, FileNotFoundError), {"__module__": error.__module__})


def read_bytes(
    path: str | os.PathLike[str], error: type[Exception], what: str = "file", *, max_bytes: int | None = None
) -> bytes:
    """The bytes of a regular file, refusing files larger than ``max_bytes`` before reading them."""
    shown = os.fspath(path)
    with open_regular(path, error, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise error(f"Cannot read {what} {shown!r}: {size} bytes is more than the limit of {max_bytes} bytes")
        try:
            data = handle.read(max_bytes + 1 if max_bytes is not None else -1)
        except OSError as exc:
            raise error(f"Cannot read {what} {shown!r}: {exc.strerror or exc}") from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise error(f"Cannot read {what} {shown!r}: more than the limit of {max_bytes} bytes")
    return data


def json_depth_ok(text: str, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """True when the arrays/objects in the JSON ``text`` nest at most ``max_depth`` deep (a linear scan that
    skips string contents, run before parsing so no parser recursion can be provoked)."""
    depth = 0
    in_string = False
    escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif char in "]}":
            depth -= 1
    return True


def parse_json(text: str | bytes, error: type[Exception], what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` of untrusted text with the depth cap; every failure becomes ``error``."""
    try:
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"Invalid {what}: not UTF-8 text ({exc})") from exc
    if not json_depth_ok(text, max_depth):
        raise error(f"Invalid {what}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise error(f"Invalid JSON in {what}: {exc}") from exc


def read_json(
    path: str | os.PathLike[str],
    error: type[Exception],
    what: str = "JSON file",
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Parse the JSON file ``path`` (a regular file of at most ``max_bytes``, nested at most ``max_depth``).

    Raises:
        error: the file is missing, special, too large, not UTF-8, too deep or not valid JSON; the message
            names the path.
    """
    data = read_bytes(path, error, what, max_bytes=max_bytes)
    return parse_json(data, error, f"{what} {os.fspath(path)!r}", max_depth=max_depth)


def load_byte_cap() -> int:
    """The most bytes a loader may allocate from sizes declared in a file: ``WORLDFLUX_MAX_LOAD_BYTES`` when set,
    else the machine's physical memory (a file asking for more could never be loaded anyway)."""
    configured = os.environ.get("WORLDFLUX_MAX_LOAD_BYTES")
    if configured:
        try:
            value = int(configured)
            if value > 0:
                return value
        except ValueError:
            pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - non-POSIX
        return 1 << 36


def sha256_file(path: str | os.PathLike[str], error: type[Exception], what: str = "file") -> str:
    """Hex SHA-256 of a regular file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open_regular(path, error, what) as handle:
        try:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        except OSError as exc:
            raise error(f"Cannot read {what} {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    return digest.hexdigest()
