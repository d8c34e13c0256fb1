"""Which callable builds the world model of each ``model_type``, and which loads a saved model directory.

The factory (:func:`worldflux.create_world_model`) turns a model id into a config and then calls
:func:`build_model`; for a local directory it calls :func:`build_from_pretrained`. World-model classes
register themselves here::

    from worldflux.models.registry import register_model, register_pretrained_loader

    @register_model("dreamer")
    class DreamerV3WorldModel:
        def __init__(self, config, *, device="cpu", api_version="v3"): ...

    register_pretrained_loader("dreamer")(DreamerV3WorldModel.from_pretrained)

Both registries start empty. When nothing is registered for a ``model_type``, the module named for it in
``BUILTIN_MODEL_MODULES`` is imported once (so registering on import works without importing it first),
and if there is still nothing, a :class:`ConfigurationError` names the ``model_type`` and the registered ones.

Builders and loaders receive ``device=`` and ``api_version=`` keyword arguments when their signature
accepts them (or ``**kwargs``); otherwise those are left out, and the returned model's ``.to(device)`` is
called when it has one.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from worldflux_jax.errors import ConfigurationError

__all__ = [
    "BUILTIN_MODEL_MODULES",
    "CONFIG_ONLY_FAMILIES",
    "MODEL_BUILDERS",
    "PRETRAINED_LOADERS",
    "SKELETON_ALTERNATIVES",
    "build_from_pretrained",
    "build_model",
    "register_model",
    "register_pretrained_loader",
    "registered_model_types",
    "skeleton_error",
]

F = TypeVar("F", bound=Callable[..., Any])

# model_type -> callable(config, **kw) returning the world model. Empty until models register.
MODEL_BUILDERS: dict[str, Callable[..., Any]] = {}
# model_type -> callable(path, **kw) returning the world model saved in directory `path`.
PRETRAINED_LOADERS: dict[str, Callable[..., Any]] = {}
# model_type -> module whose import registers its builder/loader (imported on first need).
BUILTIN_MODEL_MODULES: dict[str, str] = {
    "dreamer": "worldflux.models.dreamer",
    "tdmpc2": "worldflux.models.tdmpc2",
    "jepa": "worldflux.models.experimental",
    "vjepa2": "worldflux.models.experimental",
    "token": "worldflux.models.experimental",
    "diffusion": "worldflux.models.experimental",
}
# The reference's skeleton families: placeholders there, configuration objects only here (docs/decisions.md).
CONFIG_ONLY_FAMILIES: frozenset[str] = frozenset({"dit", "ssm", "renderer3d", "physics", "gan"})
# For each skeleton family, the buildable families closest to what its name describes.
SKELETON_ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "dit": ("diffusion", "token"),
    "ssm": ("dreamer", "tdmpc2"),
    "renderer3d": ("dreamer", "diffusion"),
    "physics": ("tdmpc2", "dreamer"),
    "gan": ("diffusion", "dreamer"),
}


def _register(table: dict[str, Callable[..., Any]], what: str, model_type: str) -> Callable[[F], F]:
    if not isinstance(model_type, str) or not model_type:
        raise ConfigurationError(f"model_type must be a non-empty str, got {model_type!r}")

    def decorator(fn: F) -> F:
        if not callable(fn):
            raise ConfigurationError(f"{what} for '{model_type}' must be callable, got {fn!r}")
        existing = table.get(model_type)
        if existing is not None and existing is not fn:
            raise ConfigurationError(
                f"Model type '{model_type}' already has a {what} ({_name(existing)}); "
                f"cannot register {_name(fn)} as well. Remove the existing entry first."
            )
        table[model_type] = fn
        return fn

    return decorator


def register_model(model_type: str) -> Callable[[F], F]:
    """Decorator: register a class or function building the world model of `model_type` from a config."""
    return _register(MODEL_BUILDERS, "model builder", model_type)


def register_pretrained_loader(model_type: str) -> Callable[[F], F]:
    """Decorator: register a callable loading a saved `model_type` model from a directory path."""
    return _register(PRETRAINED_LOADERS, "pretrained loader", model_type)


def registered_model_types() -> list[str]:
    """Model types that currently have a builder (after importing the bundled model modules)."""
    for model_type in BUILTIN_MODEL_MODULES:
        _import_builtin(model_type)
    return list(MODEL_BUILDERS)


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__name__


def _import_builtin(model_type: str) -> None:
    module = BUILTIN_MODEL_MODULES.get(model_type)
    if module is None:
        return
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only "the module does not exist (yet)" is tolerated; a broken import inside it propagates.
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise


def _lookup(table: dict[str, Callable[..., Any]], model_type: str, what: str, subject: str) -> Callable[..., Any]:
    if model_type not in table:
        _import_builtin(model_type)
    fn = table.get(model_type)
    if fn is not None:
        return fn
    registered = sorted(table)
    if model_type in CONFIG_ONLY_FAMILIES:
        raise skeleton_error(model_type)
    raise ConfigurationError(
        f"No {what} is registered for model_type '{model_type}' ({subject}). Registered model types: {registered}."
    )


def skeleton_error(model_type: str) -> ConfigurationError:
    """The error for building a skeleton family: what it is, and which families to use instead."""
    closest = SKELETON_ALTERNATIVES.get(model_type, ())
    buildable = sorted(k for k in BUILTIN_MODEL_MODULES)
    return ConfigurationError(
        f"Model type '{model_type}' is a skeleton family (a placeholder without an implementation in WorldFlux), "
        f"available as a configuration only: worldflux-jax builds no '{model_type}' world model. "
        f"Closest buildable families: {list(closest)}; all buildable model types: {buildable} "
        f"(e.g. create_world_model('{closest[0] if closest else 'dreamer'}:ci', obs_shape=..., action_dim=...))."
    )


def _call(fn: Callable[..., Any], first: Any, **kwargs: Any) -> tuple[Any, set[str]]:
    """Call ``fn(first, **kwargs)`` passing only the keyword arguments `fn` accepts; return (result, passed)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(first, **kwargs), set(kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(first, **kwargs), set(kwargs)
    accepted = {k: v for k, v in kwargs.items() if k in params}
    return fn(first, **accepted), set(accepted)


def _finish(model: Any, passed: set[str], device: str | None) -> Any:
    if device is not None and "device" not in passed:
        to = getattr(model, "to", None)
        if callable(to):
            moved = to(device)
            model = model if moved is None else moved
    return model


def build_model(config: Any, **kwargs: Any) -> Any:
    """Build the world model for `config` with the builder registered for ``config.model_type``.

    Keyword arguments (the factory passes ``device`` and ``api_version``) go to the builder when it accepts
    them. Raises ConfigurationError when no builder is registered for the model type.
    """
    model_type = str(getattr(config, "model_type", ""))
    builder = _lookup(MODEL_BUILDERS, model_type, "model builder", type(config).__name__)
    model, passed = _call(builder, config, **kwargs)
    return _finish(model, passed, kwargs.get("device"))


def build_from_pretrained(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Load the world model saved in directory `path` (``config.json`` + weights).

    The ``model_type`` in ``path/config.json`` selects the loader registered with
    :func:`register_pretrained_loader`. Raises FileNotFoundError without ``config.json`` and
    ConfigurationError when no loader is registered for the model type.
    """
    from worldflux.core.config import WorldModelConfig

    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"Saved model directory not found: {os.fspath(path)}")
    config = WorldModelConfig.load(directory)
    loader = _lookup(PRETRAINED_LOADERS, config.model_type, "pretrained loader", f"saved in {os.fspath(path)}")
    model, passed = _call(loader, os.fspath(path), **kwargs)
    return _finish(model, passed, kwargs.get("device"))
