"""Where JAX-backed models run and what they share: device resolution (``resolve_jax_device``) and the cache of
compiled functions per model class and config (``_compiled_for``), used by ``worldflux.core.jax_model``."""

from __future__ import annotations

import collections
import json
import threading
import weakref
from collections.abc import Callable
from typing import Any

import jax
import torch

__all__ = ["resolve_jax_device"]

# ------------------------------------------------------------------------------------------------ devices


def resolve_jax_device(device: Any) -> jax.Device:
    """Map a torch-style device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``torch.device``), ``"auto"``/``"gpu"``
    or a ``jax.Device`` to a JAX device.

    Raises:
        ValueError: the device type is unknown, or JAX sees no such device (the message lists what JAX sees).
    """
    if isinstance(device, jax.Device):
        return device
    name = str(device if device is not None else "cpu").strip().lower()
    kind, _, index_text = name.partition(":")
    try:
        index = int(index_text) if index_text else 0
    except ValueError as exc:
        raise ValueError(f"Invalid device {device!r}: the index after ':' must be an integer") from exc
    if kind == "auto":
        kind = "cuda" if _jax_backend_devices("gpu") else "cpu"
    if kind == "cpu":
        return _jax_backend_devices("cpu")[0]
    if kind in ("cuda", "gpu"):
        gpus = _jax_backend_devices("gpu")
        if index < len(gpus):
            return gpus[index]
        raise ValueError(
            f"Cannot place the model on device {str(device)!r}: JAX sees {len(gpus)} GPU(s); its devices are "
            f"{[str(d) for d in jax.devices()]}. Install a CUDA-enabled jax (pip install 'jax[cuda12]') or use "
            "device='cpu'."
        )
    raise ValueError(
        f"Unsupported device {str(device)!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto' "
        f"(JAX devices: {[str(d) for d in jax.devices()]})"
    )


def _jax_backend_devices(backend: str) -> list[jax.Device]:
    try:
        return list(jax.devices(backend))
    except RuntimeError:
        return []


def _torch_device(device: jax.Device) -> torch.device:
    return torch.device("cpu") if device.platform == "cpu" else torch.device("cuda", device.id)


def _key_from_data(key_data: jax.Array) -> jax.Array:
    """A typed PRNG key from the raw threefry key data ``uint32[2]`` that ``_next_key`` draws."""
    return jax.random.wrap_key_data(key_data, impl="threefry2x32")


class _Compiled:
    """What the models of one class and config share: the core object, the jitted functions keyed by
    ``(name, static flags)`` and how often each name was traced. Freed with the last such model."""

    __slots__ = ("__weakref__", "core", "functions", "trace_counts")

    def __init__(self, core: Any) -> None:
        self.core = core
        self.functions: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self.trace_counts: collections.Counter[str] = collections.Counter()


_COMPILED: weakref.WeakValueDictionary[tuple[str, str], _Compiled] = weakref.WeakValueDictionary()
_COMPILED_LOCK = threading.Lock()


def _compiled_for(model_cls: type, config: Any, make_core: Callable[[Any], Any]) -> _Compiled:
    name = f"{model_cls.__module__}.{model_cls.__qualname__}"
    key = (name, json.dumps(config.to_dict(), sort_keys=True, default=str))
    with _COMPILED_LOCK:
        compiled = _COMPILED.get(key)
        if compiled is None:
            compiled = _Compiled(make_core(config))
            _COMPILED[key] = compiled
    return compiled
