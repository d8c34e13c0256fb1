"""What the dashboard shows, recorded thread-safely while training runs: loss curves, throughput, episode
returns, evaluation returns, the current phase, recent environment frames and imagined-vs-real traces.

The training loop writes (through :class:`worldflux.dashboard.DashboardCallback`), the HTTP server's threads
read :meth:`DashboardState.snapshot`; one lock guards both. Curves keep at most ``history_max_points`` points:
when a curve is full every second point is dropped, so the curve still spans the whole run.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections import deque
from typing import Any

import numpy as np

__all__ = ["DashboardState", "PHASES"]

PHASES = ("starting", "collecting", "training", "evaluating", "done")


class _Curve:
    """(x, y) points, thinned to half when more than ``limit`` are stored."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.x: list[float] = []
        self.y: list[float] = []

    def add(self, x: float, y: float) -> None:
        if not math.isfinite(y):
            return
        self.x.append(float(x))
        self.y.append(float(y))
        if len(self.x) > self.limit:
            self.x, self.y = self.x[::2], self.y[::2]

    def to_json(self) -> dict[str, list[float]]:
        return {"x": list(self.x), "y": list(self.y)}


def _frame_json(frame: np.ndarray) -> dict[str, Any]:
    """uint8 [H, W, 3] -> {width, height, rgb: base64 of the raw bytes} (the page draws it on a canvas)."""
    array = np.ascontiguousarray(np.asarray(frame, dtype=np.uint8)[..., :3])
    height, width = array.shape[:2]
    return {"width": int(width), "height": int(height), "rgb": base64.b64encode(array.tobytes()).decode("ascii")}


def _series(array: Any) -> list[list[float]]:
    """[T, ...] -> one list per feature over time ([T] -> one list); at most 8 features."""
    values = np.asarray(array, dtype=np.float64)
    values = values.reshape(values.shape[0], -1) if values.ndim > 1 else values[:, None]
    return [[float(v) if math.isfinite(v) else 0.0 for v in column] for column in values.T[:8]]


class DashboardState:
    """The data behind the dashboard page; every method is safe to call from any thread.

    Args:
        history_max_points: points kept per curve (thinned beyond that).
        max_frames: environment frames kept (the page shows the newest; the count is reported).
        title: page title (the project name).
    """

    def __init__(self, history_max_points: int = 2000, max_frames: int = 512, title: str = "WorldFlux") -> None:
        self._lock = threading.Lock()
        self.history_max_points = int(history_max_points)
        self.title = title
        self.phase = "starting"
        self.status = "running"
        self.started = time.time()
        self.losses: dict[str, _Curve] = {}
        self.throughput = _Curve(self.history_max_points)
        self.returns = _Curve(self.history_max_points)
        self.eval_returns = _Curve(self.history_max_points)
        self.train_step = 0
        self.target_steps: int | None = None
        self.env_steps = 0
        self.episodes = 0
        self.last_return: float | None = None
        self.frames: deque[dict[str, Any]] = deque(maxlen=int(max_frames))
        self.frames_seen = 0
        self.imagination: dict[str, Any] | None = None
        self.info: dict[str, Any] = {}
        self.version = 0  # bumped on every change; the page shows it

    def _touch(self) -> None:
        self.version += 1

    def set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {list(PHASES)}, got {phase!r}")
        with self._lock:
            self.phase = phase
            if phase == "done":
                self.status = "finished"
            self._touch()

    def set_status(self, status: str) -> None:
        """'running', 'finished' or 'failed: <reason>'."""
        with self._lock:
            self.status = status
            self._touch()

    def set_info(self, **info: Any) -> None:
        """Free-form key/values shown in the page's header table (model, environment, data mode, ...)."""
        with self._lock:
            self.info.update({k: v for k, v in info.items() if v is not None})
            self._touch()

    def record_losses(self, step: int, metrics: dict[str, float], target_steps: int | None = None) -> None:
        with self._lock:
            self.train_step = int(step)
            if target_steps is not None:
                self.target_steps = int(target_steps)
            for name, value in metrics.items():
                curve = self.losses.get(name)
                if curve is None:
                    curve = self.losses[name] = _Curve(self.history_max_points)
                curve.add(step, float(value))
            self._touch()

    def record_throughput(self, step: int, steps_per_sec: float) -> None:
        with self._lock:
            self.throughput.add(step, steps_per_sec)
            self._touch()

    def record_episode(self, info: dict[str, Any]) -> None:
        """``info`` as ``on_episode_end`` receives it: index, return, length, env_steps, terminated."""
        with self._lock:
            self.episodes += 1
            self.env_steps = max(self.env_steps, int(info.get("env_steps", 0)))
            self.last_return = float(info["return"])
            self.returns.add(self.env_steps, self.last_return)
            self._touch()

    def record_env_steps(self, env_steps: int) -> None:
        with self._lock:
            self.env_steps = max(self.env_steps, int(env_steps))
            self._touch()

    def record_eval(self, info: dict[str, Any]) -> None:
        """``info`` as ``on_eval_end`` receives it: env_steps, returns, mean_return."""
        with self._lock:
            self.eval_returns.add(int(info.get("env_steps", self.env_steps)), float(info["mean_return"]))
            self._touch()

    def record_frame(self, frame: np.ndarray) -> None:
        """An RGB frame uint8 [H, W, 3]."""
        encoded = _frame_json(frame)
        with self._lock:
            self.frames.append(encoded)
            self.frames_seen += 1
            self._touch()

    def record_imagination(self, real: Any, imagined: Any, label: str = "") -> None:
        """Real and imagined [T, ...] arrays: frames ([T, H, W, 3] uint8) or vectors ([T] / [T, D])."""
        real_arr, imagined_arr = np.asarray(real), np.asarray(imagined)
        if real_arr.ndim == 4 and real_arr.shape[-1] == 3:
            data: dict[str, Any] = {
                "kind": "frames",
                "real": [_frame_json(f) for f in real_arr[:16]],
                "imagined": [_frame_json(f) for f in imagined_arr[:16]],
            }
        else:
            data = {"kind": "series", "real": _series(real_arr), "imagined": _series(imagined_arr)}
        data["label"] = label
        with self._lock:
            self.imagination = data
            self._touch()

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], history_max_points: int = 2000) -> DashboardState:
        """A state holding what ``snapshot()`` returned (to serve a finished run's dashboard again)."""
        state = cls(history_max_points=history_max_points, title=str(data.get("title", "WorldFlux")))

        def curve(points: dict[str, list[float]]) -> _Curve:
            out = _Curve(history_max_points)
            for x, y in zip(points.get("x", []), points.get("y", []), strict=False):
                out.add(x, y)
            return out

        state.phase = str(data.get("phase", "done"))
        state.status = str(data.get("status", "finished"))
        state.losses = {name: curve(points) for name, points in data.get("losses", {}).items()}
        state.throughput = curve(data.get("throughput", {}))
        state.returns = curve(data.get("returns", {}))
        state.eval_returns = curve(data.get("eval_returns", {}))
        for key in ("train_step", "target_steps", "env_steps", "episodes", "last_return", "frames_seen"):
            if key in data:
                setattr(state, key, data[key])
        if data.get("frame"):
            state.frames.append(data["frame"])
        state.imagination = data.get("imagination")
        state.info = dict(data.get("info", {}))
        return state

    def snapshot(self, frames: bool = True) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready data (only the newest frame is included)."""
        with self._lock:
            return {
                "title": self.title,
                "phase": self.phase,
                "status": self.status,
                "version": self.version,
                "elapsed_sec": time.time() - self.started,
                "train_step": self.train_step,
                "target_steps": self.target_steps,
                "env_steps": self.env_steps,
                "episodes": self.episodes,
                "last_return": self.last_return,
                "losses": {name: curve.to_json() for name, curve in self.losses.items()},
                "throughput": self.throughput.to_json(),
                "returns": self.returns.to_json(),
                "eval_returns": self.eval_returns.to_json(),
                "frames_seen": self.frames_seen,
                "frame": (self.frames[-1] if self.frames else None) if frames else None,
                "imagination": self.imagination,
                "info": dict(self.info),
            }
