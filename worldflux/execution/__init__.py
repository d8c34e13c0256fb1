"""Where a model runs (reference ``worldflux.execution``; experimental): in this process, or as a delegated job.

* ``resolve_backend_execution(model_id, backend_hint) -> str | OfficialBackendHandle``: a native backend
  (``"native_torch"`` — the reference's name, also the default for an empty hint — or ``"native_jax"``) comes
  back as its name, meaning "build the model in this process" (``create_world_model``); a delegated backend
  (``"jax"``: the JAX training script as a separate process) comes back as an ``OfficialBackendHandle`` for
  ``Trainer(handle, config).submit()``, with metadata ``execution_kind="delegated_job"``, ``adapter_id``
  and ``backend_profile``. The reference's official-implementation subprocess backends are not provided
  (``ConfigurationError`` saying so); any other name is a ``ConfigurationError`` listing the known backends.
* ``normalize_backend_hint(hint)``, ``backend_name_for(value)``, ``known_backends()``.
"""

from __future__ import annotations

from typing import Any

from worldflux.core.exceptions import ConfigurationError
from worldflux.training.delegated import KNOWN_BACKENDS as DELEGATED_BACKENDS
from worldflux.training.delegated import OfficialBackendHandle

__all__ = [
    "DELEGATED_BACKENDS",
    "NATIVE_BACKENDS",
    "NATIVE_TORCH_BACKEND",
    "backend_name_for",
    "known_backends",
    "normalize_backend_hint",
    "resolve_backend_execution",
]

NATIVE_TORCH_BACKEND = "native_torch"
NATIVE_BACKENDS = (NATIVE_TORCH_BACKEND, "native_jax")


def known_backends() -> tuple[str, ...]:
    """Every backend name ``resolve_backend_execution`` accepts."""
    return NATIVE_BACKENDS + tuple(DELEGATED_BACKENDS)


def normalize_backend_hint(backend_hint: str | None) -> str:
    """The backend name of `backend_hint` (stripped; empty or None -> ``"native_torch"``)."""
    normalized = str(backend_hint or "").strip()
    return normalized or NATIVE_TORCH_BACKEND


def resolve_backend_execution(model_id: str, backend_hint: str | None) -> str | OfficialBackendHandle:
    """How `model_id` runs under `backend_hint` (see the module docstring).

    Raises:
        ConfigurationError: an empty `model_id`, a reference subprocess backend, or an unknown backend.
    """
    from worldflux.factory import SUBPROCESS_BACKENDS

    if not isinstance(model_id, str) or not model_id.strip():
        raise ConfigurationError(f"model_id must be a non-empty string such as 'tdmpc2:ci', got {model_id!r}")
    backend = normalize_backend_hint(backend_hint)
    if backend in NATIVE_BACKENDS:
        return backend
    if backend in DELEGATED_BACKENDS:
        return OfficialBackendHandle(
            backend=backend,
            model_id=model_id.strip(),
            metadata={"execution_kind": "delegated_job", "adapter_id": backend, "backend_profile": ""},
        )
    if backend in SUBPROCESS_BACKENDS:
        raise ConfigurationError(
            f"Backend '{backend}' runs the reference's official implementation in a subprocess, which worldflux-jax "
            f"does not provide. Known backends: {list(known_backends())}"
        )
    raise ConfigurationError(f"Unknown backend {backend!r}. Known backends: {list(known_backends())}")


def backend_name_for(value: Any) -> str:
    """The backend of a handle, of a backend-name string, or ``"native_torch"`` for anything else (a model)."""
    if isinstance(value, OfficialBackendHandle):
        return value.backend
    if isinstance(value, str):
        return normalize_backend_hint(value)
    return NATIVE_TORCH_BACKEND
