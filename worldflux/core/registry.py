"""Model and config registries and the HuggingFace-style ``AutoWorldModel`` / ``AutoConfig`` (reference
``worldflux.core.registry``).

``WorldModelRegistry.register(model_type, config_class)`` registers a ``WorldModel`` subclass (and its config
class) for ``from_pretrained``; a subclass that sets a ``model_type`` class attribute is registered
automatically. ``AutoWorldModel.from_pretrained(name_or_path)`` loads a ``save_pretrained`` directory, a
``"type:size"`` id or a Hugging Face repo id; ``AutoConfig.from_pretrained`` reads only the config.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .config import CONFIG_REGISTRY, FAMILY_ALIASES, WorldModelConfig, config_from_id, register_config
from .exceptions import ConfigurationError
from .model import WorldModel, _model_class
from .plugins import ENTRY_POINT_GROUP, PluginManifest, discover_plugins, plugin_registry, register_plugin

__all__ = ["AutoConfig", "AutoWorldModel", "ConfigRegistry", "PluginManifest", "WorldModelRegistry"]

M = TypeVar("M", bound=type)


class ConfigRegistry:
    """``model_type`` -> config class (the table ``worldflux.core.config.CONFIG_REGISTRY``)."""

    _registry = CONFIG_REGISTRY

    @classmethod
    def register(cls, model_type: str, config_class: type[WorldModelConfig]) -> None:
        register_config(model_type, config_class)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], **kwargs: Any) -> WorldModelConfig:
        """The config in directory `name_or_path` (``config.json``; the class registered for its
        ``model_type``, else ``WorldModelConfig``), or of a ``"type:size"`` id (kwargs override fields).

        Raises:
            FileNotFoundError: the directory has no ``config.json``.
            ConfigurationError: invalid JSON or no ``model_type``.
            ValueError: neither an existing path nor a ``"type:size"`` id.
        """
        path = Path(os.fspath(name_or_path))
        if path.exists():
            config_path = path / "config.json" if path.is_dir() else path
            if not config_path.is_file():
                raise FileNotFoundError(f"Config file not found: {config_path}")
            return WorldModelConfig.load(config_path)
        name = str(name_or_path)
        if ":" in name:
            return config_from_id(name, **kwargs)
        raise ValueError(f"Invalid config identifier: {name}")


class WorldModelRegistry:
    """``model_type`` -> ``WorldModel`` subclass (shared with ``WorldModel``'s automatic registration)."""

    _model_registry = WorldModel._registry
    _aliases: dict[str, str] = {}

    @classmethod
    def register(cls, model_type: str, config_class: type[WorldModelConfig] | None = None) -> Callable[[M], M]:
        """Class decorator registering a model class (and optionally its config class) for `model_type`.

        Raises:
            ConfigurationError: `model_type` is already registered to another class.
        """

        def decorator(model_class: M) -> M:
            existing = cls._model_registry.get(model_type)
            if existing is not None and existing is not model_class:
                raise ConfigurationError(
                    f"Model type '{model_type}' is already registered to {existing.__name__}. Cannot re-register "
                    f"to {model_class.__name__}. Use a different model_type or unregister the existing model first."
                )
            cls._model_registry[model_type] = model_class  # type: ignore[assignment]
            if model_class.__dict__.get("model_type") in (None, "base"):
                model_class.model_type = model_type  # type: ignore[attr-defined]
            if config_class is not None:
                register_config(model_type, config_class)
            return model_class

        return decorator

    @classmethod
    def unregister(cls, model_type: str) -> bool:
        return cls._model_registry.pop(model_type, None) is not None

    @classmethod
    def register_alias(cls, name: str, target: str) -> None:
        cls._aliases[name.lower()] = target

    @classmethod
    def resolve_alias(cls, name: str) -> str:
        return cls._aliases.get(name.lower(), name)

    @classmethod
    def get(cls, model_type: str) -> type[WorldModel] | None:
        """The class registered for `model_type` (bundled families are imported on demand)."""
        key = FAMILY_ALIASES.get(model_type.lower(), model_type)
        return _model_class(key)

    @classmethod
    def list_models(cls) -> dict[str, type]:
        for family in ("dreamer", "tdmpc2"):
            _model_class(family)
        return dict(cls._model_registry)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> WorldModel:
        return WorldModel.from_pretrained(cls.resolve_alias(str(name_or_path)), **kwargs)

    # plugins (``worldflux.core.plugins``)
    @classmethod
    def register_plugin(cls, manifest: PluginManifest, *, load: bool = True, replace: bool = False) -> PluginManifest:
        """Register a plugin's manifest (loading its entry point first); see ``worldflux.core.plugins``."""
        return register_plugin(manifest, load=load, replace=replace)

    @classmethod
    def load_plugins(cls, group: str = ENTRY_POINT_GROUP) -> list[PluginManifest]:
        """Discover and register the installed plugins of the entry-point `group`."""
        return discover_plugins(group)

    @classmethod
    def list_plugins(cls) -> dict[str, PluginManifest]:
        """Registered plugin manifests by name."""
        return plugin_registry()


class AutoWorldModel:
    """HuggingFace AutoModel-style loader: ``AutoWorldModel.from_pretrained("./saved")``."""

    @staticmethod
    def from_pretrained(name_or_path: str, **kwargs: Any) -> WorldModel:
        return WorldModelRegistry.from_pretrained(name_or_path, **kwargs)


class AutoConfig:
    """HuggingFace AutoConfig-style loader: ``AutoConfig.from_pretrained("./saved")``."""

    @staticmethod
    def from_pretrained(name_or_path: str, **kwargs: Any) -> WorldModelConfig:
        return ConfigRegistry.from_pretrained(name_or_path, **kwargs)
