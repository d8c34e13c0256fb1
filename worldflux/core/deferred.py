"""Fields produced on first read, shared by ``DeferredLossOutput`` and ``DeferredTrajectory``.

A deferred object keeps ``{field name: producer}`` under ``_producers`` in its ``__dict__``; the first read
of a field calls its producer once and stores the value as an ordinary attribute.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


def produce_field(obj: Any, name: str) -> Any:
    """The value of `obj`'s field `name`: stored, or produced now by its producer and stored.

    Two threads reading the same field at once may both call the producer; the first value stored wins and
    both return it.

    Raises:
        AttributeError: `obj` has no such field and no producer for it.
    """
    fields = obj.__dict__
    value = fields.get(name, _MISSING)
    if value is not _MISSING:
        return value
    produce = fields.get("_producers", {}).get(name)
    if produce is None:
        value = fields.get(name, _MISSING)  # produced by another thread since the lookup above
        if value is _MISSING:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {name!r}")
        return value
    value = fields.setdefault(name, produce())
    fields["_producers"].pop(name, None)
    return value
