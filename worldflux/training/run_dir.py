"""The life cycle of a run's ``output_dir``: one writer, leftovers of killed runs, checkpoint rotation.

* One writer per directory: :func:`acquire_output_dir` takes an exclusive ``flock`` on the directory itself
  (nothing is added to it; the holder's pid comes from ``/proc/locks`` for the message). The lock belongs
  to the open file, so it dies with the process (a SIGKILLed run never blocks the next one) and is released
  when the owner (the ``Trainer``) is garbage collected or :meth:`OutputDirLock.release` is called. A second
  writer, in this process or another, gets ``CheckpointError`` naming the directory and the holder.
* Leftovers: :func:`clean_leftovers` (called once the lock is held) removes what a killed run can leave at the
  top of ``output_dir``: checkpoint staging / replaced / being-deleted copies (``.<name>.tmp-*``,
  ``.<name>.old-*``, ``.<name>.deleted-*``), orbax's ``*.orbax-checkpoint-tmp*`` directories and atomic-write
  temp files (``.<name>.*.tmp``). A finalised staging or replaced copy whose checkpoint name is missing (the
  kill fell between the two renames of a replacement) is first moved back onto that name, so nothing saved is
  lost.
* Rotation: :func:`periodic_checkpoints` lists the finalised ``checkpoint_{step}.pt`` directories of
  ``output_dir`` oldest first (by the save time in their marker, then step), whichever run wrote them;
  ``CheckpointCallback`` seeds its rotation list with it, so ``max_checkpoints`` bounds the directory across
  runs and restarts.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import weakref
from pathlib import Path
from typing import Any

from worldflux.core.exceptions import CheckpointError

__all__ = [
    "OutputDirLock",
    "acquire_output_dir",
    "clean_leftovers",
    "periodic_checkpoints",
]

_STEP_NAME = re.compile(r"^checkpoint_(\d+)\.pt$")
_HIDDEN_COPY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old|deleted)-[0-9a-f]+$")
_ORBAX_TMP = ".orbax-checkpoint-tmp"
_ATOMIC_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


class OutputDirLock:
    """An exclusive ``flock`` on ``directory`` held by this process until :meth:`release`."""

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self._fd: int | None = fd
        self._finalizer: Any = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the directory up (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            _release_fd(fd)
        if self._finalizer is not None:
            self._finalizer.detach()

    def bind(self, owner: Any) -> OutputDirLock:
        """Release the lock when ``owner`` is garbage collected."""
        if self._fd is not None:
            self._finalizer = weakref.finalize(owner, _release_fd, self._fd)
        return self

    def __repr__(self) -> str:
        return f"OutputDirLock({str(self.directory)!r}, held={self.held})"


def _release_fd(fd: int) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass


def acquire_output_dir(directory: str | os.PathLike[str], owner: Any = None) -> OutputDirLock:
    """Lock ``directory`` (which must exist) for one writer; released with ``owner`` or the process.

    The lock is an exclusive ``flock`` on the directory itself (no file is added to it).

    Raises:
        CheckpointError: another live writer (this process or another) holds the directory; the message names
            it and, where the OS tells (``/proc/locks``), the holder's pid.
    """
    import fcntl

    root = Path(directory)
    try:
        fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CheckpointError(f"Cannot lock output_dir {str(root)!r}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _lock_holder(os.fstat(fd).st_ino)
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise CheckpointError(f"Cannot lock output_dir {str(root)!r}: {exc.strerror or exc}") from exc
        who = "this process" if holder == os.getpid() else f"process {holder}" if holder else "another process"
        raise CheckpointError(
            f"output_dir {str(root)!r} is in use by another Trainer ({who} holds its lock); two writers would "
            "overwrite each other's checkpoints. Use a different output_dir, or stop the other run (in this "
            "process: drop the other Trainer, e.g. `del trainer`)."
        ) from exc
    lock = OutputDirLock(root, fd)
    return lock.bind(owner) if owner is not None else lock


def _lock_holder(inode: int) -> int | None:
    """The pid holding a ``flock`` on the file with ``inode`` according to ``/proc/locks`` (Linux), else None."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
                    return int(fields[4])
    except (OSError, ValueError):
        return None
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def clean_leftovers(directory: str | os.PathLike[str]) -> list[str]:
    """Remove the leftovers of killed runs from the top of ``directory`` (hold its lock first); returns the
    names removed. A finalised hidden copy of a checkpoint whose name is missing is renamed back first."""
    from .checkpoint import MARKER_FILE, is_finalized

    root = Path(directory)
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    restored: set[str] = set()
    removed: list[str] = []
    copies = [(p, _HIDDEN_COPY.match(p.name)) for p in entries]
    # newest finalised copy first, so the most recent save wins the restore
    candidates = []
    for path, match in copies:
        if match and match.group("kind") in ("tmp", "old") and (path / MARKER_FILE).is_file() and is_finalized(path):
            candidates.append((path.stat().st_mtime, path, match.group("name")))
    for _, path, name in sorted(candidates, reverse=True):
        target = root / name
        if name in restored or target.exists() or not _STEP_OR_NAMED.match(name):
            continue
        try:
            os.rename(path, target)
            restored.add(name)
        except OSError:
            pass
    for path in entries:
        if not (path.exists() or path.is_symlink()):
            continue
        name = path.name
        if _HIDDEN_COPY.match(name) or _ORBAX_TMP in name or _ATOMIC_TMP.match(name):
            _remove(path)
            removed.append(name)
    return removed


_STEP_OR_NAMED = re.compile(r"^checkpoint_(\d+|best|final)\.pt$")


def periodic_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """The finalised ``checkpoint_{step}.pt`` directories in ``directory``, oldest first (save time recorded in
    the marker, then step)."""
    from worldflux.core.safe_io import read_json

    from .checkpoint import CHECKPOINT_FORMAT, MARKER_FILE

    root = Path(directory)
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        match = _STEP_NAME.match(entry.name)
        if not match or not entry.is_dir():
            continue
        try:
            marker = read_json(entry / MARKER_FILE, CheckpointError, "checkpoint marker")
        except CheckpointError:
            continue
        if not isinstance(marker, dict) or marker.get("format") != CHECKPOINT_FORMAT:
            continue
        created = marker.get("created")
        created = float(created) if isinstance(created, int | float) else 0.0
        found.append((created, int(match.group(1)), entry))
    return [entry for _, _, entry in sorted(found, key=lambda item: (item[0], item[1]))]
