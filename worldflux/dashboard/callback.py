"""The training callback that feeds the dashboard.

It implements the Trainer's ``on_train_begin`` / ``on_step_end`` (losses and steps/s, read only on steps
where the Trainer has synced its metrics, so the dashboard adds no device syncs) and the online-training
hooks of ``worldflux.training.train_online``: ``on_phase_change``, ``on_episode_end``, ``on_eval_end``,
``on_env_frame`` (only requested when ``[gameplay] enabled``: ``wants_frames``) and ``on_imagination``
(``wants_imagination``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .state import DashboardState

__all__ = ["DashboardCallback"]


class DashboardCallback:
    """Record training progress into a :class:`DashboardState`.

    Args:
        state: where to record.
        frames: ask the online loop for environment frames (``wants_frames``).
        fps: at most this many frames per second are kept (the rest are dropped on arrival).
        frame_every: environment steps between rendered frames (passed to the online loop).
        imagination: ask for imagined-vs-real traces (``wants_imagination``).
    """

    def __init__(
        self,
        state: DashboardState,
        *,
        frames: bool = False,
        fps: int = 8,
        frame_every: int = 2,
        imagination: bool = True,
    ) -> None:
        self.state = state
        self.wants_frames = bool(frames)
        self.frame_every = max(1, int(frame_every))
        self.wants_imagination = bool(imagination)
        self._min_frame_gap = 1.0 / max(1, int(fps))
        self._last_frame = -float("inf")
        self._last_time: float | None = None
        self._last_step = 0

    # Trainer hooks ----------------------------------------------------------------------------------
    def on_train_begin(self, trainer: Any) -> None:
        self._last_time = time.perf_counter()
        self._last_step = int(trainer.state.global_step)
        if self.state.phase == "starting":
            self.state.set_phase("training")

    def on_step_end(self, trainer: Any) -> None:
        if not getattr(trainer, "metrics_synced", True):
            return
        step = int(trainer.state.global_step)
        metrics = {k: float(v) for k, v in trainer.state.metrics.items()}
        target = getattr(trainer, "target_steps", None)
        self.state.record_losses(step, metrics, target if isinstance(target, int) else None)
        now = time.perf_counter()
        if self._last_time is not None and step > self._last_step and now > self._last_time:
            self.state.record_throughput(step, (step - self._last_step) / (now - self._last_time))
        self._last_time, self._last_step = now, step

    # Online-training hooks (CONTRACTS §5) -------------------------------------------------------------
    def on_phase_change(self, phase: str) -> None:
        self.state.set_phase(phase)

    def on_episode_end(self, info: dict[str, Any]) -> None:
        self.state.record_episode(info)

    def on_eval_end(self, info: dict[str, Any]) -> None:
        self.state.record_eval(info)

    def on_env_frame(self, frame: np.ndarray) -> None:
        now = time.monotonic()
        if now - self._last_frame < self._min_frame_gap:
            return
        self._last_frame = now
        self.state.record_frame(frame)

    def on_imagination(self, info: dict[str, Any]) -> None:
        self.state.record_imagination(info["real"], info["imagined"], str(info.get("label", "")))
