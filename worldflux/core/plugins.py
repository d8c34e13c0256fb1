"""Plugin manifests and entry-point plugins (reference ``worldflux.core.registry.PluginManifest``; experimental).

A plugin is an installed distribution with entry points in the ``worldflux.models`` and/or
``worldflux.components`` groups. ``WorldModelRegistry.load_entrypoint_plugins(force=False)`` loads each entry
point once per process: a callable is called (it registers its models / aliases / catalog entries as a side
effect) and may return a ``PluginManifest`` (or a dict of its fields); an entry point without one is recorded
as ``PluginManifest(capabilities=("legacy-no-manifest",))``. Every manifest is validated on registration
(``WorldModelRegistry.register_plugin_manifest(name, manifest)``):

* ``experimental`` must be True (the plugin API is experimental-only) and ``plugin_api_version`` non-empty;
* the WorldFlux API version implemented here (``REFERENCE_API_VERSION``, 0.1.1) must satisfy
  ``worldflux_version_range`` (PEP 440-style clauses joined by
  ``","``: ``>=``, ``<=``, ``>``, ``<``, ``==`` (with ``.*``), ``!=``, ``~=``; release numbers only), else
  ``ConfigurationError("[EXPERIMENTAL_PLUGIN_INCOMPATIBLE] ...")``.

An entry point that fails to import or run is skipped with a ``RuntimeWarning`` naming it and its group.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any

from .exceptions import ConfigurationError

__all__ = [
    "ENTRY_POINT_GROUPS",
    "REFERENCE_API_VERSION",
    "PluginManifest",
    "runtime_version_matches",
    "version_matches",
]

ENTRY_POINT_GROUPS = ("worldflux.models", "worldflux.components")
DEFAULT_VERSION_RANGE = ">=0.1.0,<0.2.0"
# Plugins target the WorldFlux API; this package implements the reference's 0.1.1 API, whatever the version of
# the worldflux-jax distribution itself (see docs/decisions.md).
REFERENCE_API_VERSION = "0.1.1"
_CLAUSE = re.compile(r"^\s*(===|==|!=|~=|>=|<=|>|<)\s*([0-9][0-9a-zA-Z.*+!-]*)\s*$")


@dataclass(frozen=True)
class PluginManifest:
    """Plugin compatibility manifest (plugin APIs are experimental in the current public policy)."""

    plugin_api_version: str = "0.x-experimental"
    worldflux_version_range: str = DEFAULT_VERSION_RANGE
    capabilities: tuple[str, ...] = ()
    experimental: bool = True


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() != len(piece):  # "1rc1", "0dev0": the release part ends here
            break
    return tuple(parts)


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)), b + (0,) * (n - len(b))


def version_matches(specifier: str, version: str) -> bool:
    """Whether release `version` satisfies every clause of `specifier` (see the module docstring).

    Raises:
        ConfigurationError: a clause that is not ``<op><version>``.
    """
    current = _release(version)
    for clause in str(specifier).split(","):
        if not clause.strip():
            continue
        match = _CLAUSE.match(clause)
        if match is None:
            raise ConfigurationError(f"Invalid plugin worldflux_version_range: {specifier!r}")
        op, text = match.groups()
        if text.endswith(".*") and op in ("==", "!="):
            prefix = _release(text[:-2])
            equal = current[: len(prefix)] == prefix
            ok = equal if op == "==" else not equal
        else:
            left, right = _padded(current, _release(text))
            if op == "~=":
                prefix = _release(text)[:-1] or _release(text)
                ok = left >= right and current[: len(prefix)] == prefix
            else:
                ok = {
                    ">=": left >= right, "<=": left <= right, ">": left > right, "<": left < right,
                    "==": left == right, "===": left == right, "!=": left != right,
                }[op]
        if not ok:
            return False
    return True


def normalize_manifest(manifest: PluginManifest | Mapping[str, Any]) -> PluginManifest:
    """A ``PluginManifest`` from a manifest or a dict of its fields."""
    if isinstance(manifest, PluginManifest):
        return manifest
    if not isinstance(manifest, Mapping):
        raise ConfigurationError(f"Plugin manifest must be PluginManifest or dict, got {type(manifest)!r}")
    capabilities = manifest.get("capabilities", ())
    if not isinstance(capabilities, list | tuple):
        raise ConfigurationError("Plugin manifest 'capabilities' must be list/tuple of strings")
    return PluginManifest(
        plugin_api_version=str(manifest.get("plugin_api_version", "0.x-experimental")),
        worldflux_version_range=str(manifest.get("worldflux_version_range", DEFAULT_VERSION_RANGE)),
        capabilities=tuple(str(item) for item in capabilities),
        experimental=bool(manifest.get("experimental", True)),
    )


def runtime_version_matches(specifier: str) -> bool:
    """Whether the WorldFlux API version this package implements (``REFERENCE_API_VERSION``) satisfies
    `specifier`."""
    return version_matches(specifier, REFERENCE_API_VERSION)


def validate_manifest(plugin_name: str, manifest: PluginManifest) -> None:
    """Raise ``ConfigurationError`` for a manifest this runtime cannot accept."""
    if not manifest.experimental:
        raise ConfigurationError(
            f"Plugin '{plugin_name}' declares experimental=false, but plugin API is experimental-only."
        )
    if not manifest.plugin_api_version.strip():
        raise ConfigurationError(f"Plugin '{plugin_name}' must declare non-empty plugin_api_version.")
    if not runtime_version_matches(manifest.worldflux_version_range):
        raise ConfigurationError(
            f"[EXPERIMENTAL_PLUGIN_INCOMPATIBLE] Plugin '{plugin_name}' requires "
            f"worldflux{manifest.worldflux_version_range!r}, incompatible with current runtime "
            f"(WorldFlux API {REFERENCE_API_VERSION})."
        )


def iter_entry_points(group: str) -> list[Any]:
    """The installed entry points of `group`."""
    return list(importlib_metadata.entry_points().select(group=group))
