"""Plugin manifests: how third-party packages declare the model types and components they add.

A plugin is a Python package that registers ``WorldModel`` subclasses (``WorldModelRegistry.register`` or a
``model_type`` class attribute) and/or components. It describes itself with a ``PluginManifest`` and is
registered in ``WorldModelRegistry``:

* explicitly: ``WorldModelRegistry.register_plugin(PluginManifest(name="acme", version="1.0",
  model_types=("acme_wm",), entry_point="acme_worldflux:register"))`` — with ``load=True`` (the default) the
  ``entry_point`` (``"module:callable"`` or ``"module"``) is imported / called first, so the declared model
  types exist afterwards;
* by discovery: ``WorldModelRegistry.load_plugins()`` reads the ``worldflux.plugins`` entry-point group of the
  installed distributions; each entry point resolves to a ``PluginManifest`` or to a callable returning one
  (the callable may register the plugin's models as a side effect).

After loading, every declared ``model_types`` entry must be registered, else ``ConfigurationError`` names the
missing ones. ``min_worldflux_version`` (e.g. ``"0.1"``) is compared with ``worldflux.__version__`` by its
numeric release parts.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

from .exceptions import ConfigurationError

__all__ = ["ENTRY_POINT_GROUP", "PluginManifest", "discover_plugins", "plugin_registry", "register_plugin"]

ENTRY_POINT_GROUP = "worldflux.plugins"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_PLUGINS: dict[str, PluginManifest] = {}


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


@dataclass(frozen=True)
class PluginManifest:
    """What a plugin provides (see the module docstring).

    Raises:
        ConfigurationError: an empty or malformed ``name``, an empty ``version``, or non-string entries.
    """

    name: str
    version: str
    model_types: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    description: str = ""
    entry_point: str | None = None
    min_worldflux_version: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigurationError(
                f"PluginManifest.name must be a non-empty name of letters, digits, '_', '.', '-', got {self.name!r}"
            )
        if not isinstance(self.version, str) or not self.version:
            raise ConfigurationError(f"PluginManifest.version must be a non-empty string, got {self.version!r}")
        for attr in ("model_types", "components"):
            values = tuple(getattr(self, attr))
            if not all(isinstance(v, str) and v for v in values):
                raise ConfigurationError(f"PluginManifest.{attr} must be non-empty strings, got {list(values)}")
            object.__setattr__(self, attr, values)
        if self.entry_point is not None and (not isinstance(self.entry_point, str) or not self.entry_point):
            raise ConfigurationError(f"PluginManifest.entry_point must be 'module:attr', got {self.entry_point!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model_types"], data["components"] = list(self.model_types), list(self.components)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PluginManifest:
        """Build from a mapping (e.g. a JSON file); unknown keys are a ``ConfigurationError``."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(f"Unknown PluginManifest field(s) {unknown}; known: {sorted(known)}")
        values = dict(data)
        for attr in ("model_types", "components"):
            if attr in values:
                values[attr] = tuple(values[attr])
        return cls(**values)

    def check_compatible(self, worldflux_version: str) -> None:
        """Raise ``ConfigurationError`` when `worldflux_version` is older than ``min_worldflux_version``."""
        if self.min_worldflux_version is None:
            return
        if _release(worldflux_version) < _release(self.min_worldflux_version):
            raise ConfigurationError(
                f"Plugin '{self.name}' needs worldflux >= {self.min_worldflux_version}, this is {worldflux_version}"
            )


def _load_entry_point(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"Cannot import plugin entry point '{target}': {exc}") from exc
    if not attribute:
        return module
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise ConfigurationError(f"Plugin entry point '{target}': module has no attribute '{attribute}'") from exc


def _check_models(manifest: PluginManifest) -> None:
    from .registry import WorldModelRegistry

    registered = WorldModelRegistry.list_models()
    missing = [t for t in manifest.model_types if t not in registered]
    if missing:
        raise ConfigurationError(
            f"Plugin '{manifest.name}' declares model types {missing} that are not registered after loading it "
            f"(registered: {sorted(registered)})"
        )


def register_plugin(manifest: PluginManifest, *, load: bool = True, replace: bool = False) -> PluginManifest:
    """Register `manifest` (importing/calling its ``entry_point`` first when `load`); returns it.

    Raises:
        ConfigurationError: not a ``PluginManifest``; another manifest under the same name (unless
            `replace`); an incompatible version; a failing entry point; declared model types missing.
    """
    import worldflux

    if not isinstance(manifest, PluginManifest):
        raise ConfigurationError(f"register_plugin expects a PluginManifest, got {type(manifest).__name__}")
    existing = _PLUGINS.get(manifest.name)
    if existing is not None and existing != manifest and not replace:
        raise ConfigurationError(
            f"Plugin '{manifest.name}' is already registered (version {existing.version}); pass replace=True"
        )
    manifest.check_compatible(worldflux.__version__)
    if load and manifest.entry_point:
        target = _load_entry_point(manifest.entry_point)
        if callable(target) and not isinstance(target, type(importlib)):
            target()
    if load:
        _check_models(manifest)
    _PLUGINS[manifest.name] = manifest
    return manifest


def discover_plugins(group: str = ENTRY_POINT_GROUP) -> list[PluginManifest]:
    """Load and register every plugin of the entry-point `group` of the installed distributions."""
    found = []
    for entry in metadata.entry_points(group=group):
        try:
            obj = entry.load()
        except Exception as exc:  # noqa: BLE001 - report which plugin failed and why
            raise ConfigurationError(f"Cannot load plugin entry point '{entry.name}' ({entry.value}): {exc}") from exc
        manifest = obj() if callable(obj) and not isinstance(obj, PluginManifest) else obj
        if not isinstance(manifest, PluginManifest):
            raise ConfigurationError(
                f"Plugin entry point '{entry.name}' ({entry.value}) must give a PluginManifest, got "
                f"{type(manifest).__name__}"
            )
        found.append(register_plugin(manifest, load=False, replace=True))
        _check_models(manifest)
    return found


def plugin_registry() -> dict[str, PluginManifest]:
    """Registered plugins by name (a copy)."""
    return dict(_PLUGINS)
