"""Batch prefetching of the ``worldflux`` package: the project's one ``Prefetcher`` (``worldflux_jax.prefetch``) and
``sample_call``, the one way to call a provider's ``sample`` (``sample(BatchRequest)`` or keyword style).

Used by the ``Trainer`` (sampling + conversion of the batches of the next steps while the current step runs) and by
``PrefetchBatchProvider`` (a ``BatchProvider`` that samples ahead).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from worldflux.core.batch import BatchRequest
from worldflux_jax.prefetch import Prefetcher, PrefetchTimeout

__all__ = ["PrefetchTimeout", "Prefetcher", "sample_call"]


def sample_call(provider: Any, batch_size: int, seq_len: int | None, device: Any = "cpu") -> Callable[[], Any]:
    """``provider.sample(BatchRequest)`` for a one-parameter ``sample``, else ``sample(batch_size=, seq_len=,
    device=)`` (a closure over the request, not over the caller)."""
    sample = provider.sample
    try:
        params = [
            p
            for p in inspect.signature(sample).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) == 1:
        request = BatchRequest(batch_size=batch_size, seq_len=seq_len, device=device)
        return lambda: sample(request)
    return lambda: sample(batch_size=batch_size, seq_len=seq_len, device=device)
