"""Training callbacks: hooks the ``Trainer`` calls around training, epochs and steps.

Hooks (all default no-ops, called with the trainer): ``on_train_begin``, ``on_epoch_begin``,
``on_step_begin``, ``on_step_end``, ``on_epoch_end``, ``on_train_end``. The order in one ``Trainer.train``::

    on_train_begin
      on_epoch_begin
        on_step_begin, <step>, on_step_end      (once per step; global_step is already incremented)
        ...
      on_epoch_end                              (at the epoch boundary, or when training stops)
      on_epoch_begin ...
    on_train_end                                (then the final checkpoint and run_manifest.json)

What an epoch is: for a data source with ``sample(...)`` and a ``len()`` (a ``ReplayBuffer``), one epoch is
``max(1, len(data) // (batch_size * sequence_length))`` steps (as many sampled transitions as are stored) and
``state.epoch == global_step // steps_per_epoch``; without ``len()`` a ``train()`` call is one epoch. For an
iterable, an epoch is one pass over it. ``trainer.state.epoch`` counts completed epochs.

Two hook signatures are supported (the documentation shows both): the reference's ``hook(self, trainer)``,
and the older ``hook(self, step, losses)`` of the Training API page (``losses`` is ``trainer.state.metrics``).
The form is chosen per method from its signature: one positional parameter -> ``(trainer)``, two ->
``(step, metrics)``, none -> ``()``.

Metrics and device syncs: ``trainer.state.metrics`` is a lazily-materialised mapping; reading a value waits for
that step to finish on the device. The bundled callbacks only read metrics on steps where the trainer has
fetched them anyway (``trainer.metrics_synced``: every ``TrainingConfig.log_interval`` steps and the last
step), except ``LoggingCallback`` with its own ``log_interval``. So ``CheckpointCallback(save_best=True)``
compares the loss, and ``EarlyStoppingCallback`` checks its patience, at those steps (patience still counts
steps).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
import warnings
from abc import ABC
from collections.abc import Iterable, Iterator
from typing import Any

from worldflux.telemetry.wasr import make_run_id, write_event  # noqa: F401 - the reference's names here

# The TensorBoard writer behind LoggingCallback(use_tensorboard=True) (importable from here, as before).
from .tensorboard import EventFileWriter, crc32c, make_summary_writer, masked_crc32c  # noqa: F401

__all__ = [
    "Callback",
    "CallbackAdapter",
    "CallbackList",
    "CheckpointCallback",
    "DiagnosisCallback",
    "EarlyStoppingCallback",
    "EvalCallback",
    "HeartbeatCallback",
    "LoggingCallback",
    "ProgressCallback",
    "TrainingReportCallback",
    "default_callbacks",
]

logger = logging.getLogger("worldflux.training")

HOOKS: tuple[str, ...] = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_step_begin",
    "on_step_end",
)


class Callback(ABC):  # noqa: B024 - every hook is optional, as in the reference
    """Base class for training callbacks; override any hook. Each is called with the trainer.

    | Hook | When called |
    |---|---|
    | ``on_train_begin(trainer)`` | at the start of ``Trainer.train`` (after resuming, before the first step) |
    | ``on_train_end(trainer)`` | after the last step, before the final checkpoint and the run manifest |
    | ``on_epoch_begin(trainer)`` | before the first step of each epoch |
    | ``on_epoch_end(trainer)`` | after the last step of each epoch, and when training stops mid-epoch |
    | ``on_step_begin(trainer)`` | before each training step (``global_step`` = steps done so far) |
    | ``on_step_end(trainer)`` | after each step (``global_step`` incremented, ``state.metrics`` = this step) |

    A hook may instead be written ``def on_step_end(self, step, losses)``; it then receives
    ``trainer.state.global_step`` and ``trainer.state.metrics``.
    """

    def on_train_begin(self, trainer: Any) -> None:  # noqa: B027 - optional hook
        """Called at the start of training."""

    def on_train_end(self, trainer: Any) -> None:  # noqa: B027 - optional hook
        """Called at the end of training."""

    def on_epoch_begin(self, trainer: Any) -> None:  # noqa: B027 - optional hook
        """Called at the start of each epoch."""

    def on_epoch_end(self, trainer: Any) -> None:  # noqa: B027 - optional hook
        """Called at the end of each epoch."""

    def on_step_begin(self, trainer: Any) -> None:  # noqa: B027 - optional hook
        """Called before each training step."""

    def on_step_end(self, trainer: Any) -> None:  # noqa: B027 - optional hook
        """Called after each training step."""


def _hook_arity(method: Any) -> int:
    """0, 1 (``(trainer)``) or 2 (``(step, metrics)``) positional arguments for a bound hook."""
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return 1
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 1
    required = [p for p in positional if p.default is p.empty]
    if len(required) >= 2:
        return 2
    if not positional:
        return 0
    return 1


class CallbackList:
    """An ordered list of callbacks with one fan-out method per hook (``on_step_end(trainer)`` calls every
    callback's ``on_step_end`` in order)."""

    def __init__(self, callbacks: Iterable[Any] | None = None) -> None:
        self.callbacks: list[Any] = []
        self._plans: dict[str, list[tuple[Any, int]]] = {}
        for callback in callbacks or []:
            self.append(callback)

    def append(self, callback: Any) -> None:
        """Add a callback at the end."""
        self.callbacks.append(callback)
        self._plans.clear()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def _plan(self, hook: str) -> list[tuple[Any, int]]:
        plan = self._plans.get(hook)
        if plan is None:
            plan = []
            for callback in self.callbacks:
                method = getattr(callback, hook, None)
                if callable(method):
                    plan.append((method, _hook_arity(method)))
            self._plans[hook] = plan
        return plan

    def call(self, hook: str, trainer: Any) -> None:
        """Call ``hook`` on every callback (with ``(trainer)`` or ``(step, metrics)`` per its signature)."""
        for method, arity in self._plan(hook):
            if arity == 1:
                method(trainer)
            elif arity == 2:
                method(trainer.state.global_step, trainer.state.metrics)
            else:
                method()

    def on_train_begin(self, trainer: Any) -> None:
        self.call("on_train_begin", trainer)

    def on_train_end(self, trainer: Any) -> None:
        self.call("on_train_end", trainer)

    def on_epoch_begin(self, trainer: Any) -> None:
        self.call("on_epoch_begin", trainer)

    def on_epoch_end(self, trainer: Any) -> None:
        self.call("on_epoch_end", trainer)

    def on_step_begin(self, trainer: Any) -> None:
        self.call("on_step_begin", trainer)

    def on_step_end(self, trainer: Any) -> None:
        self.call("on_step_end", trainer)


def _metrics_synced(trainer: Any) -> bool:
    """True when reading ``trainer.state.metrics`` costs no extra device sync (always True for trainers that
    do not say)."""
    return bool(getattr(trainer, "metrics_synced", True))


def _target_steps(trainer: Any) -> int:
    target = getattr(trainer, "target_steps", None)
    if isinstance(target, int) and target > 0:
        return target
    return int(trainer.config.total_steps)


# ---------------------------------------------------------------------------------------------- logging


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


class LoggingCallback(Callback):
    """Log training metrics to the console (the ``worldflux.training`` logger), and optionally to wandb and
    TensorBoard.

    Every ``log_interval`` steps: ``"Step s/total (p%) | loss=...,... | x steps/s"`` (steps/s over the
    interval since the previous log line). The line goes to the ``worldflux.training`` logger at INFO and,
    with ``console=True`` (the default) while no logging handler would show it (logging not configured),
    is printed to stdout, so it is visible by default as in the reference.

    Args:
        log_interval: steps between log lines (> 0).
        use_wandb: also ``wandb.log`` the metrics (``wandb.init(project=wandb_project or "worldflux",
            name=wandb_run_name)`` at train begin, ``finish`` at train end). If wandb is not installed a
            warning is issued and wandb logging is skipped.
        wandb_project / wandb_run_name: wandb project and run names.
        use_tensorboard: also write TensorBoard scalars (``train/<metric>`` and ``train/steps_per_sec``).
        tensorboard_dir: event-file directory (default ``<TrainingConfig.output_dir>/tensorboard``). The writer
            is ``torch.utils.tensorboard.SummaryWriter`` when the ``tensorboard`` package is installed, else
            ``tensorboardX.SummaryWriter``, else a built-in minimal event-file writer (scalars only).
        console: print the log line to stdout when logging is not configured to show it.

    Raises:
        ValueError: ``log_interval <= 0``.
    """

    def __init__(
        self,
        log_interval: int = 100,
        use_wandb: bool = False,
        wandb_project: str | None = None,
        wandb_run_name: str | None = None,
        *,
        use_tensorboard: bool = False,
        tensorboard_dir: str | os.PathLike[str] | None = None,
        console: bool = True,
    ) -> None:
        _check_positive("log_interval", log_interval)
        self.log_interval = log_interval
        self.use_wandb = use_wandb
        self.wandb_project = wandb_project
        self.wandb_run_name = wandb_run_name
        self.use_tensorboard = use_tensorboard or tensorboard_dir is not None
        self.console = bool(console)
        self.tensorboard_dir = None if tensorboard_dir is None else os.fspath(tensorboard_dir)
        self._wandb: Any = None
        self._writer: Any = None
        self._last_time: float | None = None
        self._last_step = 0

    def on_train_begin(self, trainer: Any) -> None:
        self._last_time = time.perf_counter()
        self._last_step = int(trainer.state.global_step)
        if self.use_wandb and self._wandb is None:
            try:
                import wandb
            except ImportError:
                warnings.warn("LoggingCallback(use_wandb=True): wandb is not installed; skipping wandb logging",
                              UserWarning, stacklevel=2)
                self.use_wandb = False
            else:
                wandb.init(project=self.wandb_project or "worldflux", name=self.wandb_run_name,
                           config=trainer.config.to_dict())
                self._wandb = wandb
        if self.use_tensorboard and self._writer is None:
            logdir = self.tensorboard_dir or os.path.join(trainer.config.output_dir, "tensorboard")
            self._writer = make_summary_writer(logdir)

    def on_step_end(self, trainer: Any) -> None:
        step = int(trainer.state.global_step)
        if step % self.log_interval != 0:
            return
        metrics = {k: float(v) for k, v in trainer.state.metrics.items()}
        now = time.perf_counter()
        elapsed = now - (self._last_time if self._last_time is not None else now)
        rate = (step - self._last_step) / elapsed if elapsed > 0 else float("nan")
        self._last_time, self._last_step = now, step
        total = _target_steps(trainer)
        text = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        line = f"Step {step}/{total} ({100.0 * step / max(total, 1):.1f}%) | {text} | {rate:.2f} steps/s"
        logger.info("%s", line)
        if self.console and not _reaches_a_handler(logger):
            print(line, flush=True)  # as the reference: visible without configuring logging
        if self._wandb is not None:
            self._wandb.log({**metrics, "steps_per_sec": rate}, step=step)
        if self._writer is not None:
            for key, value in metrics.items():
                self._writer.add_scalar(f"train/{key}", value, step)
            if math.isfinite(rate):
                self._writer.add_scalar("train/steps_per_sec", rate, step)
            self._writer.flush()

    def on_train_end(self, trainer: Any) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _reaches_a_handler(log: logging.Logger) -> bool:
    """True when an INFO record of ``log`` reaches a configured handler (not logging's last resort)."""
    if not log.isEnabledFor(logging.INFO):
        return False
    current: logging.Logger | None = log
    while current is not None:
        if any(handler.level <= logging.INFO for handler in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


# ---------------------------------------------------------------------------------------------- checkpoints


BEST_WRITE_SHARE = 0.02  # most of the wall-clock time that "best" checkpoint writes may take


class CheckpointCallback(Callback):
    """Save checkpoints every ``save_interval`` steps and whenever the loss improves.

    Writes ``<output_dir>/checkpoint_{step}.pt`` when ``step % save_interval == 0`` (keeping the newest
    ``max_checkpoints`` of all periodic checkpoints in ``output_dir``, including those of earlier runs and
    restarts; None keeps all) and, with ``save_best``,
    ``<output_dir>/checkpoint_best.pt`` whenever ``state.metrics["loss"]`` is below the best loss seen so far
    (compared on the steps where the trainer has synced its metrics, see the module docstring), updating
    ``trainer.state.best_loss``. Saves are asynchronous: the step loop continues while orbax writes; when a
    periodic and a best checkpoint fall on the same step, the data is written once and copied.

    Best saves are rate-limited so that their background writes take at most ``BEST_WRITE_SHARE`` (2%) of
    the wall-clock time, measured from the trainer's last write: early in training the loss improves at
    almost every check, and writing each improvement would slow training down. An improvement that comes
    sooner is copied (on the device, without waiting for it; replacing an older pending copy) and written as
    soon as the limit allows, and at the latest when training ends, so ``checkpoint_best.pt`` always ends up
    holding the best state seen. Trainers without ``checkpoint_snapshot()`` get every best written immediately.

    Raises:
        ValueError: ``save_interval <= 0`` or ``max_checkpoints <= 0``.
    """

    def __init__(
        self,
        save_interval: int = 10000,
        output_dir: str | os.PathLike[str] = "./outputs",
        save_best: bool = True,
        max_checkpoints: int | None = 5,
    ) -> None:
        _check_positive("save_interval", save_interval)
        if max_checkpoints is not None:
            _check_positive("max_checkpoints", max_checkpoints)
        self.save_interval = save_interval
        self.output_dir = os.fspath(output_dir)
        self.save_best = save_best
        self.max_checkpoints = max_checkpoints
        self.saved_checkpoints: list[str] = []
        self.best_loss = math.inf
        self._pending_best: Any = None  # snapshot of a best state not written yet
        self._next_best_time = -math.inf  # time.monotonic() before which best saves are held back

    def on_train_begin(self, trainer: Any) -> None:
        from .run_dir import periodic_checkpoints

        os.makedirs(self.output_dir, exist_ok=True)
        self.best_loss = min(self.best_loss, float(trainer.state.best_loss))
        # rotation covers every periodic checkpoint in output_dir, from earlier runs and restarts too
        on_disk = [os.path.join(self.output_dir, p.name) for p in periodic_checkpoints(self.output_dir)]
        self.saved_checkpoints = on_disk + [p for p in self.saved_checkpoints if p not in on_disk]
        self._rotate(trainer)

    def on_train_end(self, trainer: Any) -> None:
        self._write_pending_best(trainer)

    def _best_path(self) -> str:
        return os.path.join(self.output_dir, "checkpoint_best.pt")

    def _hold_back_best(self, trainer: Any) -> bool:
        """True while best saves are held back by the write-time limit (never for trainers that cannot
        snapshot)."""
        return callable(getattr(trainer, "checkpoint_snapshot", None)) and time.monotonic() < self._next_best_time

    def _best_written(self, trainer: Any) -> None:
        """Start the hold-back window after a best save was queued."""
        seconds = float(getattr(trainer, "checkpoint_write_seconds", 0.0) or 0.0)
        self._next_best_time = time.monotonic() + seconds / BEST_WRITE_SHARE
        self._pending_best = None

    def _write_pending_best(self, trainer: Any) -> None:
        if self._pending_best is not None:
            trainer.save_checkpoint(self._best_path(), wait=False, snapshot=self._pending_best)
            self._best_written(trainer)

    def _save(self, trainer: Any, path: str, copies: list[str]) -> None:
        try:
            trainer.save_checkpoint(path, wait=False, copies=copies)
        except TypeError:  # a trainer without the asynchronous keywords
            trainer.save_checkpoint(path)
            for copy in copies:
                trainer.save_checkpoint(copy)

    def on_step_end(self, trainer: Any) -> None:
        step = int(trainer.state.global_step)
        periodic = step > 0 and step % self.save_interval == 0
        best = False
        if self.save_best and _metrics_synced(trainer):
            loss = trainer.state.metrics.get("loss")
            if loss is not None and math.isfinite(float(loss)) and float(loss) < self.best_loss:
                self.best_loss = float(loss)
                trainer.state.best_loss = min(float(trainer.state.best_loss), self.best_loss)
                best = True
        if best and not periodic and self._hold_back_best(trainer):
            self._pending_best = trainer.checkpoint_snapshot()
            return
        if not (periodic or best):
            if self._pending_best is not None and not self._hold_back_best(trainer):
                self._write_pending_best(trainer)
            return
        best_path = self._best_path()
        if periodic:
            path = os.path.join(self.output_dir, f"checkpoint_{step}.pt")
            self._save(trainer, path, [best_path] if best else [])
            if path in self.saved_checkpoints:
                self.saved_checkpoints.remove(path)
            self.saved_checkpoints.append(path)
            self._rotate(trainer)
        else:
            self._save(trainer, best_path, [])
        if best:
            self._best_written(trainer)

    def _rotate(self, trainer: Any) -> None:
        from .checkpoint import delete_checkpoint

        if self.max_checkpoints is None:
            return
        delete = getattr(trainer, "delete_checkpoint", None)
        while len(self.saved_checkpoints) > self.max_checkpoints:
            oldest = self.saved_checkpoints.pop(0)
            if callable(delete):
                delete(oldest)  # ordered after the trainer's queued saves
            else:
                delete_checkpoint(oldest)
            logger.debug("Removed old checkpoint %s", oldest)


class EarlyStoppingCallback(Callback):
    """Stop training when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` steps.

    An improvement is ``value < best - min_delta`` (resets the count); after ``patience`` steps without one,
    ``trainer.state.should_stop`` is set. Values are read on the steps where the trainer has synced metrics
    (every ``log_interval`` steps; every step for trainers that do not say), and the count is in steps. A
    missing metric is ignored.

    Raises:
        ValueError: ``patience <= 0`` or ``min_delta < 0``.
    """

    def __init__(self, patience: int = 5000, min_delta: float = 1e-4, monitor: str = "loss") -> None:
        _check_positive("patience", patience)
        if not isinstance(min_delta, int | float) or min_delta < 0:
            raise ValueError(f"min_delta must be non-negative, got {min_delta}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.monitor = monitor
        self.best = math.inf
        self.counter = 0
        self._last_improvement: int | None = None

    def on_train_begin(self, trainer: Any) -> None:
        if self._last_improvement is None:
            self._last_improvement = int(trainer.state.global_step)

    def on_step_end(self, trainer: Any) -> None:
        if not _metrics_synced(trainer):
            return
        value = trainer.state.metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        step = int(trainer.state.global_step)
        if self._last_improvement is None:
            self._last_improvement = step - 1
        if value < self.best - self.min_delta:
            self.best = value
            self._last_improvement = step
            self.counter = 0
            return
        self.counter = step - self._last_improvement
        if self.counter >= self.patience:
            trainer.state.should_stop = True
            logger.info(
                "Early stopping at step %d: %s has not improved on %.6f for %d steps", step, self.monitor,
                self.best, self.counter,
            )


class ProgressCallback(Callback):
    """A tqdm progress bar: total = the run's target steps, advanced every step; the postfix shows the metrics
    (4 decimals) on synced steps and tqdm shows steps/s. Silently disabled when tqdm is not installed."""

    def __init__(self, desc: str = "Training") -> None:
        self.desc = desc
        self._bar: Any = None

    def on_train_begin(self, trainer: Any) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self._bar = None
            return
        self._bar = tqdm(total=_target_steps(trainer), initial=int(trainer.state.global_step), desc=self.desc,
                         unit="step", dynamic_ncols=True)

    def on_step_end(self, trainer: Any) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        if _metrics_synced(trainer):
            self._bar.set_postfix({k: f"{float(v):.4f}" for k, v in trainer.state.metrics.items()}, refresh=False)

    def on_train_end(self, trainer: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def emit_event(**fields: Any) -> Any:
    """``write_event(**fields)`` as named in this module at call time: the monitoring callbacks write their events
    through here, so replacing ``worldflux.training.callbacks.write_event`` (as the reference's tests do)
    redirects them all."""
    return write_event(**fields)


def default_callbacks(config: Any) -> list[Any]:
    """The callbacks every local ``Trainer`` starts with: ``LoggingCallback(config.log_interval)``,
    ``CheckpointCallback(config.save_interval, config.output_dir)`` and, with ``config.profile``, an enabled
    ``PerformanceMonitor`` (step time and throughput, summary logged at train end)."""
    from .profiling import PerformanceMonitor

    callbacks: list[Any] = [
        LoggingCallback(log_interval=config.log_interval),
        CheckpointCallback(save_interval=config.save_interval, output_dir=config.output_dir),
    ]
    if getattr(config, "profile", False):
        callbacks.append(PerformanceMonitor(enabled=True))
    return callbacks


# The monitoring, report, evaluation and event-bus callbacks live in their own modules (one concept each) and
# are importable from here too, as in the reference.
from .eval_callback import EvalCallback  # noqa: E402
from .event_callbacks import CallbackAdapter  # noqa: E402
from .monitor_callbacks import DiagnosisCallback, HeartbeatCallback  # noqa: E402
from .report_callback import TrainingReportCallback  # noqa: E402
