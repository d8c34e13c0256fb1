"""User-facing model configurations: the JAX core's dataclasses plus file, override and schema helpers.

``WorldModelConfig``, ``DreamerV3Config`` and ``TDMPC2Config`` here SUBCLASS the classes of
:mod:`worldflux_jax.config`, so the JAX core accepts them unchanged (same fields, defaults, presets,
normalisation and validation, reference §2.1–2.3). This module adds what the documented API offers on top:

* ``with_overrides(**kw)`` / ``merge(base, *overlays)``: new configs with some fields replaced;
* ``save(path)`` / ``load(path)`` / ``from_yaml(path)``: JSON and YAML files;
* ``json_schema()``: a JSON Schema (draft 2020-12) generated from the dataclass fields;
* a concise ``repr``: ``DreamerV3Config(model='ci', obs_shape=(3, 64, 64), action_dim=6, hidden_dim=32)``.

The experimental families (``JEPABaseConfig``, ``VJEPA2Config``, ``TokenWorldModelConfig``,
``DiffusionWorldModelConfig``) subclass :mod:`worldflux_jax.experimental_config` the same way. The
``*SkeletonConfig`` classes (placeholders in the reference) are configuration objects only: they hold
their fields, and ``create_world_model`` says which families it can build instead.

``CONFIG_REGISTRY`` maps a ``model_type`` (as written in ``config.json``) to its config class; it is what
``WorldModelConfig.load`` and the factory use to pick the class.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import types
import typing
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

import numpy as np

from worldflux_jax import config as _core
from worldflux_jax import experimental_config as _xc
from worldflux_jax.config import DynamicsType, LatentType
from worldflux_jax.errors import ConfigurationError

from .safe_io import not_found_error, read_json, write_json_atomic

__all__ = [
    "CONFIG_REGISTRY",
    "DiTSkeletonConfig",
    "DiffusionWorldModelConfig",
    "DreamerV3Config",
    "DynamicsType",
    "GANSkeletonConfig",
    "JEPABaseConfig",
    "LatentType",
    "PhysicsSkeletonConfig",
    "Renderer3DSkeletonConfig",
    "SSMSkeletonConfig",
    "TDMPC2Config",
    "TokenWorldModelConfig",
    "VJEPA2Config",
    "WorldModelConfig",
    "config_from_id",
    "did_you_mean",
    "get_config_class",
    "register_config",
]

C = TypeVar("C", bound="WorldModelConfig")

CONFIG_FILE_NAME = "config.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Fields whose accepted values are a fixed set (used in the JSON schema; validation lives in the classes).
_FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "action_type": ("none", "continuous", "discrete", "token", "latent", "text", "hybrid"),
    "dtype": ("float32", "float16", "bfloat16"),
    "encoder_type": ("cnn", "mlp"),
    "decoder_type": ("cnn", "mlp"),
    "training_tier": ("compatibility", "reference", "proof"),
    "objective": ("reference", "symlog"),
    "prediction_target": _xc.PREDICTION_TARGETS,
    "action_conditioner": _xc.ACTION_CONDITIONERS,
}


# ---------------------------------------------------------------------------------------------------
# Field types: one small description per dataclass field, shared by with_overrides and json_schema.
# ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _FieldType:
    kind: str  # "bool" | "int" | "float" | "str" | "enum" | "tuple" | "dict" | "any"
    optional: bool = False
    enum: type[Enum] | None = None
    item: _FieldType | None = None  # element type of a tuple, value type of a dict

    def describe(self) -> str:
        names = {
            "bool": "a bool",
            "int": "an int",
            "float": "a number",
            "str": "a str",
            "tuple": "a tuple or list",
            "dict": "a dict",
            "any": "any value",
        }
        if self.kind == "enum" and self.enum is not None:
            text = f"one of {[m.value for m in self.enum]}"
        else:
            text = names[self.kind]
        return f"{text} or None" if self.optional else text


def _field_type(tp: Any) -> _FieldType:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = _field_type(rest[0]) if len(rest) == 1 else _FieldType("any")
        return dataclasses.replace(inner, optional=True)
    if tp is bool:
        return _FieldType("bool")
    if tp is int:
        return _FieldType("int")
    if tp is float:
        return _FieldType("float")
    if isinstance(tp, type) and issubclass(tp, Enum):
        return _FieldType("enum", enum=tp)
    if tp is str:
        return _FieldType("str")
    if tp is tuple or origin is tuple:
        return _FieldType("tuple", item=_field_type(args[0]) if args else _FieldType("any"))
    if tp is dict or origin is dict:
        return _FieldType("dict", item=_field_type(args[1]) if len(args) == 2 else _FieldType("any"))
    return _FieldType("any")


@functools.cache
def _field_types(cls: type) -> dict[str, _FieldType]:
    hints = typing.get_type_hints(cls)
    return {f.name: _field_type(hints.get(f.name, Any)) for f in dataclasses.fields(cls)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(name: str, value: Any, ftype: _FieldType, config_name: str | None) -> Any:
    """Return `value` converted for field `name`, or raise a ConfigurationError naming the expected type."""

    def wrong() -> ConfigurationError:
        return ConfigurationError(
            f"Config field '{name}' expects {ftype.describe()}, got {type(value).__name__} {value!r}",
            config_name=config_name,
        )

    kind = ftype.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong()
        return value
    if kind == "int":
        if isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong()
        return value
    if kind == "float":
        if not _is_number(value):
            raise wrong()
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise wrong()
        return value
    if kind == "enum":
        assert ftype.enum is not None
        if isinstance(value, ftype.enum):
            return value.value
        if not isinstance(value, str) or value not in {m.value for m in ftype.enum}:
            raise wrong()
        return value
    if kind == "tuple":
        if not isinstance(value, (tuple, list)):
            raise wrong()
        if ftype.item is not None and ftype.item.kind in ("int", "float"):
            return tuple(_check_value(f"{name}[{i}]", v, ftype.item, config_name) for i, v in enumerate(value))
        return tuple(value)
    if kind == "dict":
        if not isinstance(value, Mapping):
            raise wrong()
        return dict(value)
    return value


# Fields that are discount factors: (0, 1].
_DISCOUNT_FIELDS = ("gamma", "discount")


def _field_value_ok(value: Any, ftype: _FieldType) -> bool:
    """True when `value` has the field's declared type (ints for int fields, finite numbers for float fields)."""
    if value is None:
        return ftype.optional or ftype.kind == "any"
    kind = ftype.kind
    if kind == "bool":
        return isinstance(value, bool | np.bool_)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)
    if kind == "float":
        return _is_real(value) and math.isfinite(float(value))
    if kind == "str":
        return isinstance(value, str)
    if kind == "enum":
        assert ftype.enum is not None
        return isinstance(value, ftype.enum) or value in {m.value for m in ftype.enum}
    if kind == "tuple":
        if not isinstance(value, tuple | list):
            return False
        item = ftype.item
        return item is None or item.kind not in ("int", "float") or all(_field_value_ok(v, item) for v in value)
    if kind == "dict":
        if not isinstance(value, Mapping):
            return False
        item = ftype.item
        values = value.values()
        return item is None or item.kind not in ("int", "float") or all(_field_value_ok(v, item) for v in values)
    return True


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _check_field_types(config: Any) -> None:
    """Raise ConfigurationError naming the first field whose value has the wrong type (a float layer size, a
    NaN/inf float such as a NaN learning rate or free nats, a str for a number, ...) or a discount outside (0, 1]."""
    name = getattr(config, "model_name", None)
    name = name if isinstance(name, str) else None
    for field_name, ftype in _field_types(type(config)).items():
        value = getattr(config, field_name)
        if not _field_value_ok(value, ftype):
            raise ConfigurationError(
                f"Config field '{field_name}' expects {ftype.describe()}"
                f"{' (finite)' if ftype.kind == 'float' or (ftype.item and ftype.item.kind == 'float') else ''}, "
                f"got {type(value).__name__} {value!r}",
                config_name=name,
            )
        if field_name in _DISCOUNT_FIELDS and value is not None and not 0.0 < float(value) <= 1.0:
            raise ConfigurationError(f"{field_name} must be in (0, 1], got {value!r}", config_name=name)


def _deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _json_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    return value


def _schema_for(ftype: _FieldType) -> dict[str, Any]:
    simple = {"bool": "boolean", "int": "integer", "float": "number", "str": "string"}
    if ftype.kind in simple:
        schema: dict[str, Any] = {"type": simple[ftype.kind]}
    elif ftype.kind == "enum" and ftype.enum is not None:
        schema = {"type": "string", "enum": [m.value for m in ftype.enum]}
    elif ftype.kind == "tuple":
        schema = {"type": "array"}
        if ftype.item is not None and ftype.item.kind != "any":
            schema["items"] = _schema_for(ftype.item)
    elif ftype.kind == "dict":
        schema = {"type": "object"}
        if ftype.item is not None and ftype.item.kind != "any":
            schema["additionalProperties"] = _schema_for(ftype.item)
    else:
        schema = {}
    if ftype.optional:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def _infer_modality_kind(shape: tuple[int, ...]) -> str:
    return {1: "vector", 3: "image", 4: "video"}.get(len(shape), "other")


# ---------------------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------------------
class WorldModelConfig(_core.WorldModelConfig):
    """Base configuration shared by every world model (fields and defaults of reference §2.1).

    A dataclass: ``WorldModelConfig(obs_shape=(4,), action_dim=2)``. Construction normalises the interface
    specs (``observation_modalities``, ``action_spec``) and validates every field, raising
    :class:`~worldflux.core.exceptions.ConfigurationError` with the field name and the accepted values.

    Example:
        >>> config = DreamerV3Config.from_size("ci", obs_shape=(3, 64, 64), action_dim=4)
        >>> config.save("my_model/config.json")
        >>> WorldModelConfig.load("my_model")  # the DreamerV3Config back
        DreamerV3Config(model='ci', obs_shape=(3, 64, 64), action_dim=4, hidden_dim=32)
    """

    def __post_init__(self) -> None:
        _check_field_types(self)  # before the core normalises (int() would truncate a float layer size)
        super().__post_init__()

    # ---- overrides -------------------------------------------------------------------------------
    def with_overrides(self: C, **overrides: Any) -> C:
        """Return a new config of the same class with `overrides` applied.

        * An unknown key raises ``ConfigurationError("Unknown config field: ...")``.
        * ``None`` values are ignored (the current value is kept).
        * Values must fit the field's type: a bool for bool fields, a number for int/float fields (an int
          field takes only whole numbers), a str for str fields (enum fields take the enum or its value),
          a tuple or list for tuple fields, a dict for dict fields.
        * Dict fields are deep-merged into the current value (``loss_scales={"reward": 2.0}`` changes only
          that entry).
        * Derived values follow: a new ``obs_shape``/``dtype`` updates the ``"obs"`` observation modality, a
          new ``action_dim``/``action_type`` updates ``action_spec``, and a DreamerV3 config that still uses
          the CNN encoder/decoder switches to the MLP ones when ``obs_shape`` becomes 1-D (as
          ``from_size`` does for vector observations).
        """
        cls = type(self)
        ftypes = _field_types(cls)
        given: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in ftypes:
                raise ConfigurationError(
                    f"Unknown config field: '{key}' for {cls.__name__}.{_suggestion(key, ftypes)}",
                    config_name=self.model_name,
                )
            if value is None:
                continue
            given[key] = _check_value(key, value, ftypes[key], self.model_name)
        data = self.to_dict()
        self._release_derived(data, given)
        for key, value in given.items():
            if isinstance(value, Mapping) and isinstance(data.get(key), Mapping):
                data[key] = _deep_merge(data[key], _json_value(value))
            else:
                data[key] = value
        return cls.from_dict(data)

    def _release_derived(self, data: dict[str, Any], given: Mapping[str, Any]) -> None:
        """Drop from `data` the values derived from fields that `given` changes, so they are re-derived."""
        if "observation_modalities" not in given and ("obs_shape" in given or "dtype" in given):
            modalities = dict(data.get("observation_modalities") or {})
            if "obs" in modalities:
                obs = dict(modalities["obs"])
                if "obs_shape" in given:
                    obs.pop("shape", None)
                    if obs.get("kind") == _infer_modality_kind(tuple(self.obs_shape)):
                        obs.pop("kind")
                if "dtype" in given and obs.get("dtype") == self.dtype:
                    obs.pop("dtype")
                modalities["obs"] = obs
                data["observation_modalities"] = modalities
        if "action_spec" not in given and ("action_dim" in given or "action_type" in given):
            spec = dict(data.get("action_spec") or {})
            derived: dict[str, Any] = {
                "kind": self.action_type,
                "dim": self.action_dim,
                "discrete": self.action_type == "discrete",
            }
            if self.action_type == "discrete":
                derived["num_actions"] = self.action_dim
            for key, value in derived.items():
                if key in spec and spec[key] == value:
                    del spec[key]
            data["action_spec"] = spec
        if "obs_shape" in given and len(given["obs_shape"]) == 1:
            for name in ("encoder_type", "decoder_type"):
                if name not in given and data.get(name) == "cnn":
                    del data[name]

    @classmethod
    def merge(cls: type[C], base: Any, *overlays: Any) -> C:
        """Merge `overlays` into `base`, left to right, and return the result.

        `base` is a config instance or a dict in the ``to_dict()`` layout (a dict's ``model_type`` picks the
        registered class when called on ``WorldModelConfig``). Each overlay is a dict of overrides or a
        config instance (all of whose fields apply); ``None`` overlays are skipped. The same rules as
        :meth:`with_overrides` apply (unknown fields raise, ``None`` values are ignored, dicts deep-merge).
        """
        if isinstance(base, WorldModelConfig):
            config: WorldModelConfig = base
        elif isinstance(base, (_core.WorldModelConfig, Mapping)):
            data = base.to_dict() if isinstance(base, _core.WorldModelConfig) else dict(base)
            config = _class_for(cls, data, "merge base").from_dict(data)
        else:
            raise ConfigurationError(
                f"merge base must be a config or a dict, got {type(base).__name__}", config_name=cls.__name__
            )
        if not isinstance(config, cls):
            raise ConfigurationError(
                f"{cls.__name__}.merge needs a {cls.__name__} base, got {type(config).__name__}",
                config_name=config.model_name,
            )
        for overlay in overlays:
            if overlay is None:
                continue
            if isinstance(overlay, _core.WorldModelConfig):
                values = overlay.to_dict()
            elif isinstance(overlay, Mapping):
                values = dict(overlay)
            else:
                raise ConfigurationError(
                    f"merge overlays must be dicts or configs, got {type(overlay).__name__}",
                    config_name=config.model_name,
                )
            config = config.with_overrides(**values)
        return config

    # ---- files -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``to_dict()`` as JSON (indent 2) to the FILE `path`, creating parent directories.

        If `path` is an existing directory, the file is ``path/config.json`` (the layout ``load`` reads).
        Returns the path of the written file.
        """
        target = Path(path)
        if target.is_dir():
            target = target / CONFIG_FILE_NAME
        return write_json_atomic(target, self.to_dict(), indent=2)

    @classmethod
    def load(cls: type[C], path: str | os.PathLike[str]) -> C:
        """Load a saved config: `path` is a directory holding ``config.json`` (a saved model) or a JSON file.

        Returns the class registered for the file's ``model_type`` (so ``WorldModelConfig.load(d)`` gives a
        ``DreamerV3Config`` for a DreamerV3 directory). Calling it on a subclass checks that the file holds
        that family. A ``"type:size"`` id (``"dreamer:ci"``) that is not an existing path gives the preset.

        Raises:
            FileNotFoundError: nothing at `path`, or a directory without ``config.json``.
            ConfigurationError: invalid JSON, no ``model_type``, the wrong family, or invalid values.
        """
        source = Path(path)
        if not source.exists():
            text = os.fspath(path)
            if ":" in text and not os.path.isabs(text):
                config = config_from_id(text)
                if not isinstance(config, cls):
                    raise ConfigurationError(
                        f"'{text}' is a {type(config).__name__}, not a {cls.__name__}", config_name=text
                    )
                return config
            raise not_found_error(ConfigurationError)(
                f"Config path not found: {text} (expected a directory containing {CONFIG_FILE_NAME}, "
                "a .json file, or a 'type:size' id such as 'dreamerv3:size12m')"
            )
        config_path = source / CONFIG_FILE_NAME if source.is_dir() else source
        if not config_path.exists():
            raise not_found_error(ConfigurationError)(f"Config file not found: {config_path}")
        data = read_json(config_path, ConfigurationError, "config file")
        if not isinstance(data, dict):
            raise ConfigurationError(
                f"Config file must hold a JSON object, got {type(data).__name__}", config_name=str(config_path)
            )
        if "model_type" not in data:
            raise ConfigurationError("Config missing required field: model_type", config_name=str(config_path))
        try:
            return _class_for(cls, data, str(config_path)).from_dict(data)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
            raise ConfigurationError(f"Invalid config file: {exc}", config_name=str(config_path)) from exc

    @classmethod
    def from_yaml(cls: type[C], path: str | os.PathLike[str]) -> C:
        """Build a config from a YAML file holding a mapping of fields (``to_dict()`` layout).

        A ``model_type`` key picks the registered class when called on ``WorldModelConfig``; without one,
        the class it is called on is used. Needs PyYAML (``pip install pyyaml``).
        """
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML is installed in the dev environment
            raise ImportError(
                f"{cls.__name__}.from_yaml requires PyYAML; install it with `pip install pyyaml`"
            ) from exc
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigurationError(
                f"YAML config must hold a mapping of fields, got {type(data).__name__}", config_name=os.fspath(path)
            )
        return _class_for(cls, data, os.fspath(path)).from_dict(data)

    # ---- schema and display ----------------------------------------------------------------------
    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of this class's ``to_dict()`` output, generated from its fields.

        Each property carries its type (enum fields list their values, fields with a fixed set of accepted
        strings carry ``enum``) and its class default; no property is required (every field has a default)
        and unknown properties are not allowed.
        """
        properties: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            schema = _schema_for(_field_types(cls)[field.name])
            if field.name in _FIELD_CHOICES and schema.get("type") == "string":
                schema["enum"] = list(_FIELD_CHOICES[field.name])
            if field.default is not dataclasses.MISSING:
                schema["default"] = _json_value(field.default)
            elif field.default_factory is not dataclasses.MISSING:
                schema["default"] = _json_value(field.default_factory())
            properties[field.name] = schema
        doc = (cls.__doc__ or "").strip().splitlines()
        return {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": f"urn:worldflux:config:{cls.__name__}",
            "title": cls.__name__,
            "description": doc[0] if doc else cls.__name__,
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model_name!r}, obs_shape={self.obs_shape}, "
            f"action_dim={self.action_dim}, hidden_dim={self.hidden_dim})"
        )


def levenshtein(a: str, b: str) -> int:
    """Edit distance between `a` and `b` (insertions, deletions and substitutions cost 1)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def did_you_mean(key: str, candidates: Any, max_distance: int = 2) -> str:
    """``" Did you mean: a, b?"`` for the `candidates` within `max_distance` edits of `key` (sorted), else ``""``."""
    close = sorted(c for c in candidates if levenshtein(key, c) <= max_distance)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def _suggestion(key: str, candidates: Any) -> str:
    return did_you_mean(key, candidates)


def _default_model_type(cls: type) -> str:
    return str(cls.__dataclass_fields__["model_type"].default)  # type: ignore[attr-defined]


def _class_for(cls: type[C], data: Mapping[str, Any], source: str) -> type[C]:
    """The config class for `data` when read through `cls` (dispatch on ``model_type``)."""
    model_type = data.get("model_type")
    if cls is WorldModelConfig:
        return CONFIG_REGISTRY.get(str(model_type), WorldModelConfig)  # type: ignore[return-value]
    if model_type is None or model_type == _default_model_type(cls):
        return cls
    registered = CONFIG_REGISTRY.get(str(model_type))
    if registered is not None and issubclass(registered, cls):
        return registered  # type: ignore[return-value]
    raise ConfigurationError(
        f"{source} holds a config with model_type '{model_type}', not a {cls.__name__} "
        f"(model_type '{_default_model_type(cls)}'); load it with WorldModelConfig.load",
        config_name=source,
    )


# ---------------------------------------------------------------------------------------------------
# DreamerV3 and TD-MPC2: the core classes with the methods above.
# ---------------------------------------------------------------------------------------------------
class DreamerV3Config(WorldModelConfig, _core.DreamerV3Config):
    """DreamerV3 configuration (reference §2.2): RSSM with categorical latents.

    Presets via ``DreamerV3Config.from_size(size, **overrides)``: ``ci``, ``size12m``, ``size25m``,
    ``size50m``, ``size100m``, ``size200m``, ``official_xl`` (the names are nominal, not parameter counts).
    A 1-D ``obs_shape`` selects the MLP encoder/decoder unless ``encoder_type``/``decoder_type`` are given.
    ``kl_balance`` (None by default) re-splits the total KL weight between the dynamics and representation
    terms; see ``docs/decisions.md``.

    Example:
        >>> DreamerV3Config.from_size("size50m", obs_shape=(3, 64, 64), action_dim=18)
        DreamerV3Config(model='size50m', obs_shape=(3, 64, 64), action_dim=18, hidden_dim=640)
    """


class TDMPC2Config(WorldModelConfig, _core.TDMPC2Config):
    """TD-MPC2 configuration (reference §2.3): SimNorm latent, MLP dynamics, Q ensemble.

    Presets via ``TDMPC2Config.from_size(size, **overrides)``: ``ci``, ``5m``, ``proof_5m``, ``5m_legacy``,
    ``19m``, ``48m``, ``317m`` (nominal names).

    Example:
        >>> TDMPC2Config.from_size("19m", obs_shape=(39,), action_dim=6)
        TDMPC2Config(model='19m', obs_shape=(39,), action_dim=6, hidden_dim=512)
    """


# ---------------------------------------------------------------------------------------------------
# Experimental families (reference §2.4): the core classes of worldflux_jax.experimental_config.
# ---------------------------------------------------------------------------------------------------
class JEPABaseConfig(WorldModelConfig, _xc.JEPABaseConfig):
    """JEPA (joint-embedding predictive architecture) configuration; experimental.

    Presets via ``JEPABaseConfig.from_size(size, **overrides)``: ``ci`` (tiny widths) and ``base`` (the
    reference defaults: encoder/predictor/projection dims 512, 6 layers, 8 heads).

    Example:
        >>> JEPABaseConfig.from_size("ci", obs_shape=(8,), action_dim=2)
        JEPABaseConfig(model='ci', obs_shape=(8,), action_dim=2, hidden_dim=32)
    """


class VJEPA2Config(JEPABaseConfig, _xc.VJEPA2Config):
    """V-JEPA 2 (video JEPA) configuration; experimental.

    Presets: ``ci`` and ``tiny`` (small widths for tests) and ``base`` (the class defaults; ``mask_ratio``
    0.5, ``temporal_window`` 8).
    """


class TokenWorldModelConfig(WorldModelConfig, _xc.TokenWorldModelConfig):
    """Discrete-token (causal transformer) world model configuration; experimental.

    Presets: ``ci`` (tiny) and ``base`` (vocab_size 1024, token_dim 256, 4 layers, 4 heads, dropout 0.1).
    """


class DiffusionWorldModelConfig(WorldModelConfig, _xc.DiffusionWorldModelConfig):
    """Diffusion world model configuration; experimental.

    Presets: ``ci`` (hidden_dim 64) and ``base`` (diffusion_steps 4, beta 1e-4..0.02, prediction_target
    "noise", action_conditioner "none").
    """


# ---------------------------------------------------------------------------------------------------
# Skeleton families: placeholders in the reference; configuration objects only (see docs/decisions.md).
# ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(repr=False)
class DiTSkeletonConfig(WorldModelConfig):
    """DiT (diffusion transformer) skeleton configuration; internal, config only here."""

    model_type: str = "dit"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"base": {}}


@dataclasses.dataclass(repr=False)
class SSMSkeletonConfig(WorldModelConfig):
    """State-space-model skeleton configuration; internal, config only here."""

    model_type: str = "ssm"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"base": {}}


@dataclasses.dataclass(repr=False)
class Renderer3DSkeletonConfig(WorldModelConfig):
    """3-D renderer skeleton configuration; internal, config only here."""

    model_type: str = "renderer3d"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"base": {}}


@dataclasses.dataclass(repr=False)
class PhysicsSkeletonConfig(WorldModelConfig):
    """Physics-simulator skeleton configuration; internal, config only here."""

    model_type: str = "physics"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"base": {}}


@dataclasses.dataclass(repr=False)
class GANSkeletonConfig(WorldModelConfig):
    """GAN skeleton configuration; internal, config only here."""

    model_type: str = "gan"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"base": {}}


# ---------------------------------------------------------------------------------------------------
# Registry: model_type -> config class.
# ---------------------------------------------------------------------------------------------------
CONFIG_REGISTRY: dict[str, type[WorldModelConfig]] = {
    "dreamer": DreamerV3Config,
    "tdmpc2": TDMPC2Config,
    "jepa": JEPABaseConfig,
    "vjepa2": VJEPA2Config,
    "token": TokenWorldModelConfig,
    "diffusion": DiffusionWorldModelConfig,
    "dit": DiTSkeletonConfig,
    "ssm": SSMSkeletonConfig,
    "renderer3d": Renderer3DSkeletonConfig,
    "physics": PhysicsSkeletonConfig,
    "gan": GANSkeletonConfig,
}

# Family names accepted before the ":" of a model id in addition to the registry keys.
FAMILY_ALIASES: dict[str, str] = {"dreamerv3": "dreamer", "tdmpc": "tdmpc2"}


def register_config(model_type: str, config_class: type[WorldModelConfig]) -> None:
    """Register `config_class` as the config of `model_type` (used by ``load`` and the factory)."""
    if not (isinstance(config_class, type) and issubclass(config_class, WorldModelConfig)):
        raise ConfigurationError(f"config_class must be a WorldModelConfig subclass, got {config_class!r}")
    CONFIG_REGISTRY[model_type] = config_class


# Model-id aliases live with the config registry (the factory and ``WorldModel.from_pretrained`` both resolve
# them; keeping them here means neither imports the other).
MODEL_ALIASES: dict[str, str] = {
    "dreamer": "dreamerv3:size12m",
    "dreamer-ci": "dreamer:ci",
    "dreamerv3": "dreamerv3:size12m",
    "dreamer-small": "dreamerv3:size12m",
    "dreamer-medium": "dreamerv3:size50m",
    "dreamer-large": "dreamerv3:size200m",
    "dreamerv3:official": "dreamerv3:official_xl",
    "tdmpc": "tdmpc2:5m",
    "tdmpc2-ci": "tdmpc2:ci",
    "tdmpc2": "tdmpc2:5m",
    "tdmpc-small": "tdmpc2:5m",
    "tdmpc-proof": "tdmpc2:proof_5m",
    "tdmpc2:proof": "tdmpc2:proof_5m",
    "tdmpc-legacy": "tdmpc2:5m_legacy",
    "tdmpc-medium": "tdmpc2:48m",
    "tdmpc-large": "tdmpc2:317m",
    "jepa": "jepa:base",
    "vjepa2": "vjepa2:base",
    "v-jepa2": "vjepa2:base",
    "token": "token:base",
    "diffusion": "diffusion:base",
    "dit": "dit:base",
    "ssm": "ssm:base",
    "renderer3d": "renderer3d:base",
    "physics": "physics:base",
    "gan": "gan:base",
}


def register_alias(name: str, target: str) -> None:
    """Make `name` (case-insensitive) an alias of the model id `target`."""
    MODEL_ALIASES[name.lower()] = target


def resolve_alias(name: str) -> str:
    """The model id an alias stands for (case-insensitive), or `name` itself when it is not an alias."""
    return MODEL_ALIASES.get(name.lower(), name)


def get_config_class(family: str) -> type[WorldModelConfig]:
    """The config class of a family name (case-insensitive; ``dreamerv3`` -> ``dreamer``, ``tdmpc`` -> ``tdmpc2``).

    Raises:
        ValueError: ``"Unknown model type: foo. Available: [...]"``.
    """
    key = family.lower()
    key = FAMILY_ALIASES.get(key, key)
    if key not in CONFIG_REGISTRY:
        raise ValueError(f"Unknown model type: {key}. Available: {list(CONFIG_REGISTRY)}")
    return CONFIG_REGISTRY[key]


def config_from_id(model_id: str, **overrides: Any) -> WorldModelConfig:
    """Config of a ``"type:size"`` id (``"dreamerv3:size12m"``): ``Cls.from_size(size, **overrides)``.

    Raises:
        ValueError: no ``":"`` in the id, an unknown family, or an unknown size
            (``"Unknown size: X. Available: [...]"``).
    """
    if ":" not in model_id:
        raise ValueError(f"Invalid config identifier: {model_id}. Expected 'type:size' like 'dreamerv3:size12m'")
    family, size = model_id.split(":", 1)
    return get_config_class(family).from_size(size, **overrides)
