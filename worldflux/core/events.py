"""A small publish/subscribe event bus (reference ``worldflux.core.events``).

``EventBus.subscribe(pattern, handler, *, priority=50) -> Subscription`` registers ``handler(event)`` for
events whose type equals `pattern` or matches it as a glob (``"step.*"``); lower priorities run first, then
subscription order. ``publish(Event(event_type, data))`` calls every matching handler; a handler that raises
is logged and does not stop the others. A disabled bus (``enabled=False``) publishes nothing.

Training events (``EventTypes``): ``train.begin``, ``train.end``, ``epoch.begin``, ``epoch.end``,
``step.begin``, ``step.end``, whose ``data`` holds ``{"trainer": trainer, "step": global_step}``.
``worldflux.training.callbacks.CallbackAdapter`` connects callbacks to a bus.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "EventBus", "EventTypes", "Subscription"]

logger = logging.getLogger("worldflux.core.events")


class EventTypes:
    """Names of the standard events."""

    TRAIN_BEGIN = "train.begin"
    TRAIN_END = "train.end"
    EPOCH_BEGIN = "epoch.begin"
    EPOCH_END = "epoch.end"
    STEP_BEGIN = "step.begin"
    STEP_END = "step.end"
    NAN_DETECTED = "nan.detected"
    TRAINING_ERROR = "training.error"
    CHECKPOINT_FAILED = "checkpoint.failed"


@dataclass(frozen=True)
class Event:
    """One published event: a dot-separated type, a payload, its source and creation time (Unix seconds)."""

    event_type: str
    data: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    timestamp: float = field(default_factory=time.time)


@dataclass
class Subscription:
    """Handle of one subscription (pass it to ``EventBus.unsubscribe``)."""

    pattern: str
    handler: Callable[[Event], None]
    priority: int = 50
    subscription_id: int = 0


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


class EventBus:
    """Publish/subscribe with exact and glob patterns and priorities (see the module docstring)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = bool(enabled)
        self._subscriptions: list[Subscription] = []
        self._next_id = 0

    def subscribe(self, event_type: str, handler: Callable[[Event], None], *, priority: int = 50) -> Subscription:
        """Call `handler(event)` for events matching `event_type` (exact name or glob)."""
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        sub = Subscription(event_type, handler, int(priority), self._next_id)
        self._next_id += 1
        self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove `subscription` (no-op if it is not subscribed)."""
        self._subscriptions = [s for s in self._subscriptions if s.subscription_id != subscription.subscription_id]

    def publish(self, event: Event) -> None:
        """Deliver `event` to every matching handler, lowest priority first."""
        if not self.enabled or not self._subscriptions:
            return
        kind = event.event_type
        matching = [
            s for s in self._subscriptions
            if s.pattern == kind or (_is_glob(s.pattern) and fnmatch.fnmatchcase(kind, s.pattern))
        ]
        for sub in sorted(matching, key=lambda s: (s.priority, s.subscription_id)):
            try:
                sub.handler(event)
            except Exception:  # noqa: BLE001 - one failing handler must not silence the others
                logger.exception("Event handler %r failed for event %s", sub.handler, event.event_type)

    def clear(self) -> None:
        """Remove every subscription."""
        self._subscriptions.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)
