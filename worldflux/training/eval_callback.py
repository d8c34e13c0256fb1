"""``EvalCallback``: evaluate the model every ``eval_interval`` training steps.

Each evaluation runs a suite and appends a result to ``history``
(``{"step", "suite", "passed", "metrics", "failures", "wall_time_sec"}``), logs one line and, with
``metrics_path``, writes an ``"eval.<suite>"`` event (see ``worldflux.telemetry.wasr``):

* held-out loss (when ``data`` is given): ``trainer.evaluate(data, num_batches)`` with 2 / 10 / 50 batches
  for ``"quick"`` / ``"standard"`` / ``"comprehensive"``; metrics ``eval/<name>``; fails on a non-finite value.
* imagination check (models with ``config.obs_shape`` and ``config.action_dim``): encode a fixed batch of
  4 standard-normal observations (seed 0), roll out ``horizon`` steps (1 / 5 / 15 for the three suites) with
  zero actions, and require every state tensor and predicted reward to be finite; metrics
  ``eval/imagined_reward_mean`` when the model predicts rewards.

A suite that raises is recorded as failed with the error (training continues); after
``MAX_CONSECUTIVE_EVAL_FAILURES`` (10) such errors in a row the callback stops evaluating and logs why
(``eval_disabled``), as in the reference.
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

__all__ = ["EvalCallback"]

logger = logging.getLogger("worldflux.training")

SUITES = {"quick": (2, 1), "standard": (10, 5), "comprehensive": (50, 15)}  # (eval batches, rollout horizon)


def _imagination_check(model: Any, horizon: int) -> tuple[dict[str, float], list[str]]:
    import numpy as np
    import torch

    config = model.config
    obs = torch.as_tensor(np.random.default_rng(0).standard_normal((4, *config.obs_shape)).astype(np.float32))
    actions = torch.zeros(horizon, 4, int(config.action_dim))
    with torch.no_grad():
        trajectory = model.rollout(model.encode(obs, deterministic=True), actions, deterministic=True)
    failures = []
    for t, state in enumerate(trajectory.states):
        for name, tensor in state.tensors.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                failures.append(f"non-finite state tensor {name!r} at imagination step {t}")
    metrics: dict[str, float] = {}
    if trajectory.rewards is not None:
        if not bool(torch.isfinite(trajectory.rewards).all()):
            failures.append("non-finite imagined rewards")
        metrics["eval/imagined_reward_mean"] = float(trajectory.rewards.float().mean())
    return metrics, failures


class EvalCallback(Callback):
    """Periodic evaluation (see the module docstring).

    Args:
        eval_interval: steps between evaluations (> 0).
        suite: ``"quick"``, ``"standard"`` or ``"comprehensive"``.
        scenario / metrics_path / run_id: event tagging and file (events only when ``metrics_path`` is set).
        data: optional held-out data source (anything ``Trainer.evaluate`` accepts).

    Raises:
        ValueError: ``eval_interval <= 0`` or an unknown suite.
    """

    MAX_CONSECUTIVE_EVAL_FAILURES: int = 10

    def __init__(
        self,
        eval_interval: int = 5000,
        suite: str = "quick",
        scenario: str = "trainer",
        metrics_path: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
        *,
        data: Any = None,
    ) -> None:
        if isinstance(eval_interval, bool) or not isinstance(eval_interval, int) or eval_interval <= 0:
            raise ValueError(f"eval_interval must be positive, got {eval_interval}")
        if suite not in SUITES:
            raise ValueError(f"suite must be one of {list(SUITES)}, got {suite!r}")
        self.eval_interval = eval_interval
        self.suite = suite
        self.scenario = scenario
        self.metrics_path = Path(metrics_path) if metrics_path is not None else None
        self.run_id = run_id or make_run_id()
        self.data = data
        self.history: list[dict[str, Any]] = []
        self._consecutive_failures = 0
        self.eval_disabled = False

    def on_step_end(self, trainer: Any) -> None:
        step = int(trainer.state.global_step)
        if step > 0 and step % self.eval_interval == 0 and not self.eval_disabled:
            self.run(trainer)

    def run(self, trainer: Any) -> dict[str, Any]:
        """Run the suite now on `trainer`'s model; returns (and records) the result."""
        start = time.perf_counter()
        num_batches, horizon = SUITES[self.suite]
        metrics: dict[str, float] = {}
        failures: list[str] = []
        try:
            if self.data is not None:
                for name, value in trainer.evaluate(self.data, num_batches=num_batches).items():
                    metrics[f"eval/{name}"] = float(value)
                    if not math.isfinite(float(value)):
                        failures.append(f"non-finite eval {name}")
            model = trainer.model
            config = getattr(model, "config", None)
            if hasattr(config, "obs_shape") and hasattr(config, "action_dim") and hasattr(model, "rollout"):
                sync = getattr(trainer, "_write_back", None)  # the JAX trainer's params live on the device
                if callable(sync):
                    sync()
                checked, problems = _imagination_check(model, horizon)
                metrics.update(checked)
                failures += problems
        except Exception as exc:  # noqa: BLE001 - a failing evaluation is recorded, training continues
            failures.append(f"{type(exc).__name__}: {exc}")
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.MAX_CONSECUTIVE_EVAL_FAILURES:
                self.eval_disabled = True
                logger.warning("Eval [%s] disabled after %d consecutive failures (last: %s)", self.suite,
                               self._consecutive_failures, failures[-1])
        else:
            self._consecutive_failures = 0
        result = {
            "step": int(trainer.state.global_step),
            "suite": self.suite,
            "passed": not failures,
            "metrics": metrics,
            "failures": failures,
            "wall_time_sec": time.perf_counter() - start,
        }
        self.history.append(result)
        text = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        logger.info("Eval [%s] at step %d: %s%s", self.suite, result["step"], "passed" if not failures else
                    "FAILED (" + "; ".join(failures) + ")", f" | {text}" if text else "")
        if self.metrics_path is not None:
            emit_event(event=f"eval.{self.suite}", path=self.metrics_path, scenario=self.scenario,
                        success=not failures, run_id=self.run_id, step=result["step"], metrics=metrics,
                        failures=failures, duration_sec=result["wall_time_sec"])
        return result
