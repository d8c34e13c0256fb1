"""Callbacks and the event bus (``worldflux.core.events``), both directions.

* ``EventBusCallback(event_bus)`` — a callback that publishes each trainer hook as a training event:
  ``on_step_end`` -> ``Event("step.end", {"trainer": trainer, "step": global_step})``, and likewise
  ``train.begin/end``, ``epoch.begin/end``, ``step.begin``.
* ``CallbackAdapter(event_bus, callback)`` — drives `callback` from `event_bus`: each training event calls the
  callback's matching hook with ``event.data["trainer"]`` (hooks written ``(step, losses)`` get the step and
  the trainer's metrics, as with ``Trainer(callbacks=...)``). ``close()`` unsubscribes.

Together: ``Trainer(model, config, callbacks=[EventBusCallback(bus)])`` plus ``CallbackAdapter(bus, cb)``
runs ``cb`` as if it had been passed to the trainer, while other subscribers see the same events.
"""

from __future__ import annotations

from typing import Any

from worldflux.core.events import Event, EventBus, EventTypes, Subscription

from .callbacks import HOOKS, Callback, CallbackList

__all__ = ["CallbackAdapter", "EventBusCallback"]

HOOK_EVENTS: dict[str, str] = {
    "on_train_begin": EventTypes.TRAIN_BEGIN,
    "on_train_end": EventTypes.TRAIN_END,
    "on_epoch_begin": EventTypes.EPOCH_BEGIN,
    "on_epoch_end": EventTypes.EPOCH_END,
    "on_step_begin": EventTypes.STEP_BEGIN,
    "on_step_end": EventTypes.STEP_END,
}
assert set(HOOK_EVENTS) == set(HOOKS)


def _check_bus(event_bus: Any) -> None:
    if not isinstance(event_bus, EventBus):
        raise TypeError(f"event_bus must be a worldflux.core.events.EventBus, got {type(event_bus).__name__}")


class EventBusCallback(Callback):
    """Publish the trainer's hooks on `event_bus` (see the module docstring)."""

    def __init__(self, event_bus: EventBus, source: str = "trainer") -> None:
        _check_bus(event_bus)
        self.event_bus = event_bus
        self.source = source

    def _publish(self, hook: str, trainer: Any) -> None:
        data = {"trainer": trainer, "step": int(trainer.state.global_step)}
        self.event_bus.publish(Event(HOOK_EVENTS[hook], data, source=self.source))

    def on_train_begin(self, trainer: Any) -> None:
        self._publish("on_train_begin", trainer)

    def on_train_end(self, trainer: Any) -> None:
        self._publish("on_train_end", trainer)

    def on_epoch_begin(self, trainer: Any) -> None:
        self._publish("on_epoch_begin", trainer)

    def on_epoch_end(self, trainer: Any) -> None:
        self._publish("on_epoch_end", trainer)

    def on_step_begin(self, trainer: Any) -> None:
        self._publish("on_step_begin", trainer)

    def on_step_end(self, trainer: Any) -> None:
        self._publish("on_step_end", trainer)


class CallbackAdapter:
    """Run `callback`'s hooks on `event_bus`'s training events (see the module docstring).

    Raises:
        TypeError: `event_bus` is not an ``EventBus``.
    """

    def __init__(self, event_bus: EventBus, callback: Any) -> None:
        _check_bus(event_bus)
        self.event_bus = event_bus
        self.callback = callback
        self._hooks = CallbackList([callback])  # handles both hook signatures
        self.subscriptions: list[Subscription] = []
        for hook, event_type in HOOK_EVENTS.items():
            if callable(getattr(callback, hook, None)):
                self.subscriptions.append(event_bus.subscribe(event_type, self._handler(hook)))

    def _handler(self, hook: str) -> Any:
        def handle(event: Event) -> None:
            trainer = event.data.get("trainer")
            if trainer is None:
                raise ValueError(f"event {event.event_type!r} carries no 'trainer' in its data")
            self._hooks.call(hook, trainer)

        return handle

    def close(self) -> None:
        """Stop listening to the bus."""
        for sub in self.subscriptions:
            self.event_bus.unsubscribe(sub)
        self.subscriptions = []
