"""Model and config registries and the HuggingFace-style ``AutoWorldModel`` / ``AutoConfig`` (reference
``worldflux.core.registry``).

``WorldModelRegistry.register(model_type, config_class)`` registers a ``WorldModel`` subclass (and its config
class) for ``from_pretrained``; a subclass that sets a ``model_type`` class attribute is registered
automatically. ``AutoWorldModel.from_pretrained(name_or_path)`` loads a ``save_pretrained`` directory, a
``"type:size"`` id or a Hugging Face repo id; ``AutoConfig.from_pretrained`` reads only the config.

Plugins (experimental): ``register_plugin_manifest`` / ``list_plugin_manifests`` / ``load_entrypoint_plugins``
(the ``worldflux.models`` and ``worldflux.components`` entry-point groups, loaded on the first ``list_models`` /
``from_pretrained``); see ``worldflux.core.plugins``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from importlib import metadata as importlib_metadata  # noqa: F401 - patched by tests, as in the reference
from pathlib import Path
from typing import Any, TypeVar

from .components import (
    apply_component_overrides,
    build_component,
    component_registry,
    get_component,
    register_component,
    unregister_component,
)
from .config import CONFIG_REGISTRY, FAMILY_ALIASES, WorldModelConfig, config_from_id, register_config
from .exceptions import ConfigurationError
from .interfaces import ComponentSpec
from .model import WorldModel, _model_class
from .plugins import (
    ENTRY_POINT_GROUPS,
    PluginManifest,
    iter_entry_points,
    normalize_manifest,
    runtime_version_matches,
    validate_manifest,
)

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
        from worldflux.models.registry import BUILTIN_MODEL_MODULES

        cls.load_entrypoint_plugins()
        for family in BUILTIN_MODEL_MODULES:
            _model_class(family)
        return dict(cls._model_registry)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> WorldModel:
        cls.load_entrypoint_plugins()
        return WorldModel.from_pretrained(cls.resolve_alias(str(name_or_path)), **kwargs)

    @classmethod
    def unregister_alias(cls, name: str) -> bool:
        return cls._aliases.pop(name.lower(), None) is not None

    # -- plugins (``worldflux.core.plugins``) -------------------------------------------------------------
    _plugin_manifests: dict[str, PluginManifest] = {}
    _plugins_loaded: bool = False

    @classmethod
    def register_plugin_manifest(cls, plugin_name: str, manifest: PluginManifest | dict[str, Any]) -> None:
        """Validate and record `manifest` (a ``PluginManifest`` or a dict of its fields) under `plugin_name`.

        Raises:
            ConfigurationError: an empty name, or a manifest this runtime cannot accept.
        """
        if not plugin_name:
            raise ConfigurationError("plugin_name must not be empty")
        normalized = normalize_manifest(manifest)
        validate_manifest(plugin_name, normalized)
        cls._plugin_manifests[plugin_name] = normalized

    @classmethod
    def unregister_plugin_manifest(cls, plugin_name: str) -> bool:
        return cls._plugin_manifests.pop(plugin_name, None) is not None

    @classmethod
    def list_plugin_manifests(cls) -> dict[str, PluginManifest]:
        return dict(cls._plugin_manifests)

    _worldflux_version_matches = staticmethod(runtime_version_matches)

    @classmethod
    def load_entrypoint_plugins(cls, *, force: bool = False) -> None:
        """Load the ``worldflux.models`` and ``worldflux.components`` entry points (once, unless `force`).

        An entry point that fails to import or run is skipped with a ``RuntimeWarning`` naming it.

        Raises:
            ConfigurationError: a plugin declares a manifest this runtime cannot accept.
        """
        if cls._plugins_loaded and not force:
            return
        for group in ENTRY_POINT_GROUPS:
            for entry in iter_entry_points(group):
                try:
                    loaded = entry.load()
                    returned = loaded() if callable(loaded) else loaded
                except ConfigurationError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken plugin must not break every registry call
                    warnings.warn(f"Failed to load entry point '{entry.name}' from group '{group}': {exc}",
                                  RuntimeWarning, stacklevel=2)
                    continue
                if isinstance(returned, PluginManifest | dict) and entry.name not in cls._plugin_manifests:
                    cls.register_plugin_manifest(entry.name, returned)
                elif entry.name not in cls._plugin_manifests:
                    cls.register_plugin_manifest(entry.name, PluginManifest(capabilities=("legacy-no-manifest",)))
                validate_manifest(entry.name, cls._plugin_manifests[entry.name])
        cls._plugins_loaded = True

    # -- catalog and components (``worldflux.factory``, ``worldflux.core.components``) -----------------------
    @classmethod
    def register_catalog_entry(cls, model_id: str, info: dict[str, Any]) -> None:
        from worldflux.factory import register_catalog_entry

        register_catalog_entry(model_id, info)

    @classmethod
    def unregister_catalog_entry(cls, model_id: str) -> bool:
        from worldflux.factory import MODEL_CATALOG

        return MODEL_CATALOG.pop(model_id, None) is not None

    @classmethod
    def list_catalog(cls) -> dict[str, dict[str, Any]]:
        from worldflux.factory import MODEL_CATALOG

        return {k: dict(v) for k, v in MODEL_CATALOG.items()}

    @classmethod
    def register_component(cls, component_id: str, component_class: type, spec: ComponentSpec) -> None:
        register_component(component_id, component_class, spec)

    @classmethod
    def unregister_component(cls, component_id: str) -> bool:
        return unregister_component(component_id)

    @classmethod
    def get_component(cls, component_id: str) -> tuple[ComponentSpec, type]:
        cls.load_entrypoint_plugins()
        return get_component(component_id)

    @classmethod
    def list_components(cls) -> dict[str, ComponentSpec]:
        cls.load_entrypoint_plugins()
        return component_registry()

    @classmethod
    def apply_component_overrides(cls, model: Any, component_overrides: dict[str, object]) -> None:
        """Put ``{slot: id | class | instance}`` overrides into `model` (``worldflux.core.components``)."""
        apply_component_overrides(model, component_overrides)

    @classmethod
    def build_component(cls, override: object, *, expected_component_type: str, model: Any) -> Any:
        """A component from a registered id, a class or an instance (``worldflux.core.components``)."""
        cls.load_entrypoint_plugins()
        return build_component(override, expected_component_type=expected_component_type, model=model)


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
