"""Training backends (reference ``worldflux.training.backend``): where a training job runs.

* ``TrainingBackend`` — the protocol: ``submit(config: dict) -> JobHandle``, ``status``, ``logs``, ``cancel``.
* ``LocalBackend`` — runs ``Trainer(config["model"], config["training_config"]).train(config["data"])`` in this
  process, synchronously: the job is ``completed`` (or ``failed``) when ``submit`` returns; ``logs`` yields
  the log records the run emitted (``worldflux`` loggers) and, for a failure, the error.
* ``ExecutionDelegatingBackend`` — runs the job as a separate process through delegated mode
  (``config["model_handle"]`` an ``OfficialBackendHandle``, ``config["training_config"]``, optional
  ``config["resume_from"]``); see ``worldflux.training.delegated``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from worldflux.core.exceptions import ConfigurationError

from .config import TrainingConfig
from .delegated import DelegatedTrainer, JobHandle, JobStatus, OfficialBackendHandle

__all__ = ["ExecutionDelegatingBackend", "LocalBackend", "TrainingBackend"]


@runtime_checkable
class TrainingBackend(Protocol):
    """Protocol for training execution backends."""

    def submit(self, config: dict[str, Any]) -> JobHandle: ...

    def status(self, handle: JobHandle) -> JobStatus: ...

    def logs(self, handle: JobHandle) -> Iterator[str]: ...

    def cancel(self, handle: JobHandle) -> None: ...


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


class LocalBackend:
    """Synchronous in-process training (see the module docstring)."""

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[JobStatus, list[str]]] = {}

    def submit(self, config: dict[str, Any]) -> JobHandle:
        """Train ``config["model"]`` on ``config["data"]`` with ``config.get("training_config")``.

        Raises:
            ConfigurationError: ``model`` or ``data`` missing from `config`.
        """
        from .trainer import Trainer

        missing = [k for k in ("model", "data") if config.get(k) is None]
        if missing:
            raise ConfigurationError(f"LocalBackend.submit(config) needs keys {missing} (model, data)")
        job_id = f"local-{uuid.uuid4().hex[:8]}"
        capture = _Capture()
        root = logging.getLogger("worldflux")
        root.addHandler(capture)
        try:
            trainer = Trainer(config["model"], config.get("training_config") or TrainingConfig())
            trainer.train(config["data"], num_steps=config.get("num_steps"), resume_from=config.get("resume_from"))
            status = JobStatus.COMPLETED
        except Exception as exc:  # noqa: BLE001 - a failed job is reported through status/logs
            capture.lines.append(f"ERROR {type(exc).__name__}: {exc}")
            status = JobStatus.FAILED
        finally:
            root.removeHandler(capture)
        self._jobs[job_id] = (status, capture.lines)
        metadata = {k: v for k, v in config.items() if k not in ("model", "data")}
        return JobHandle(job_id=job_id, backend="local", metadata=metadata)

    def _job(self, handle: JobHandle) -> tuple[JobStatus, list[str]]:
        job = self._jobs.get(handle.job_id)
        if job is None:
            raise ConfigurationError(
                f"Unknown local job {handle.job_id!r} (jobs of this LocalBackend: {list(self._jobs)})"
            )
        return job

    def status(self, handle: JobHandle) -> JobStatus:
        return self._job(handle)[0]

    def logs(self, handle: JobHandle) -> Iterator[str]:
        return iter(list(self._job(handle)[1]))

    def cancel(self, handle: JobHandle) -> None:
        """No-op: a local job has ended when ``submit`` returns."""
        self._job(handle)


class ExecutionDelegatingBackend:
    """Training as a separate process through delegated mode (see the module docstring)."""

    def __init__(self) -> None:
        self._trainers: dict[str, DelegatedTrainer] = {}

    def submit(self, config: dict[str, Any]) -> JobHandle:
        """Submit ``config["model_handle"]`` with ``config["training_config"]`` (delegated mode).

        Raises:
            ConfigurationError: no ``model_handle`` (an ``OfficialBackendHandle``) in `config`.
        """
        from .trainer import Trainer

        handle = config.get("model_handle")
        if not isinstance(handle, OfficialBackendHandle):
            raise ConfigurationError("ExecutionDelegatingBackend requires model_handle=OfficialBackendHandle.")
        trainer = Trainer(handle, config.get("training_config") or TrainingConfig())
        job = trainer.submit(resume_from=config.get("resume_from"))
        self._trainers[job.job_id] = trainer
        return job

    def _trainer(self, handle: JobHandle) -> DelegatedTrainer:
        trainer = self._trainers.get(handle.job_id)
        if trainer is None:
            raise ConfigurationError(f"Unknown job {handle.job_id!r}: not submitted through this backend")
        return trainer

    def status(self, handle: JobHandle) -> JobStatus:
        return self._trainer(handle).status(handle)

    def logs(self, handle: JobHandle) -> Iterator[str]:
        return self._trainer(handle).logs(handle)

    def cancel(self, handle: JobHandle) -> None:
        self._trainer(handle).cancel(handle)
