"""Delegated mode: ``Trainer(OfficialBackendHandle(...), config)`` runs training as a separate job.

``submit()`` launches the JAX training script (``python -m worldflux_jax.train``, CONTRACTS §1) for
``backend="jax"`` under a small supervisor process and returns a ``JobHandle`` at once. The job lives in
``<config.output_dir>/jobs/<job_id>/``:

* ``job.json`` — the job record (id, backend, model id, command, supervisor pid), ``state.json`` — what the
  supervisor records (script pid, exit code, timestamps), ``cancel_requested`` — present once ``cancel`` was
  called; all written atomically by one writer each, so any later process can read them: ``status`` /
  ``logs`` / ``cancel`` work from a process other than the submitter, given the job id and the same
  ``output_dir``;
* ``job.log`` — the script's stdout and stderr, line by line;
* ``run/`` — the script's ``--out`` directory (``metrics.jsonl``, ``checkpoints/``, ``model/``).

The supervisor (``worldflux/training/job_supervisor.py``, run by file path) starts the script, forwards
SIGTERM / SIGINT to it, waits for it and records its exit code; the status follows from that code (0 ->
completed; 143 / 130 after ``cancel`` -> cancelled; anything else -> failed). ``cancel`` asks the script to stop
at its next step boundary (SIGTERM) and waits for it, so its last complete checkpoint stays loadable.

The script's command comes from one place, ``train_command()``: ``[python, -m, worldflux_jax.train]``, or the
``WORLDFLUX_JAX_TRAIN_COMMAND`` environment variable (a shell-quoted command) when set.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from worldflux.core.exceptions import ConfigurationError

from .callbacks import Callback, CallbackList
from .config import TrainingConfig
from .guards import check_training_config
from .job_supervisor import STATE_FILE, write_json
from .trainer import Trainer, TrainingState

__all__ = [
    "KNOWN_BACKENDS",
    "DelegatedTrainer",
    "JobHandle",
    "JobStatus",
    "OfficialBackendHandle",
    "train_command",
]

KNOWN_BACKENDS = ("jax",)
TRAIN_COMMAND_ENV = "WORLDFLUX_JAX_TRAIN_COMMAND"
_JOB_FILE = "job.json"
_CANCEL_FILE = "cancel_requested"
_LOG_FILE = "job.log"
_CANCEL_EXIT_CODES = (143, 130, -int(signal.SIGTERM), -int(signal.SIGINT))
_PRECISION = {False: "f32", True: "bf16"}
_PLATFORMS = {"cpu": "cpu", "cuda": "cuda", "gpu": "cuda", "tpu": "tpu"}


class JobStatus(Enum):
    """Status of a training job."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


_TERMINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class JobHandle:
    """Opaque handle to a submitted training job (``metadata`` holds ``job_dir``, ``out_dir``, ``model_id``)."""

    job_id: str
    backend: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OfficialBackendHandle:
    """A model trained by an external runtime: ``backend`` (``"jax"``), ``model_id`` (``"dreamerv3:ci"`` ...)
    and ``metadata``: ``data`` (a ``ReplayBuffer.save`` file, required by ``submit``), optionally
    ``backend_profile``, ``coordinator`` / ``num_processes`` / ``process_id`` (multi-host)."""

    backend: str
    model_id: str
    metadata: dict[str, Any] = field(default_factory=dict)


def train_command() -> list[str]:
    """The command that runs the JAX training script (before its flags)."""
    override = os.environ.get(TRAIN_COMMAND_ENV, "").strip()
    if override:
        return shlex.split(override)
    return [sys.executable, "-m", "worldflux_jax.train"]


# ---------------------------------------------------------------------------------------------- job records


def _read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def _read_record(job_dir: Path) -> dict[str, Any]:
    """The job record (``job.json``) merged with the supervisor's state (``state.json``) and the cancel flag."""
    record = _read_json(job_dir / _JOB_FILE)
    if record is None:
        raise ConfigurationError(f"Unknown job: no {_JOB_FILE} in {job_dir}")
    record.update(_read_json(job_dir / STATE_FILE, {}) or {})
    record["cancel_requested"] = (job_dir / _CANCEL_FILE).exists()
    return record


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)  # reap our own child so it does not linger as a zombie
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _status_of(record: Mapping[str, Any]) -> JobStatus:
    if record.get("exit_code") is not None:
        code = int(record["exit_code"])
        if code == 0:
            return JobStatus.COMPLETED
        if record.get("cancel_requested") and code in _CANCEL_EXIT_CODES:
            return JobStatus.CANCELLED
        return JobStatus.FAILED
    if _alive(record.get("supervisor_pid")):
        return JobStatus.RUNNING if record.get("child_pid") else JobStatus.PENDING
    return JobStatus.CANCELLED if record.get("cancel_requested") else JobStatus.FAILED


# ---------------------------------------------------------------------------------------------- trainer


class DelegatedTrainer(Trainer):
    """``Trainer`` in delegated mode (built by ``Trainer(handle, config)``). Only ``submit`` / ``status`` /
    ``logs`` / ``cancel`` work; local operations raise ``ConfigurationError``.

    Raises:
        ConfigurationError: an unknown backend (the message lists the known ones), ``model_overrides`` or
            ``ema_decay`` set.
    """

    engine = "delegated"

    def __init__(
        self,
        model: OfficialBackendHandle,
        config: TrainingConfig | None = None,
        callbacks: Sequence[Callback] | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
    ) -> None:
        config = check_training_config(config)
        if model.backend not in KNOWN_BACKENDS:
            raise ConfigurationError(
                f"Unknown delegated backend {model.backend!r} in OfficialBackendHandle; known backends: "
                f"{list(KNOWN_BACKENDS)}"
            )
        profile = str(model.metadata.get("backend_profile", "") or "")
        self.config = config.with_updates(backend=model.backend, backend_profile=profile or config.backend_profile)
        self.model = model
        self.handle = model
        self.execution_mode = "delegated"
        self.state = TrainingState()
        self.callbacks = CallbackList(list(callbacks or []))
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.jobs_dir = Path(config.output_dir) / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ local-only operations

    def _local_only(self, name: str) -> ConfigurationError:
        return ConfigurationError(
            f"Trainer.{name}() is only available for native_torch Trainer instances (local models); this Trainer "
            f"delegates to backend {self.handle.backend!r}. Use submit() / status() / logs() / cancel()."
        )

    def train(self, data: Any = None, num_steps: int | None = None, resume_from: str | None = None) -> Any:
        raise self._local_only("train")

    def evaluate(self, data: Any = None, num_batches: int = 10) -> dict[str, float]:
        raise self._local_only("evaluate")

    def save_checkpoint(self, path: Any = None, *args: Any, **kwargs: Any) -> None:
        raise self._local_only("save_checkpoint")

    def load_checkpoint(self, path: Any = None) -> None:
        raise self._local_only("load_checkpoint")

    def add_callback(self, callback: Callback) -> None:
        self.callbacks.append(callback)

    # ------------------------------------------------------------------ jobs

    def _arguments(self, out_dir: Path, resume: bool) -> list[str]:
        config, meta = self.config, self.handle.metadata
        data = meta.get("data")
        if not data:
            raise ConfigurationError(
                "OfficialBackendHandle.metadata['data'] must name the training data (a ReplayBuffer.save .npz file)"
            )
        if not Path(os.fspath(data)).is_file():
            raise ConfigurationError(f"OfficialBackendHandle.metadata['data']: no such file {data!r}")
        args = [
            "--model", self.handle.model_id,
            "--data", str(Path(os.fspath(data)).resolve()),
            "--steps", str(config.effective_total_steps()),
            "--batch-size", str(config.effective_batch_size()),
            "--seq-len", str(config.effective_sequence_length()),
            "--lr", repr(float(config.learning_rate)),
            "--out", str(out_dir),
            "--seed", str(config.seed),
            "--precision", _PRECISION[bool(config.mixed_precision)],
            "--checkpoint-every", str(config.save_interval),
            "--log-every", str(config.log_interval),
        ]
        if resume:
            args.append("--resume")
        if meta.get("coordinator"):
            args += [
                "--coordinator", str(meta["coordinator"]),
                "--num-processes", str(meta.get("num_processes", 1)),
                "--process-id", str(meta.get("process_id", 0)),
            ]
        return args

    def _job_dir(self, handle: JobHandle | str) -> Path:
        job_id = handle.job_id if isinstance(handle, JobHandle) else str(handle)
        if isinstance(handle, JobHandle) and handle.metadata.get("job_dir"):
            return Path(handle.metadata["job_dir"])
        return self.jobs_dir / job_id

    def submit(self, *, resume_from: str | None = None) -> JobHandle:
        """Launch the training job and return its handle (the job runs in the background).

        `resume_from`: a previous job id or its ``run`` directory; the new job continues from that
        directory's latest complete checkpoint (``--resume``) and writes there.

        Raises:
            ConfigurationError: no training data in the handle's metadata, or an unknown `resume_from`.
        """
        job_id = f"{self.handle.backend}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        job_dir = self.jobs_dir / job_id
        out_dir = job_dir / "run"
        if resume_from:
            previous = self.jobs_dir / str(resume_from) / "run"
            out_dir = previous if previous.is_dir() else Path(os.fspath(resume_from))
            if not out_dir.is_dir():
                raise ConfigurationError(f"resume_from={resume_from!r} is neither a job id nor a run directory")
        command = train_command() + self._arguments(out_dir.resolve(), resume=bool(resume_from))
        job_dir.mkdir(parents=True)
        env = {}
        platform = _PLATFORMS.get(str(self.config.resolve_device()).split(":")[0])
        if platform is not None:
            env["JAX_PLATFORMS"] = platform
        record = {
            "job_id": job_id,
            "backend": self.handle.backend,
            "model_id": self.handle.model_id,
            "command": command,
            "env": env,
            "out_dir": str(out_dir.resolve()),
            "log_path": str((job_dir / _LOG_FILE).resolve()),
            "created_at": time.time(),
            "supervisor_pid": None,
        }
        write_json(job_dir / _JOB_FILE, record)
        supervisor = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("job_supervisor.py")), str(job_dir.resolve())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        record["supervisor_pid"] = supervisor.pid
        write_json(job_dir / _JOB_FILE, record)
        return JobHandle(
            job_id=job_id,
            backend=self.handle.backend,
            metadata={
                "job_dir": str(job_dir.resolve()),
                "out_dir": record["out_dir"],
                "model_id": self.handle.model_id,
            },
        )

    def status(self, handle: JobHandle | str) -> JobStatus:
        """The job's status, read from its record on disk (works from any process)."""
        job_dir = self._job_dir(handle)
        status = _status_of(_read_record(job_dir))
        if status is JobStatus.FAILED:
            status = _status_of(_read_record(job_dir))  # the supervisor may just have written the exit code
        return status

    def logs(self, handle: JobHandle | str, *, poll_interval: float = 0.05) -> Iterator[str]:
        """The job's log lines (without newlines) as they are written, until the job has ended and every line
        was read; after the job ended, all of its lines."""
        job_dir = self._job_dir(handle)
        log_path = job_dir / _LOG_FILE
        while not log_path.exists():
            if self.status(handle) in _TERMINAL:
                return
            time.sleep(poll_interval)
        with open(log_path, encoding="utf-8", errors="replace") as stream:
            pending = ""
            while True:
                chunk = stream.readline()
                if chunk:
                    pending += chunk
                    if pending.endswith("\n"):
                        yield pending.rstrip("\n")
                        pending = ""
                    continue
                if self.status(handle) in _TERMINAL:
                    rest = stream.read()
                    lines = (pending + rest).splitlines()
                    yield from lines
                    return
                time.sleep(poll_interval)

    def cancel(self, handle: JobHandle | str, *, timeout: float = 60.0) -> None:
        """Stop the job at its next step boundary and wait for it (up to `timeout` seconds, then kill it);
        its last complete checkpoint stays loadable. No-op for a job that has ended."""
        job_dir = self._job_dir(handle)
        record = _read_record(job_dir)
        if _status_of(record) in _TERMINAL:
            return
        (job_dir / _CANCEL_FILE).touch()
        pid = record.get("supervisor_pid")
        if isinstance(pid, int) and _alive(pid):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.status(handle) not in _TERMINAL:
            if time.monotonic() > deadline:
                if isinstance(pid, int) and _alive(pid):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
                break
            time.sleep(0.05)

    def __repr__(self) -> str:
        return f"Trainer(delegated, backend={self.handle.backend!r}, model_id={self.handle.model_id!r})"
