"""``TrainingReportCallback``: writes ``training_report.json`` (a ``TrainingReport``, see
``worldflux.training.report``) when training ends.

It records the loss (and ``grad_norm`` when the trainer reports one) on every step at which the trainer has
synchronised its metrics (``trainer.metrics_synced``: every ``log_interval`` steps and the last step for the
JAX trainer, every step for the torch engine), so it adds no device syncs; non-finite losses are counted, not
recorded. The throughput is sampled at the same steps from ``trainer.runtime_profile()``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from worldflux.telemetry.wasr import make_run_id

from .callbacks import Callback, emit_event
from .report import (
    HealthSignal,
    LossCurveSummary,
    TrainingReport,
    assess_health,
    health_score,
    recommendations,
    summarize_loss_curve,
)

__all__ = ["TrainingReportCallback"]

logger = logging.getLogger("worldflux.training")

REPORT_FILE = "training_report.json"


class TrainingReportCallback(Callback):
    """Write ``<output_dir>/training_report.json`` at train end; ``report`` holds the latest ``TrainingReport``.

    Args:
        output_dir: directory of the report (created).
        scenario / run_id: tags of the ``"run.summary"`` event written to ``metrics_path`` when given.
        metrics_path: optional JSON-lines event file (see ``worldflux.telemetry.wasr``).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str] = "./outputs",
        scenario: str = "trainer",
        metrics_path: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.scenario = scenario
        self.metrics_path = Path(metrics_path) if metrics_path else None
        self.run_id = run_id or make_run_id()
        self.report: TrainingReport | None = None
        self._loss_history: list[float] = []
        self._steps: list[int] = []
        self._grad_norms: list[float] = []
        self._throughput_history: list[float] = []
        self._non_finite_count = 0
        self._start_time = 0.0
        self._start_step = 0

    @property
    def report_path(self) -> Path:
        return self.output_dir / REPORT_FILE

    def on_train_begin(self, trainer: Any) -> None:
        self._start_time = time.time()
        self._start_step = int(trainer.state.global_step)
        self._loss_history, self._steps, self._grad_norms, self._throughput_history = [], [], [], []
        self._non_finite_count = 0

    def on_step_end(self, trainer: Any) -> None:
        if not getattr(trainer, "metrics_synced", True):
            return
        metrics = trainer.state.metrics
        loss = metrics.get("loss")
        if loss is not None:
            value = float(loss)
            if math.isfinite(value):
                self._loss_history.append(value)
                self._steps.append(int(trainer.state.global_step))
            else:
                self._non_finite_count += 1
        norm = metrics.get("grad_norm")
        if norm is not None:
            self._grad_norms.append(float(norm))
        profile = getattr(trainer, "runtime_profile", None)
        if callable(profile):
            rate = profile().get("throughput_steps_per_sec")
            if rate is not None and rate > 0:
                self._throughput_history.append(float(rate))

    # The reference's helper names (kept: code written for it calls them).
    def _compute_loss_summary(self) -> LossCurveSummary:
        steps = self._steps if len(self._steps) == len(self._loss_history) else None
        return summarize_loss_curve(self._loss_history, steps)

    def _compute_health_signals(self, summary: LossCurveSummary) -> dict[str, HealthSignal]:
        return assess_health(summary, num_losses=len(self._loss_history), non_finite_count=self._non_finite_count,
                             throughputs=self._throughput_history, grad_norms=self._grad_norms)

    _compute_health_score = staticmethod(health_score)
    _generate_recommendations = staticmethod(recommendations)

    def build_report(self, trainer: Any) -> TrainingReport:
        """The report of the run so far. Throughput: the trainer's latest ``runtime_profile()`` value (steps per
        second since the start of ``train``), else steps done / wall time."""
        wall = max(0.0, time.time() - self._start_time)
        steps = int(trainer.state.global_step)
        summary = self._compute_loss_summary()
        signals = self._compute_health_signals(summary)
        done = steps - self._start_step
        if self._throughput_history:
            throughput = self._throughput_history[-1]
        else:
            throughput = done / wall if wall > 0 else 0.0
        return TrainingReport(
            model_id=type(trainer.model).__name__,
            total_steps=steps,
            wall_time_sec=wall,
            final_loss=summary.final_loss,
            best_loss=summary.best_loss,
            ttfi_sec=float(trainer.state.ttfi_sec or 0.0),
            throughput_steps_per_sec=throughput,
            health_score=health_score(signals),
            health_signals=signals,
            loss_curve_summary=summary,
            recommendations=recommendations(signals, summary),
        )

    _build_report = build_report

    def on_train_end(self, trainer: Any) -> None:
        self.report = self.build_report(trainer)
        self.report.save(self.report_path)
        logger.info("Training report saved to %s (health score %.2f)", self.report_path, self.report.health_score)
        if self.metrics_path is not None:
            emit_event(event="run.summary", path=self.metrics_path, scenario=self.scenario, success=True,
                        run_id=self.run_id,
                        step=self.report.total_steps, duration_sec=self.report.wall_time_sec,
                        ttfi_sec=self.report.ttfi_sec, health_score=self.report.health_score)
