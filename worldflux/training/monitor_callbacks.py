"""Run-monitoring callbacks: ``HeartbeatCallback`` (periodic liveness records) and ``DiagnosisCallback``
(detects non-finite, stalled or diverging losses and gradient / latent pathologies).

Both read ``trainer.state.metrics`` only on steps where the trainer has synchronised them anyway
(``trainer.metrics_synced``; see ``worldflux.training.callbacks``): an interval that falls between two
synced steps is handled at the next synced step, so monitoring adds no device syncs to the JAX loop.
"""

from __future__ import annotations

import logging
import math
import os
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

from worldflux.telemetry.wasr import make_run_id

from .callbacks import Callback, emit_event

__all__ = ["DiagnosisCallback", "HeartbeatCallback"]

logger = logging.getLogger("worldflux.training")


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


class _IntervalCallback(Callback):
    """Fires ``_fire(trainer, step)`` at the first synced step at or after each multiple of the interval."""

    def __init__(self, interval: int, scenario: str, metrics_path: str | os.PathLike[str] | None,
                 run_id: str | None) -> None:
        self._interval = interval
        self.scenario = scenario
        self.metrics_path = Path(metrics_path) if metrics_path is not None else None
        self.run_id = run_id or make_run_id()
        self._start_time: float | None = None
        self._next_due: int | None = None

    def on_train_begin(self, trainer: Any) -> None:
        start = getattr(trainer.state, "train_start_time", None)
        self._start_time = float(start) if start is not None else time.time()
        step = int(trainer.state.global_step)
        self._next_due = (step // self._interval + 1) * self._interval

    def _duration(self) -> float:
        return 0.0 if self._start_time is None else max(0.0, time.time() - self._start_time)

    def _path(self, trainer: Any, default_name: str) -> Path:
        if self.metrics_path is not None:
            return self.metrics_path
        return Path(trainer.config.output_dir) / default_name

    def on_step_end(self, trainer: Any) -> None:
        step = int(trainer.state.global_step)
        if self._next_due is None:
            self._next_due = self._interval
        if step < self._next_due or not getattr(trainer, "metrics_synced", True):
            return
        self._next_due = (step // self._interval + 1) * self._interval
        self._fire(trainer, step)

    @abstractmethod
    def _fire(self, trainer: Any, step: int) -> None:
        """Act on a due, synced step."""


class HeartbeatCallback(_IntervalCallback):
    """Every ``interval_steps`` steps, append a ``"heartbeat"`` event to ``metrics_path`` (default
    ``<TrainingConfig.output_dir>/heartbeat.jsonl``) and log one line: step, epoch, elapsed seconds,
    ``ttfi_sec``, steps/s (``trainer.runtime_profile()``), the loss, and ``flops_per_watt`` when the metrics
    carry ``flops``/``flops_estimate`` and ``power_watts``/``watts_estimate``. A monitor that sees the file's
    last heartbeat grow old knows the run is stuck or dead. ``last_event`` holds the latest record.

    Raises:
        ValueError: ``interval_steps <= 0``.
    """

    def __init__(
        self,
        interval_steps: int = 100,
        scenario: str = "trainer",
        metrics_path: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
    ) -> None:
        _check_positive_int("interval_steps", interval_steps)
        super().__init__(interval_steps, scenario, metrics_path, run_id)
        self.interval_steps = interval_steps
        self.last_event: dict[str, Any] | None = None

    def _fire(self, trainer: Any, step: int) -> None:
        profile = trainer.runtime_profile() if callable(getattr(trainer, "runtime_profile", None)) else {}
        metrics = trainer.state.metrics
        flops = _finite_or_none(metrics.get("flops_estimate", metrics.get("flops")))
        watts = _finite_or_none(metrics.get("watts_estimate", metrics.get("power_watts")))
        loss = metrics.get("loss")
        self.last_event = emit_event(
            event="heartbeat",
            path=self._path(trainer, "heartbeat.jsonl"),
            scenario=self.scenario,
            success=True,
            run_id=self.run_id,
            step=step,
            epoch=int(trainer.state.epoch),
            duration_sec=self._duration(),
            ttfi_sec=float(trainer.state.ttfi_sec or 0.0),
            throughput_steps_per_sec=_finite_or_none(profile.get("throughput_steps_per_sec")),
            loss=None if loss is None else float(loss),
            flops_estimate=flops,
            watts_estimate=watts,
            flops_per_watt=flops / watts if flops is not None and watts else None,
        )
        rate = self.last_event["throughput_steps_per_sec"]
        logger.info("Heartbeat: step %d, %.1fs elapsed, %s steps/s", step, self.last_event["duration_sec"],
                    "n/a" if rate is None else f"{rate:.2f}")


_LATENT_KEYS = ("latent_std", "z_std", "latent_variance", "z_var")


class DiagnosisCallback(_IntervalCallback):
    """Every ``check_interval`` steps, look for training pathologies; each finding is logged as a warning,
    appended to ``issues`` (``{"step", "kind", "message"}``), kept in ``last_suggestions`` (the messages of
    the latest check) and written as a ``"diagnostic"`` event to ``metrics_path`` (default
    ``<TrainingConfig.output_dir>/diagnostics.jsonl``).

    Kinds: ``non_finite_loss``; ``non_finite_gradients`` (metric ``grad_norm`` non-finite, or a torch
    parameter's ``.grad`` with NaN/Inf); ``vanishing_gradients`` (gradient norm < ``gradient_min_norm``);
    ``skipped_steps`` (the JAX step guard skipped non-finite updates since the last check);
    ``latent_collapse`` (a ``latent_std``/``z_std``/``latent_variance``/``z_var`` metric < ``latent_std_min``);
    ``stalled_loss`` (the best loss has not improved by a relative ``min_improvement`` for ``stall_checks``
    checks); ``diverging_loss`` (the loss exceeds ``divergence_factor`` times the best loss seen, and the best
    loss by more than 1.0 in absolute terms, so losses near zero do not trigger it).

    Raises:
        ValueError: a non-positive interval / count, or a negative threshold.
    """

    def __init__(
        self,
        check_interval: int = 100,
        gradient_min_norm: float = 1e-8,
        latent_std_min: float = 1e-6,
        scenario: str = "trainer",
        metrics_path: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
        *,
        stall_checks: int = 10,
        min_improvement: float = 1e-3,
        divergence_factor: float = 10.0,
    ) -> None:
        _check_positive_int("check_interval", check_interval)
        _check_positive_int("stall_checks", stall_checks)
        for name, value in (("gradient_min_norm", gradient_min_norm), ("latent_std_min", latent_std_min),
                            ("min_improvement", min_improvement)):
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be non-negative, got {value}")
        if not isinstance(divergence_factor, int | float) or divergence_factor <= 1:
            raise ValueError(f"divergence_factor must be > 1, got {divergence_factor}")
        super().__init__(check_interval, scenario, metrics_path, run_id)
        self.check_interval = check_interval
        self.gradient_min_norm = float(gradient_min_norm)
        self.latent_std_min = float(latent_std_min)
        self.stall_checks = stall_checks
        self.min_improvement = float(min_improvement)
        self.divergence_factor = float(divergence_factor)
        self.last_suggestions: list[str] = []
        self.issues: list[dict[str, Any]] = []
        self._best = math.inf
        self._checks_without_improvement = 0
        self._skipped_seen = 0.0

    def _gradient_findings(self, trainer: Any) -> list[tuple[str, str]]:
        norm = trainer.state.metrics.get("grad_norm")
        if norm is None:  # the torch engine: read the parameters' gradients
            import torch

            model = trainer.model
            grads = [p.grad for p in model.parameters()] if isinstance(model, torch.nn.Module) else []
            grads = [g.detach() for g in grads if g is not None]
            if not grads:
                return []
            if any(not bool(torch.isfinite(g).all()) for g in grads):
                return [("non_finite_gradients", "Detected NaN/Inf gradients. Try a lower learning rate or "
                         "stronger gradient clipping.")]
            norm = max(float(torch.linalg.vector_norm(g)) for g in grads)
        norm = float(norm)
        if not math.isfinite(norm):
            return [("non_finite_gradients", "Detected NaN/Inf gradients. Try a lower learning rate or stronger "
                     "gradient clipping.")]
        if norm < self.gradient_min_norm:
            return [("vanishing_gradients", f"Detected vanishing gradients (norm {norm:.3g} < "
                     f"{self.gradient_min_norm:g}). Consider normalization changes or shorter horizons.")]
        return []

    def _loss_findings(self, loss: float) -> list[tuple[str, str]]:
        if not math.isfinite(loss):
            return [("non_finite_loss", "Loss is non-finite. Validate inputs and reduce optimizer aggressiveness.")]
        findings = []
        if math.isfinite(self._best) and loss > self.divergence_factor * max(self._best, 0.0) and (
            loss - self._best > 1.0
        ):
            findings.append(("diverging_loss", f"Loss is diverging: {loss:.4g} vs best {self._best:.4g}. Lower "
                             "the learning rate or tighten gradient clipping."))
        threshold = self._best - self.min_improvement * max(abs(self._best), 1e-12)
        if loss < threshold or not math.isfinite(self._best):
            self._best = min(self._best, loss)
            self._checks_without_improvement = 0
        else:
            self._checks_without_improvement += 1
            if self._checks_without_improvement >= self.stall_checks:
                findings.append(("stalled_loss", f"Loss has stalled: no improvement on {self._best:.4g} for "
                                 f"{self._checks_without_improvement} checks. Consider adjusting the learning "
                                 "rate or model capacity."))
        return findings

    def _fire(self, trainer: Any, step: int) -> None:
        metrics = trainer.state.metrics
        findings = self._gradient_findings(trainer)
        loss = metrics.get("loss")
        if loss is not None:
            findings += self._loss_findings(float(loss))
        skipped = metrics.get("skipped_steps")
        if skipped is not None and float(skipped) > self._skipped_seen:
            findings.append(("skipped_steps", f"{int(float(skipped) - self._skipped_seen)} non-finite steps were "
                             "skipped since the last check. Validate inputs or lower the learning rate."))
            self._skipped_seen = float(skipped)
        for key in _LATENT_KEYS:
            value = _finite_or_none(metrics.get(key))
            if value is not None and value < self.latent_std_min:
                findings.append(("latent_collapse", f"Latent collapse indicator detected ({key}={value:.3g}). "
                                 "Increase latent regularization or capacity."))
                break
        self.last_suggestions = [message for _, message in findings]
        if not findings:
            return
        self.issues += [{"step": step, "kind": kind, "message": message} for kind, message in findings]
        joined = " | ".join(self.last_suggestions)
        logger.warning("Training diagnostics at step %d: %s", step, joined)
        emit_event(
            event="diagnostic",
            path=self._path(trainer, "diagnostics.jsonl"),
            scenario=self.scenario,
            success=False,
            run_id=self.run_id,
            step=step,
            epoch=int(trainer.state.epoch),
            duration_sec=self._duration(),
            ttfi_sec=float(trainer.state.ttfi_sec or 0.0),
            error=joined,
            kinds=[kind for kind, _ in findings],
            suggestions=self.last_suggestions,
        )
