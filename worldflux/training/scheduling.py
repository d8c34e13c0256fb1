"""Step clocks for training loops (reference ``worldflux.training.scheduling``).

* ``LocalClock(interval)`` fires each time a step counter crosses a multiple of ``interval``:
  ``ready(step)`` says whether it would fire, ``consume(step)`` returns how many boundaries were crossed
  since the last call and advances past them (so a loop that jumps several intervals at once still sees
  every firing).
* ``RatioUpdateScheduler(train_ratio, batch_size, batch_length)`` turns environment steps into gradient
  updates with DreamerV3's ``train_ratio`` semantics: every environment step earns
  ``train_ratio / (batch_size * batch_length)`` updates of credit (``train_ratio`` = replayed transitions per
  environment transition); ``on_env_step(n)`` returns the whole updates now due and keeps the fraction.
  With ``train_online`` this gives ``updates_per_collect`` for a target ratio:
  ``RatioUpdateScheduler(ratio, B, T).on_env_step(collect_steps_per_update * num_envs)``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LocalClock", "RatioUpdateScheduler"]


@dataclass
class LocalClock:
    """Fires when a step counter crosses a multiple of ``interval`` (values < 1 become 1)."""

    interval: int
    _next_fire: int = 0

    def __post_init__(self) -> None:
        self.interval = max(1, int(self.interval))
        self._next_fire = self.interval

    def ready(self, step: int) -> bool:
        """True when `step` has reached the next firing point."""
        return int(step) >= self._next_fire

    def consume(self, step: int) -> int:
        """Number of interval boundaries crossed up to `step` since the last call (0 if none)."""
        fired = 0
        while int(step) >= self._next_fire:
            fired += 1
            self._next_fire += self.interval
        return fired


@dataclass
class RatioUpdateScheduler:
    """Update credit from environment steps (see the module docstring)."""

    train_ratio: float
    batch_size: int
    batch_length: int
    credit: float = 0.0
    target_updates: int = 0

    def __post_init__(self) -> None:
        self.train_ratio = max(0.0, float(self.train_ratio))
        self.batch_size = max(1, int(self.batch_size))
        self.batch_length = max(1, int(self.batch_length))

    @property
    def updates_per_env_step(self) -> float:
        """Updates earned by one environment step: ``train_ratio / (batch_size * batch_length)``."""
        return self.train_ratio / float(self.batch_size * self.batch_length)

    def on_env_step(self, env_steps: int = 1) -> int:
        """Add the credit of `env_steps` environment steps; returns the whole updates now due."""
        if env_steps < 0:
            raise ValueError(f"env_steps must be non-negative, got {env_steps}")
        self.credit += float(env_steps) * self.updates_per_env_step
        due = int(self.credit)
        if due > 0:
            self.credit -= float(due)
            self.target_updates += due
        return due
