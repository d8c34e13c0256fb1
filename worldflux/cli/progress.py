"""The terminal progress bar of ``worldflux train`` (rich): train steps (offline) or environment steps
(online), the latest episode return, the loss and steps/s.

A training callback: the Trainer's ``on_train_begin``/``on_step_end`` and the online loop's
``on_episode_end``/``on_phase_change``. Metrics are read only on steps where the Trainer has synced them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TerminalProgress"]


class TerminalProgress:
    """A rich progress bar over ``total`` train steps (``online=False``) or environment steps (``online=True``).
    Does nothing when ``console`` is None."""

    def __init__(self, console: Any, *, online: bool, total: int) -> None:
        self.console = console
        self.online = online
        self.total = int(total)
        self._progress: Any = None
        self._task: Any = None
        self._fields = {"phase": "starting", "ret": "-", "loss": "-"}

    def _ensure(self, completed: int = 0) -> None:
        if self._progress is not None or self.console is None:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        unit = "env steps" if self.online else "steps"
        self._progress = Progress(
            TextColumn("[bold]{task.fields[phase]:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TextColumn("return {task.fields[ret]}  loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=self.total, completed=completed, rate="", **self._fields)

    def _update(self, **kwargs: Any) -> None:
        self._ensure()
        if self._progress is not None:
            self._progress.update(self._task, **kwargs)

    def on_train_begin(self, trainer: Any) -> None:
        self._ensure(0 if self.online else int(trainer.state.global_step))
        if not self.online:
            self._update(phase="training", completed=int(trainer.state.global_step))

    def on_step_end(self, trainer: Any) -> None:
        if self._progress is None:
            return
        if not self.online:
            self._progress.update(self._task, completed=int(trainer.state.global_step))
        if getattr(trainer, "metrics_synced", True):
            metrics = trainer.state.metrics
            if "loss" in metrics:
                self._fields["loss"] = f"{float(metrics['loss']):.4f}"
            profile = getattr(trainer, "runtime_profile", None)
            rate = profile().get("throughput_steps_per_sec") if callable(profile) else None
            self._progress.update(self._task, loss=self._fields["loss"],
                                  rate=f"{rate:.1f} train steps/s" if rate else "")

    def on_phase_change(self, phase: str) -> None:
        self._fields["phase"] = phase
        self._update(phase=phase)

    def on_episode_end(self, info: dict[str, Any]) -> None:
        self._fields["ret"] = f"{float(info['return']):.1f}"
        kwargs: dict[str, Any] = {"ret": self._fields["ret"]}
        if self.online:
            kwargs["completed"] = min(int(info.get("env_steps", 0)), self.total)
        self._update(**kwargs)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
