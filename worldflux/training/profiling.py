"""Performance monitoring and profiling (reference ``worldflux.training.profiling``).

* ``PerformanceMonitor(enabled=False)`` records named timings (``with monitor.measure("forward_ms"): ...``,
  ``record(name, value)``) and summarises them (``summary() -> {name: {mean, p95, max, count}}``). It is also
  a training callback: passed to a ``Trainer`` (or added by ``TrainingConfig(profile=True)``) it records
  ``step_ms`` (wall-clock milliseconds per training step) and ``steps_per_sec``, and logs the summary at train
  end. The JAX trainer dispatches steps asynchronously, so a step's time is only known when the host waits
  for it: the monitor measures the wall time between the steps at which the trainer synchronises
  (``trainer.metrics_synced``; every step for the torch engine) and records the per-step average over that
  span. ``record_device_memory()`` records the peak device memory in MB (``device_memory_peak_mb``) from
  ``torch.cuda`` or a JAX device's ``memory_stats()`` where the platform reports one.
* ``TorchProfilerWrapper(output_dir, wait_steps, warmup_steps, active_steps, repeat)`` —
  ``with wrapper.profile(model) as p: ... p.step()`` profiles the steps of a loop. A torch model (or
  ``backend="torch"``) gets ``torch.profiler`` with a wait/warmup/active schedule and a TensorBoard trace
  handler; a JAX-backed WorldFlux model (``backend="jax"``) gets ``jax.profiler`` tracing the ``active_steps``
  steps after ``wait_steps + warmup_steps`` (warmup steps run untraced, so compilation stays out of the
  trace), repeated ``repeat`` times. Both write their traces under ``output_dir``.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["PerformanceMonitor", "TorchProfilerWrapper"]

logger = logging.getLogger("worldflux.training")


def _percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of `values`."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * (pct / 100.0)
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class PerformanceMonitor:
    """Named timings with summary statistics; also a step-time callback (see the module docstring).

    Args:
        enabled: record anything at all (when False, ``measure`` and ``record`` are no-ops). A monitor
            passed to a ``Trainer`` as a callback is usually created with ``enabled=True``.
    """

    METRIC_NAMES = (
        "batch_load_ms",
        "forward_ms",
        "backward_ms",
        "optimizer_step_ms",
        "step_ms",
        "steps_per_sec",
        "device_memory_peak_mb",
    )

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = bool(enabled)
        self.metrics: dict[str, list[float]] = defaultdict(list)
        self._span_start: float | None = None
        self._span_step = 0
        self._train_start: float | None = None
        self._train_start_step = 0

    @contextmanager
    def measure(self, metric_name: str) -> Iterator[None]:
        """Record the wall time of the ``with`` body in milliseconds under `metric_name`."""
        if not self.enabled:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self.metrics[metric_name].append((time.perf_counter() - start) * 1000.0)

    def record(self, metric_name: str, value: float) -> None:
        """Record one value under `metric_name`."""
        if self.enabled:
            self.metrics[metric_name].append(float(value))

    def record_device_memory(self) -> None:
        """Record the peak device memory in MB (CUDA through torch, else the first JAX device that reports
        ``peak_bytes_in_use``); nothing on platforms that report none (CPU)."""
        if not self.enabled:
            return
        try:
            import torch

            if torch.cuda.is_available():
                self.metrics["device_memory_peak_mb"].append(torch.cuda.max_memory_allocated() / 2**20)
                torch.cuda.reset_peak_memory_stats()
                return
        except ImportError:
            pass
        import jax

        stats = jax.local_devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            self.metrics["device_memory_peak_mb"].append(stats["peak_bytes_in_use"] / 2**20)

    record_gpu_memory = record_device_memory  # the reference's name

    def summary(self) -> dict[str, dict[str, float]]:
        """``{name: {"mean", "p95", "max", "count"}}`` for every metric with values."""
        out: dict[str, dict[str, float]] = {}
        for name, values in self.metrics.items():
            if values:
                out[name] = {
                    "mean": sum(values) / len(values),
                    "p95": _percentile(values, 95),
                    "max": max(values),
                    "count": float(len(values)),
                }
        return out

    def reset(self) -> None:
        """Forget every recorded value."""
        self.metrics.clear()

    def log_summary(self) -> None:
        """Log the summary (one line per metric) to the ``worldflux.training`` logger."""
        if not self.enabled:
            return
        stats = self.summary()
        if not stats:
            logger.info("PerformanceMonitor: no metrics recorded.")
            return
        lines = ["Performance summary:"]
        for name, s in sorted(stats.items()):
            lines.append(f"  {name}: mean={s['mean']:.2f}, p95={s['p95']:.2f}, max={s['max']:.2f}")
        logger.info("\n".join(lines))

    # ------------------------------------------------------------------ callback hooks

    def on_train_begin(self, trainer: Any) -> None:
        self._span_start = self._train_start = time.perf_counter()
        self._span_step = self._train_start_step = int(trainer.state.global_step)

    def on_step_end(self, trainer: Any) -> None:
        if not self.enabled or self._span_start is None or not getattr(trainer, "metrics_synced", True):
            return
        now = time.perf_counter()
        step = int(trainer.state.global_step)
        steps = step - self._span_step
        if steps > 0:
            elapsed = now - self._span_start
            self.metrics["step_ms"].append(elapsed * 1000.0 / steps)
            if elapsed > 0:
                self.metrics["steps_per_sec"].append(steps / elapsed)
        self._span_start, self._span_step = now, step

    def on_train_end(self, trainer: Any) -> None:
        if not self.enabled:
            return
        self.record_device_memory()
        self.log_summary()

    def throughput(self) -> float | None:
        """Steps per second over the whole of the latest ``train`` call up to its last synced step."""
        if self._train_start is None or self._span_start is None or self._span_start <= self._train_start:
            return None
        return (self._span_step - self._train_start_step) / (self._span_start - self._train_start)


def _is_jax_model(model: Any) -> bool:
    from worldflux.core.jax_model import JaxWorldModel

    return isinstance(model, JaxWorldModel)


class _JaxStepProfiler:
    """``step()``-driven ``jax.profiler`` tracing with the wait/warmup/active/repeat schedule."""

    def __init__(self, output_dir: str, wait: int, warmup: int, active: int, repeat: int) -> None:
        self.output_dir = output_dir
        self.cycle = wait + warmup + active
        self.skip = wait + warmup
        self.repeat = repeat
        self.step_num = 0
        self.traces = 0
        self._tracing = False
        self._update()

    def _update(self) -> None:
        import jax

        cycle_index, position = divmod(self.step_num, self.cycle)
        want = (self.repeat <= 0 or cycle_index < self.repeat) and position >= self.skip
        if want and not self._tracing:
            jax.profiler.start_trace(self.output_dir)
            self._tracing = True
        elif not want and self._tracing:
            self.stop()

    def step(self) -> None:
        """Mark the end of one profiled step."""
        self.step_num += 1
        self._update()

    def stop(self) -> None:
        if self._tracing:
            import jax

            jax.profiler.stop_trace()
            self._tracing = False
            self.traces += 1


class TorchProfilerWrapper:
    """Profile the steps of a loop with torch.profiler or jax.profiler (see the module docstring).

    Args:
        output_dir: where the traces go (created).
        wait_steps / warmup_steps / active_steps: the schedule within one cycle (>= 0, active >= 1).
        repeat: number of cycles (0 = repeat while the loop runs).
        backend: ``"auto"`` (by the model given to ``profile``: JAX-backed WorldFlux models -> ``"jax"``,
            else ``"torch"``), ``"torch"`` or ``"jax"``.
    """

    BACKENDS = ("auto", "torch", "jax")

    def __init__(
        self,
        output_dir: str = "./profiles",
        wait_steps: int = 1,
        warmup_steps: int = 1,
        active_steps: int = 3,
        repeat: int = 1,
        *,
        backend: str = "auto",
    ) -> None:
        for name, value, low in (("wait_steps", wait_steps, 0), ("warmup_steps", warmup_steps, 0),
                                 ("active_steps", active_steps, 1), ("repeat", repeat, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if backend not in self.BACKENDS:
            raise ValueError(f"backend must be one of {list(self.BACKENDS)}, got {backend!r}")
        self.output_dir = os.fspath(output_dir)
        self.wait_steps = wait_steps
        self.warmup_steps = warmup_steps
        self.active_steps = active_steps
        self.repeat = repeat
        self.backend = backend

    def resolve_backend(self, model: Any = None) -> str:
        """``"torch"`` or ``"jax"`` for `model` under this wrapper's ``backend`` setting."""
        if self.backend != "auto":
            return self.backend
        return "jax" if model is not None and _is_jax_model(model) else "torch"

    @contextmanager
    def profile(self, model: Any = None) -> Iterator[Any]:
        """Yield a profiler whose ``step()`` the loop calls after each step; traces land in ``output_dir``."""
        os.makedirs(self.output_dir, exist_ok=True)
        if self.resolve_backend(model) == "jax":
            profiler = _JaxStepProfiler(self.output_dir, self.wait_steps, self.warmup_steps, self.active_steps,
                                        self.repeat)
            try:
                yield profiler
            finally:
                profiler.stop()
        else:
            import torch

            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            schedule = torch.profiler.schedule(wait=self.wait_steps, warmup=self.warmup_steps,
                                               active=self.active_steps, repeat=self.repeat)
            with torch.profiler.profile(
                activities=activities,
                schedule=schedule,
                on_trace_ready=torch.profiler.tensorboard_trace_handler(self.output_dir),
                record_shapes=True,
            ) as prof:
                yield prof
        logger.info("Profiler trace saved to %s", self.output_dir)
