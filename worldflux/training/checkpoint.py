"""Training checkpoints: orbax-checkpoint directories, written asynchronously and finalised atomically.

A checkpoint is a DIRECTORY (the documented names ``checkpoint_{step}.pt``, ``checkpoint_best.pt`` and
``checkpoint_final.pt`` are kept; with orbax they are folders, not torch files) holding

* ``state/`` — every array of the trainer's state pytree (model params, optimizer state including the
  schedule's step count, the step counter, the RNG key data, TD-MPC2's target Q parameters), written by
  ``orbax.checkpoint`` (OCDBT/tensorstore) as a flat mapping ``leaf_00000, leaf_00001, ...``;
* ``worldflux_checkpoint.json`` — the finalisation marker, written LAST: the format name and schema version,
  the tree path, shape, dtype and a 64-bit fingerprint of every leaf, and the trainer metadata (global_step,
  best_loss, TrainingConfig dict, scheduler state, model config, ...).

Writing (:class:`CheckpointWriter`): ``save`` copies the arrays to host memory (so the caller may donate or
overwrite its device buffers right away) and queues the write; a background thread writes the queued saves
in order with orbax (``Checkpointer(CompositeCheckpointHandler())``) into a hidden staging directory
``.<name>.tmp-<id>`` (orbax itself writes into ``<staging>.orbax-checkpoint-tmp`` and renames when done),
fingerprints the host copies, writes the marker (temp file, fsync, rename) and moves the staging directory
onto the target name. Replacing an existing checkpoint is two renames (old -> ``.<name>.old-<id>``, staging
-> name) followed by deleting the old copy. A process killed at any moment therefore leaves every previously
finalised checkpoint intact: at worst the hidden staging or old directory of the one being replaced survives,
and :func:`restore_checkpoint` falls back to the newest finalised one of those (with a ``UserWarning``) when
the target name itself is missing. (orbax's ``AsyncCheckpointer`` is not used because its ``save`` waits for
the previous save to commit; the queue lets a "best" save follow a periodic one without stalling training.)
Pending saves are finished at interpreter exit.

Reading (:func:`restore_checkpoint`) raises ``CheckpointError`` naming the path and the problem when the path
is missing, is not a directory, has no finalisation marker (interrupted save or not a checkpoint), has an
unreadable marker, does not match the trainer's state structure, cannot be read by orbax, or whose arrays do
not match the fingerprints recorded at save time (corruption).
"""

from __future__ import annotations

import atexit
import math
import os
import queue
import re
import shutil
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from worldflux.core.exceptions import CheckpointError
from worldflux.core.safe_io import fsync_dir, read_json, write_json_atomic

from .checkpoint_meta import metadata_fingerprint, validate_metadata

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_SCHEMA_VERSION",
    "MARKER_FILE",
    "CheckpointSnapshot",
    "CheckpointWriter",
    "delete_checkpoint",
    "flatten_tree",
    "is_finalized",
    "latest_checkpoint",
    "metadata_fingerprint",
    "read_checkpoint_metadata",
    "restore_checkpoint",
    "validate_metadata",
]

CHECKPOINT_FORMAT = "worldflux-jax.orbax-checkpoint"
CHECKPOINT_SCHEMA_VERSION = 1
MARKER_FILE = "worldflux_checkpoint.json"
_STATE_ITEM = "state"
_STEP_NAME = re.compile(r"^checkpoint_(\d+)\.pt$")


# ---------------------------------------------------------------------------------------------- helpers


def flatten_tree(tree: Any) -> tuple[list[str], list[Any], Any]:
    """``(paths, leaves, treedef)`` of a pytree; paths are ``jax.tree_util.keystr`` strings."""
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [jax.tree_util.keystr(path) for path, _ in with_path]
    leaves = [leaf for _, leaf in with_path]
    return paths, leaves, treedef


def _leaf_name(index: int) -> str:
    return f"leaf_{index:05d}"


def _bits(x: np.ndarray) -> np.ndarray:
    """The bit pattern of `x` as a flat uint64 vector of 32-bit words (every dtype JAX stores)."""
    x = np.ascontiguousarray(x)
    if x.dtype == np.bool_:
        return x.astype(np.uint64).reshape(-1)
    size = x.dtype.itemsize
    if size in (4, 8):
        words = x.reshape(-1).view(np.uint32)
    elif size == 2:
        words = x.reshape(-1).view(np.uint16)
    elif size == 1:
        words = x.reshape(-1).view(np.uint8)
    else:  # pragma: no cover - no such JAX dtype today
        raise CheckpointError(f"cannot fingerprint arrays of dtype {x.dtype}")
    return words.astype(np.uint64)


def _fingerprint(x: Any) -> list[int]:
    """``[sum, position-weighted sum]`` of the 32-bit words of `x`, both mod 2**32 (detects corrupted data)."""
    bits = _bits(np.asarray(x))
    mask = np.uint64(0xFFFFFFFF)
    weights = (np.arange(bits.shape[0], dtype=np.uint64) * np.uint64(2654435761) + np.uint64(1)) & mask
    plain = int(np.sum(bits & mask, dtype=np.uint64) & mask)
    weighted = int(np.sum((bits * weights) & mask, dtype=np.uint64) & mask)
    return [plain, weighted]


def _json_safe(value: Any) -> Any:
    """JSON-encodable copy: non-finite floats -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "value") and isinstance(value.value, str | int | float):  # enums
        return value.value
    return str(value)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _hidden_siblings(target: Path, kind: str) -> list[Path]:
    """Hidden staging (``kind="tmp"``), replaced (``"old"``) or being-deleted (``"deleted"``) directories of
    ``target``."""
    prefix = f".{target.name}.{kind}-"
    try:
        return [p for p in target.parent.iterdir() if p.name.startswith(prefix)]
    except FileNotFoundError:
        return []


# ---------------------------------------------------------------------------------------------- markers


def _read_marker(path: Path) -> dict[str, Any]:
    marker = path / MARKER_FILE
    if not marker.is_file():
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is incomplete: it has no finalisation marker {MARKER_FILE!r} (the save was "
            "interrupted before it finished, or the directory is not a worldflux-jax checkpoint)"
        )
    try:
        payload = read_json(marker, CheckpointError, f"checkpoint marker {MARKER_FILE!r}")
    except CheckpointError as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} is corrupted: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupted: marker {MARKER_FILE!r} does not describe a "
            f"{CHECKPOINT_FORMAT!r} checkpoint"
        )
    version = payload.get("schema_version")
    if version != CHECKPOINT_SCHEMA_VERSION:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} has schema_version {version!r}; this version reads {CHECKPOINT_SCHEMA_VERSION}"
        )
    leaves = payload.get("leaves")
    if not isinstance(leaves, list) or not all(_valid_entry(e) for e in leaves):
        raise CheckpointError(f"Checkpoint {str(path)!r} is corrupted: marker has no valid 'leaves' table")
    return payload


def _valid_entry(entry: Any) -> bool:
    """A leaf record of the marker: path (str), shape (list of non-negative ints), dtype (str)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return False
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return False
    fingerprint = entry.get("fingerprint")
    if fingerprint is not None and not (
        isinstance(fingerprint, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in fingerprint)
    ):
        return False
    return isinstance(entry.get("dtype"), str)


def is_finalized(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a checkpoint directory whose save completed (it has a readable marker)."""
    try:
        _read_marker(Path(path))
    except CheckpointError:
        return False
    return True


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The trainer metadata recorded in a finalised checkpoint (global_step, best_loss, config, ...).

    Raises:
        CheckpointError: the path is missing or not a finalised checkpoint.
    """
    resolved = _resolve_existing(Path(path))
    return validate_metadata(str(path), _read_marker(resolved))


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The finalised ``checkpoint_{step}.pt`` in ``directory`` with the largest step, or None."""
    root = Path(directory)
    if not root.is_dir():
        return None
    candidates = []
    for entry in root.iterdir():
        match = _STEP_NAME.match(entry.name)
        if match and is_finalized(entry):
            candidates.append((int(match.group(1)), entry))
    return max(candidates)[1] if candidates else None


def delete_checkpoint(path: str | os.PathLike[str]) -> None:
    """Remove a checkpoint directory (or file) and any hidden staging/old copies of it.

    The directory is first renamed to a hidden name (atomic), so an interrupted deletion never leaves a
    half-deleted checkpoint under its visible name.
    """
    target = Path(path)
    if target.exists() or target.is_symlink():
        doomed = target.with_name(f".{target.name}.deleted-{uuid.uuid4().hex[:12]}")
        try:
            os.rename(target, doomed)
        except OSError:
            doomed = target
        _remove(doomed)
    for kind in ("old", "tmp", "deleted"):
        for sibling in _hidden_siblings(target, kind):
            _remove(sibling)


# ---------------------------------------------------------------------------------------------- writing


def _install(staging: Path, target: Path) -> None:
    """Move the finalised ``staging`` directory onto ``target`` (replacing it: old -> hidden, staging -> target,
    delete old), then drop leftovers of interrupted saves of the same name."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
        os.rename(target, old)
    os.rename(staging, target)
    fsync_dir(target.parent)
    if old is not None:
        _remove(old)
    for kind in ("old", "tmp", "deleted"):
        for sibling in _hidden_siblings(target, kind):
            _remove(sibling)


class _Job:
    """A queued save (``arrays`` set) or deletion (``arrays`` None) of ``target``."""

    __slots__ = ("target", "arrays", "payload", "copies")

    def __init__(
        self,
        target: Path,
        arrays: dict[str, Any] | None,
        payload: dict[str, Any] | None = None,
        copies: list[Path] | None = None,
    ) -> None:
        self.target = target
        self.arrays = arrays
        self.payload = payload
        self.copies = copies or []


_WRITERS: weakref.WeakSet[CheckpointWriter] = weakref.WeakSet()


@atexit.register
def _finish_pending_saves() -> None:
    for writer in list(_WRITERS):
        try:
            writer.wait()
        except Exception:  # noqa: BLE001 - nothing left to report to at exit
            pass


_EXIT_HOOK = threading.Lock()
_exit_hook_registered = False


def _register_exit_hook() -> None:
    """Finish queued saves before the interpreter's thread shutdown: orbax writes through a thread pool that
    refuses new work once ``concurrent.futures`` has run its exit hook, which happens before ``atexit``.
    Threading exit hooks run last-registered first, so registering after orbax (and with it
    ``concurrent.futures``) was imported puts this one ahead of the pool's shutdown."""
    global _exit_hook_registered
    with _EXIT_HOOK:
        if _exit_hook_registered:
            return
        import orbax.checkpoint  # noqa: F401 - imports concurrent.futures, whose hook must run after ours

        register = getattr(threading, "_register_atexit", None)
        try:
            if register is not None:
                register(_finish_pending_saves)
        except RuntimeError:  # the interpreter is already shutting down
            pass
        _exit_hook_registered = True


@jax.jit
def _copy_arrays(leaves: list[jax.Array]) -> list[jax.Array]:
    """Fresh device buffers holding `leaves` (never aliases of them: the step may donate the originals)."""
    return [jnp.array(leaf, copy=True) for leaf in leaves]


class CheckpointSnapshot:
    """Copies of a state's arrays (``leaf_00000`` ...; JAX arrays stay on their device until written) and the
    marker payload, taken at one moment by :meth:`CheckpointWriter.snapshot` and written later by
    :meth:`CheckpointWriter.write`."""

    __slots__ = ("arrays", "payload")

    def __init__(self, arrays: dict[str, Any], payload: dict[str, Any]) -> None:
        self.arrays = arrays
        self.payload = payload


class CheckpointWriter:
    """Saves state pytrees as orbax checkpoints on a background thread, in order, finalised atomically.

    ``save(path, tree, metadata, wait=False)`` copies the arrays (one jitted device-side copy, dispatched like a
    step: the call does not wait for the device) and queues the write; the background thread moves the copies to
    host memory and writes them. The call returns without waiting for earlier saves. Up to ``max_pending`` saves
    may be queued (one copy of the state each); a further ``save`` waits for a slot. ``wait()`` blocks until
    every queued save is finalised and re-raises the first failure as ``CheckpointError``.
    """

    def __init__(self, max_pending: int = 2) -> None:
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max(1, max_pending))
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._checkpointer: Any = None
        self._last_write_seconds = 0.0
        _WRITERS.add(self)

    @property
    def busy(self) -> bool:
        """True while saves are queued or being written."""
        return self._queue.unfinished_tasks > 0

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="worldflux-checkpoint", daemon=True)
                self._thread.start()

    @property
    def last_write_seconds(self) -> float:
        """Wall-clock seconds the most recent finished write took (0.0 before the first)."""
        return self._last_write_seconds

    def snapshot(self, tree: Any, metadata: Mapping[str, Any] | None = None) -> CheckpointSnapshot:
        """Copy ``tree`` (a pytree of arrays) with ``metadata`` (JSON-able), for a later :meth:`write`.

        JAX arrays are copied on their device by one jitted function, dispatched without waiting: the copy
        runs after the computations already queued (the step that produced the state) and before any that
        donates those buffers, so the caller's loop keeps the device busy. Other leaves are copied to host
        memory at once. The writer thread moves the device copies to host memory when it writes them.
        """
        paths, leaves, _ = flatten_tree(tree)
        on_device = [i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.Array)]
        try:
            copied = _copy_arrays([leaves[i] for i in on_device])
        except ValueError:  # leaves on several devices cannot share one jitted call: copy them one by one
            copied = [jnp.array(leaves[i], copy=True) for i in on_device]
        copies = dict(zip(on_device, copied, strict=True))
        arrays = {
            _leaf_name(i): copies[i] if i in copies else np.array(leaf, copy=True) for i, leaf in enumerate(leaves)
        }
        table = [
            {"path": p, "shape": list(np.shape(a)), "dtype": str(np.dtype(a.dtype))}
            for p, a in zip(paths, arrays.values(), strict=True)
        ]
        payload = {
            "format": CHECKPOINT_FORMAT,
            "schema_version": CHECKPOINT_SCHEMA_VERSION,
            "created": time.time(),
            "leaves": table,
            "metadata": _json_safe(dict(metadata or {})),
        }
        payload["metadata_sha256"] = metadata_fingerprint(payload["metadata"])
        return CheckpointSnapshot(arrays, payload)

    def save(
        self,
        path: str | os.PathLike[str],
        tree: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
        copies: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        """Save ``tree`` (a pytree of arrays) and ``metadata`` (JSON-able) as the checkpoint ``path``:
        :meth:`snapshot` then :meth:`write`.

        Args:
            path: the checkpoint directory to create or replace (parents are created).
            tree: the arrays; copied (on their device) before any computation dispatched later, so the caller may
                donate them.
            metadata: trainer metadata stored in the marker (non-finite floats are stored as null).
            wait: block until this (and every earlier) checkpoint is finalised on disk.
            copies: further checkpoint paths that receive a copy of the same checkpoint (written once, then
                copied on the background thread and installed with the same atomic rename).

        Raises:
            CheckpointError: an earlier background save failed, or (``wait=True``) this one did.
        """
        self._raise_errors()
        self.write(path, self.snapshot(tree, metadata), wait=wait, copies=copies)

    def write(
        self,
        path: str | os.PathLike[str],
        snapshot: CheckpointSnapshot,
        *,
        wait: bool = True,
        copies: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        """Queue ``snapshot`` (from :meth:`snapshot`) to be written as the checkpoint ``path`` (and ``copies``);
        see :meth:`save` for the arguments."""
        self._raise_errors()
        target = Path(os.path.abspath(os.fspath(path)))
        extra = [Path(os.path.abspath(os.fspath(c))) for c in copies]
        _register_exit_hook()
        self._ensure_thread()
        self._queue.put(_Job(target, snapshot.arrays, snapshot.payload, extra))
        if wait:
            self.wait()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if job.arrays is None:
                    delete_checkpoint(job.target)
                else:
                    start = time.perf_counter()
                    self._write(job)
                    self._last_write_seconds = time.perf_counter() - start
            except BaseException as exc:  # noqa: BLE001 - reported by wait() / the next save()
                with self._lock:
                    self._errors.append(exc)
            finally:
                self._queue.task_done()

    def delete(self, path: str | os.PathLike[str]) -> None:
        """Delete a checkpoint after every save queued before this call (so a queued save of ``path`` cannot
        re-create it afterwards)."""
        self._ensure_thread()
        self._queue.put(_Job(Path(os.path.abspath(os.fspath(path))), None))

    def _write(self, job: _Job) -> None:
        import orbax.checkpoint as ocp

        assert job.arrays is not None and job.payload is not None
        job.arrays = {name: np.asarray(array) for name, array in job.arrays.items()}  # device copies -> host
        target = job.target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
        current = staging
        try:
            if self._checkpointer is None:
                self._checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
            self._checkpointer.save(
                staging, args=ocp.args.Composite(**{_STATE_ITEM: ocp.args.StandardSave(job.arrays)})
            )
            if not staging.is_dir():
                raise CheckpointError(f"orbax did not produce the staging directory {str(staging)!r}")
            for entry, array in zip(job.payload["leaves"], job.arrays.values(), strict=True):
                entry["fingerprint"] = _fingerprint(array)
            write_json_atomic(staging / MARKER_FILE, job.payload, make_parents=False)
            _install(staging, target)
            for copy in job.copies:
                if copy == target:
                    continue
                copy.parent.mkdir(parents=True, exist_ok=True)
                current = copy.with_name(f".{copy.name}.tmp-{uuid.uuid4().hex[:12]}")
                shutil.copytree(target, current)
                _install(current, copy)
        except BaseException as exc:
            _remove(current)
            _remove(Path(f"{current}.orbax-checkpoint-tmp"))
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"Failed to save checkpoint to {str(target)!r}: {type(exc).__name__}: {exc}") from exc

    def _raise_errors(self) -> None:
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise errors[0]

    def wait(self) -> None:
        """Block until every queued save is finalised; raise ``CheckpointError`` if one failed."""
        if self._thread is not None:
            self._queue.join()
        self._raise_errors()

    def close(self) -> None:
        """Finish pending work and stop the background thread."""
        try:
            self.wait()
        finally:
            thread = self._thread
            if thread is not None and thread.is_alive():
                self._queue.put(None)
                thread.join()
            self._thread = None
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None


# ---------------------------------------------------------------------------------------------- reading


def _resolve_existing(path: Path) -> Path:
    """``path`` itself, or — when it is missing because a replacement was interrupted — the newest finalised
    hidden staging/old copy of it (with a ``UserWarning``)."""
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(
                f"Checkpoint {str(path)!r} is not a worldflux-jax checkpoint: expected a directory written by "
                "Trainer.save_checkpoint (orbax format), found a file"
            )
        return path
    candidates = []
    for sibling in _hidden_siblings(path, "tmp") + _hidden_siblings(path, "old"):
        try:
            created = float(_read_marker(sibling).get("created", 0.0))
        except CheckpointError:
            continue
        candidates.append((created, sibling))
    if candidates:
        chosen = max(candidates)[1]
        warnings.warn(
            f"Checkpoint {str(path)!r} is missing because its replacement was interrupted; loading the finalised "
            f"copy {str(chosen)!r} instead",
            UserWarning,
            stacklevel=3,
        )
        return chosen
    raise CheckpointError(f"Checkpoint not found: {str(path)!r}")


def restore_checkpoint(
    path: str | os.PathLike[str],
    template: Any,
    *,
    sharding: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Read a checkpoint into the structure of ``template``.

    Args:
        path: the checkpoint directory.
        template: a pytree with the same structure, shapes and dtypes as the saved one (e.g. the trainer's
            current state); its leaves may be arrays or ``jax.ShapeDtypeStruct``s.
        sharding: where to place the restored arrays (default: the template leaves' shardings, else the
            default device).

    Returns:
        ``(tree, metadata)``: the restored pytree and the trainer metadata dict.

    Raises:
        CheckpointError: missing path, incomplete (no marker) or corrupted checkpoint, structure mismatch,
            unreadable arrays or fingerprint mismatch; the message names the path and the problem.
    """
    try:
        shown = os.fspath(path)
        return _restore(Path(os.path.abspath(shown)), shown, template, sharding)
    except CheckpointError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, MemoryError, RecursionError) as exc:
        raise CheckpointError(f"Failed to load checkpoint from {str(path)!r}: {type(exc).__name__}: {exc}") from exc


def _restore(target: Path, shown: str, template: Any, sharding: Any) -> tuple[Any, dict[str, Any]]:
    import orbax.checkpoint as ocp

    resolved = _resolve_existing(target)
    marker = _read_marker(resolved)
    metadata = validate_metadata(shown, marker)
    entries = marker["leaves"]
    paths, leaves, treedef = flatten_tree(template)
    saved_paths = [str(e["path"]) for e in entries]
    legacy = [_legacy_path(p) is not None for p in saved_paths]
    saved_paths = [_legacy_path(p) or p for p in saved_paths]
    if saved_paths != paths:
        missing = [p for p in paths if p not in saved_paths][:5]
        extra = [p for p in saved_paths if p not in paths][:5]
        raise CheckpointError(
            f"Checkpoint {shown!r} does not match this trainer's state: missing leaves {missing}, unexpected "
            f"leaves {extra} (was it saved for another model or optimizer configuration?)"
        )
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {}
    for i, (entry, leaf) in enumerate(zip(entries, leaves, strict=True)):
        shape = tuple(int(d) for d in np.shape(leaf))
        if legacy[i]:
            shape = shape[::-1]  # stored in the legacy layout, transposed after reading
        dtype = np.dtype(leaf.dtype)
        if list(shape) != list(entry.get("shape", [])) or str(dtype) != str(entry.get("dtype")):
            raise CheckpointError(
                f"Checkpoint {shown!r} does not match this trainer's state: leaf {entry['path']} was saved with "
                f"shape {tuple(entry.get('shape', []))} {entry.get('dtype')}, expected {shape} {dtype}"
            )
        leaf_sharding = sharding or getattr(leaf, "sharding", None) or default
        abstract[_leaf_name(i)] = jax.ShapeDtypeStruct(shape, dtype, sharding=leaf_sharding)
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    try:
        restored = checkpointer.restore(
            resolved, args=ocp.args.Composite(**{_STATE_ITEM: ocp.args.StandardRestore(abstract)})
        )[_STATE_ITEM]
    except Exception as exc:  # noqa: BLE001 - orbax/tensorstore raise many types
        raise CheckpointError(f"Failed to load checkpoint from {shown!r}: {type(exc).__name__}: {exc}") from exc
    finally:
        checkpointer.close()
    arrays = [restored[_leaf_name(i)] for i in range(len(entries))]
    _verify_fingerprints(shown, entries, arrays)
    arrays = [jax.device_put(a.T, a.sharding) if old else a for a, old in zip(arrays, legacy, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, arrays), metadata


# DreamerV3 GRU weights were stored as Flax-style kernels `[in, 3H]` until the cell switched to torch's layout
# `[3H, in]` (`worldflux_jax.nn.GRUCell`). Checkpoints written before keep their leaves (parameters and the
# optimizer moments alike) under the old names; reading maps them onto the new ones, transposed.
_LEGACY_GRU_LEAVES = {"['gru']['kernel_ih']": "['gru']['weight_ih']", "['gru']['kernel_hh']": "['gru']['weight_hh']"}


def _legacy_path(path: str) -> str | None:
    """The current name of a leaf saved under a legacy name, else None."""
    for old, new in _LEGACY_GRU_LEAVES.items():
        if path.endswith(old):
            return path[: -len(old)] + new
    return None


def _verify_fingerprints(shown: str, entries: Sequence[Mapping[str, Any]], arrays: list[Any]) -> None:
    for entry, array in zip(entries, arrays, strict=True):
        expected = entry.get("fingerprint")
        if expected is None or [int(v) for v in expected] != _fingerprint(jax.device_get(array)):
            raise CheckpointError(
                f"Checkpoint {shown!r} is corrupted: the data of leaf {entry['path']} does not match the "
                f"fingerprint recorded when it was saved"
            )
