"""The one prefetcher of the project: ``produce(i)`` for consecutive ``i`` on a daemon thread, a bounded queue ahead.

Used by the training script (``worldflux_jax.train``), the ``Trainer`` and ``PrefetchBatchProvider`` (both through
``worldflux.training.prefetch``). An exception raised by ``produce`` is carried through the queue and re-raised by
the consumer's next ``get`` (the worker then stops). ``depth = 0`` produces synchronously in ``get``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["PrefetchTimeout", "Prefetcher"]


class PrefetchTimeout(Exception):
    """No item arrived within the ``get`` timeout."""


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """Runs ``produce(i)`` for ``start <= i < stop`` (``stop=None``: forever) on a daemon thread, ``depth`` ahead.

    The thread starts on the first ``get`` (or at construction with ``eager=True``). ``close()`` stops and joins
    it (idempotent). ``produce`` must not keep a reference to the object that owns the prefetcher if that
    object is meant to be garbage-collected while unclosed.
    """

    def __init__(
        self,
        produce: Callable[[int], T],
        start: int = 0,
        stop: int | None = None,
        depth: int = 2,
        *,
        eager: bool = True,
        name: str = "worldflux-prefetch",
    ) -> None:
        self._produce = produce
        self._next = int(start)
        self._stop_at = stop
        self._depth = int(depth)
        self._name = name
        self._stop = threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, self._depth))
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self.closed = False
        if eager:
            self._ensure_started()

    def _ensure_started(self) -> None:
        if self._thread is not None or self._depth <= 0 or self.closed:
            return
        if self._stop_at is not None and self._next >= self._stop_at:
            return
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=_worker,
                    args=(self._produce, self._next, self._stop_at, self._queue, self._stop),
                    name=self._name,
                    daemon=True,
                )
                thread.start()
                self._thread = thread

    def get(self, timeout: float | None = None) -> T:
        """The next item. ``timeout`` (seconds, None = as long as the worker lives) bounds the wait.

        Raises:
            PrefetchTimeout: nothing arrived within ``timeout``.
            RuntimeError: the prefetcher is closed, or its worker stopped without producing the item.
            Exception: whatever ``produce`` raised.
        """
        if self._error is not None:
            raise self._error
        if self.closed:
            raise RuntimeError("the prefetcher is closed")
        if self._depth <= 0:
            index = self._next
            self._next += 1
            return self._produce(index)
        self._ensure_started()
        waited = 0.0
        while True:
            try:
                item = self._queue.get(timeout=0.5 if timeout is None else min(0.5, max(timeout - waited, 1e-3)))
                break
            except queue.Empty:
                waited += 0.5
                thread = self._thread
                if thread is None or (not thread.is_alive() and self._queue.empty()):
                    raise RuntimeError("the prefetch thread stopped without producing an item") from None
                if timeout is not None and waited >= timeout:
                    raise PrefetchTimeout(f"no item within {timeout} seconds") from None
        if isinstance(item, _Failure):
            self._error = item.error
            raise item.error
        return item

    def close(self, timeout: float | None = 30.0) -> None:
        self.closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            thread.join(timeout)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def signal_stop(self) -> None:
        """Ask the worker to stop without joining it (safe from ``__del__``)."""
        self._stop.set()


def _worker(
    produce: Callable[[int], Any], start: int, stop: int | None, out: queue.Queue[Any], event: threading.Event
) -> None:
    index = start
    while not event.is_set() and (stop is None or index < stop):
        try:
            item: Any = produce(index)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
            item = _Failure(exc)
        while not event.is_set():
            try:
                out.put(item, timeout=0.05)
                break
            except queue.Full:
                continue
        if isinstance(item, _Failure):
            return
        index += 1
