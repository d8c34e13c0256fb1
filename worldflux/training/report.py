"""Structured training reports (reference ``worldflux.training.report``): what a run's loss curve and health
looked like, as ``training_report.json``.

* ``HealthSignal(name, status, value, message)`` — one diagnostic; ``status`` is ``"healthy"``, ``"warning"``
  or ``"critical"``.
* ``LossCurveSummary`` — initial / final / best loss, the step of the best loss, the least-squares slope of
  loss per recorded point (``convergence_slope``; negative = decreasing) and whether the curve has flattened
  (``plateau_detected``: the mean of the last quarter of the points, at most 1000, differs from the quarter
  before it by less than 1%; needs at least 8 points).
* ``TrainingReport`` — the run's summary plus a ``health_score`` in [0, 1] (weighted mean of the signals:
  healthy 1, warning 0.5, critical 0) and recommendations; ``save(path)`` writes it as JSON atomically.

``summarize_loss_curve`` / ``assess_health`` / ``health_score`` / ``recommendations`` are the pure functions
behind ``TrainingReportCallback`` (``worldflux.training.report_callback``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldflux.core.safe_io import write_json_atomic

__all__ = [
    "HealthSignal",
    "LossCurveSummary",
    "TrainingReport",
    "assess_health",
    "health_score",
    "recommendations",
    "summarize_loss_curve",
]

STATUSES = ("healthy", "warning", "critical")
_STATUS_SCORE = {"healthy": 1.0, "warning": 0.5, "critical": 0.0}
_SIGNAL_WEIGHTS = {
    "loss_convergence": 0.4,
    "numerical_stability": 0.3,
    "throughput_stability": 0.15,
    "gradient_health": 0.15,
}
PLATEAU_RELATIVE_CHANGE = 0.01


@dataclass(frozen=True)
class HealthSignal:
    """One health signal of a run. ``status`` is one of ``"healthy"``, ``"warning"``, ``"critical"``."""

    name: str
    status: str
    value: float
    message: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"HealthSignal.status must be one of {list(STATUSES)}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "value": self.value, "message": self.message}


@dataclass(frozen=True)
class LossCurveSummary:
    """Summary statistics of a loss curve (see the module docstring)."""

    initial_loss: float
    final_loss: float
    best_loss: float
    best_step: int
    convergence_slope: float
    plateau_detected: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "initial_loss": self.initial_loss,
            "final_loss": self.final_loss,
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "convergence_slope": self.convergence_slope,
            "plateau_detected": self.plateau_detected,
        }


def _empty_summary() -> LossCurveSummary:
    return LossCurveSummary(0.0, 0.0, 0.0, 0, 0.0, False)


@dataclass(frozen=True)
class TrainingReport:
    """A structured summary of one training run (written as ``training_report.json``)."""

    model_id: str
    total_steps: int
    wall_time_sec: float
    final_loss: float
    best_loss: float
    ttfi_sec: float
    throughput_steps_per_sec: float
    health_score: float
    health_signals: dict[str, HealthSignal] = field(default_factory=dict)
    loss_curve_summary: LossCurveSummary = field(default_factory=_empty_summary)
    recommendations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "total_steps": self.total_steps,
            "wall_time_sec": self.wall_time_sec,
            "final_loss": self.final_loss,
            "best_loss": self.best_loss,
            "ttfi_sec": self.ttfi_sec,
            "throughput_steps_per_sec": self.throughput_steps_per_sec,
            "health_score": self.health_score,
            "health_signals": {k: v.to_dict() for k, v in self.health_signals.items()},
            "loss_curve_summary": self.loss_curve_summary.to_dict(),
            "recommendations": list(self.recommendations),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingReport:
        """The inverse of ``to_dict`` (reads a saved ``training_report.json``)."""
        signals = {k: HealthSignal(**v) for k, v in dict(data.get("health_signals", {})).items()}
        summary = LossCurveSummary(**data["loss_curve_summary"]) if "loss_curve_summary" in data else _empty_summary()
        fields = {k: data[k] for k in ("model_id", "total_steps", "wall_time_sec", "final_loss", "best_loss",
                                       "ttfi_sec", "throughput_steps_per_sec", "health_score")}
        return cls(**fields, health_signals=signals, loss_curve_summary=summary,
                   recommendations=list(data.get("recommendations", [])))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON (indent 2) to `path`, atomically, creating parent directories."""
        write_json_atomic(Path(path), self.to_dict())


def summarize_loss_curve(losses: Sequence[float], steps: Sequence[int] | None = None) -> LossCurveSummary:
    """``LossCurveSummary`` of finite `losses` recorded at `steps` (default: 0, 1, ...).

    ``best_step`` is the step at which the best loss was recorded; ``convergence_slope`` is per recorded
    point (the reference's convention), so it does not depend on how far apart the points are.
    """
    values = [float(v) for v in losses]
    if not values:
        return _empty_summary()
    where = list(steps) if steps is not None else list(range(len(values)))
    if len(where) != len(values):
        raise ValueError(f"steps has {len(where)} entries for {len(values)} losses")
    best = min(values)
    n = len(values)
    slope = 0.0
    if n > 1:
        x_mean = (n - 1) / 2.0
        y_mean = sum(values) / n
        numerator = sum((i - x_mean) * (v - y_mean) for i, v in enumerate(values))
        denominator = sum((i - x_mean) ** 2 for i in range(n))
        slope = numerator / denominator if denominator > 0 else 0.0
    plateau = False
    window = min(1000, n // 4) if n >= 8 else 0
    if window > 0:
        recent = values[-window:]
        previous = values[-2 * window : -window]
        prev_avg = sum(previous) / len(previous)
        recent_avg = sum(recent) / len(recent)
        if prev_avg != 0:
            plateau = abs(recent_avg - prev_avg) / abs(prev_avg) < PLATEAU_RELATIVE_CHANGE
    return LossCurveSummary(
        initial_loss=values[0],
        final_loss=values[-1],
        best_loss=best,
        best_step=int(where[values.index(best)]),
        convergence_slope=slope,
        plateau_detected=plateau,
    )


def assess_health(
    summary: LossCurveSummary,
    *,
    num_losses: int,
    non_finite_count: int,
    throughputs: Sequence[float] = (),
    grad_norms: Sequence[float] = (),
) -> dict[str, HealthSignal]:
    """Health signals of a run: ``loss_convergence``, ``numerical_stability``, ``throughput_stability`` and,
    when gradient norms were recorded, ``gradient_health``."""
    signals: dict[str, HealthSignal] = {}
    if num_losses == 0:
        signals["loss_convergence"] = HealthSignal("loss_convergence", "critical", 0.0, "No loss values recorded.")
    elif summary.convergence_slope >= 0:
        signals["loss_convergence"] = HealthSignal(
            "loss_convergence", "warning", summary.convergence_slope, "Loss is not decreasing."
        )
    else:
        signals["loss_convergence"] = HealthSignal(
            "loss_convergence", "healthy", summary.convergence_slope, "Loss is decreasing."
        )
    total = num_losses + non_finite_count
    ratio = non_finite_count / total if total else 0.0
    status = "critical" if ratio > 0.1 else "warning" if ratio > 0 else "healthy"
    message = f"{non_finite_count} non-finite loss values detected." if ratio > 0 else "All loss values are finite."
    signals["numerical_stability"] = HealthSignal("numerical_stability", status, 1.0 - ratio, message)
    rates = [float(t) for t in throughputs if t is not None and math.isfinite(t) and t > 0]
    if len(rates) >= 2:
        mean = sum(rates) / len(rates)
        cv = (sum((t - mean) ** 2 for t in rates) / len(rates)) ** 0.5 / mean
        status = "warning" if cv > 0.5 else "healthy"
        text = f"Throughput coefficient of variation is high ({cv:.2f})." if cv > 0.5 else (
            f"Throughput is stable (CV={cv:.2f}).")
        signals["throughput_stability"] = HealthSignal("throughput_stability", status, 1.0 - min(cv, 1.0), text)
    else:
        signals["throughput_stability"] = HealthSignal(
            "throughput_stability", "healthy", 1.0, "Insufficient data for throughput analysis."
        )
    norms = [float(g) for g in grad_norms]
    if norms:
        bad = sum(1 for g in norms if not math.isfinite(g))
        if bad:
            signals["gradient_health"] = HealthSignal(
                "gradient_health", "critical", 1.0 - bad / len(norms), f"{bad} non-finite gradient norms recorded."
            )
        else:
            signals["gradient_health"] = HealthSignal(
                "gradient_health", "healthy", max(norms), "All gradient norms are finite."
            )
    return signals


def health_score(signals: dict[str, HealthSignal]) -> float:
    """Weighted mean of the signals' scores (healthy 1, warning 0.5, critical 0); 0.0 without signals."""
    if not signals:
        return 0.0
    weighted = total = 0.0
    for name, signal in signals.items():
        weight = _SIGNAL_WEIGHTS.get(name, 0.1)
        weighted += weight * _STATUS_SCORE[signal.status]
        total += weight
    return weighted / total


def recommendations(signals: dict[str, HealthSignal], summary: LossCurveSummary) -> list[str]:
    """One line per non-healthy signal (``"[CRITICAL] name: message"`` / ``"[WARNING] ..."``), plus a plateau
    hint."""
    lines = [f"[{s.status.upper()}] {s.name}: {s.message}" for s in signals.values() if s.status != "healthy"]
    if summary.plateau_detected:
        lines.append("Loss plateau detected. Consider adjusting learning rate or model capacity.")
    return lines
