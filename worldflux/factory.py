"""The simple API: ``create_world_model``, ``get_config``, ``list_models``, ``get_model_info`` and a builder.

Model ids are ``"type:size"`` (``"dreamerv3:size12m"``, ``"tdmpc2:5m"``), an alias from ``MODEL_ALIASES``
(``"dreamer"``, ``"tdmpc2-ci"``; case-insensitive), or a local directory written by ``save_pretrained``.

Example:
    >>> from worldflux import create_world_model
    >>> model = create_world_model("dreamerv3:size12m", obs_shape=(3, 64, 64), action_dim=4, hidden_dim=320)

The config comes from ``Cls.from_size(size, **overrides)`` of the family's config class; the model from
:func:`worldflux.models.registry.build_model`, where the world-model classes register themselves.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from worldflux.core.components import COMPONENT_SLOTS, apply_component_overrides
from worldflux.core.config import (
    CONFIG_REGISTRY,
    FAMILY_ALIASES,
    MODEL_ALIASES,
    WorldModelConfig,
    did_you_mean,
    get_config_class,
    register_alias,
    resolve_alias,
)
from worldflux.models import registry
from worldflux_jax.errors import ConfigurationError

if TYPE_CHECKING:
    from worldflux.core.model import WorldModel

__all__ = [
    "COMPONENT_SLOTS",
    "MODEL_ALIASES",
    "MODEL_CATALOG",
    "WorldModelBuilder",
    "create_world_model",
    "get_config",
    "get_model_info",
    "list_models",
    "register_alias",
    "register_catalog_entry",
    "resolve_alias",
]

SUPPORTED_API_VERSIONS = ("v0.2", "v3")

# Keyword arguments of Hugging Face hub loading; accepted and ignored (no hub access in worldflux-jax).
HUB_KWARGS = frozenset(
    {"revision", "token", "cache_dir", "local_files_only", "force_download", "allow_patterns", "ignore_patterns"}
)
# Keyword arguments the factory handles itself rather than checking them against the config fields.
INTERNAL_KWARGS = frozenset({"backend", "action_type"})

NATIVE_BACKEND = "native_jax"
# "native_torch" is the reference's name for its in-process backend; here it means the same native path.
NATIVE_BACKENDS = (NATIVE_BACKEND, "native_torch")
# Reference backends that run an official implementation in a subprocess (not provided here).
SUBPROCESS_BACKENDS = {
    "official_dreamerv3_jax_subprocess": "dreamerv3:official_xl",
    "worldflux_dreamerv3_jax_subprocess": "dreamerv3:official_xl",
    "official_tdmpc2_torch_subprocess": "tdmpc2:proof_5m",
}

_CONFIG_ONLY = " (configuration only in worldflux-jax: a placeholder family, see docs/decisions.md)"


def _entry(
    description: str, params: str, model_type: str, default_obs: str, maturity: str, parity_role: str, **extra: Any
) -> dict[str, Any]:
    return {
        "description": description,
        "params": params,
        "type": model_type,
        "default_obs": default_obs,
        "maturity": maturity,
        "parity_role": parity_role,
        **extra,
    }


def _normalize_catalog_entry(info: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of `info` with ``support_tier`` filled in when it is not given explicitly."""
    entry = dict(info)
    if not entry.get("support_tier"):
        maturity = entry.get("maturity")
        if entry.get("parity_role") == "proof_canonical":
            entry["support_tier"] = "advanced"
        elif maturity == "reference":
            entry["support_tier"] = "supported"
        elif maturity == "experimental":
            entry["support_tier"] = "experimental"
        else:
            entry["support_tier"] = "internal"
    return entry


_BUNDLED_CATALOG: dict[str, dict[str, Any]] = {
    "dreamer:ci": _entry(
        "DreamerV3 CI preset - tiny widths for tests and smoke runs", "~0.3M", "dreamer", "image", "reference",
        "ci_only",
    ),
    "dreamerv3:size12m": _entry(
        "DreamerV3 12M preset - good for simple environments", "~12M", "dreamer", "image", "reference",
        "reference_family",
    ),
    "dreamerv3:size25m": _entry(
        "DreamerV3 25M preset - balanced performance", "~25M", "dreamer", "image", "reference", "reference_family"
    ),
    "dreamerv3:size50m": _entry(
        "DreamerV3 50M preset - strong performance", "~50M", "dreamer", "image", "reference", "reference_family"
    ),
    "dreamerv3:size100m": _entry(
        "DreamerV3 100M preset - high capacity", "~100M", "dreamer", "image", "reference", "reference_family"
    ),
    "dreamerv3:size200m": _entry(
        "DreamerV3 200M preset - maximum capacity", "~200M", "dreamer", "image", "reference", "reference_family"
    ),
    "dreamerv3:official_xl": _entry(
        "DreamerV3 official XL preset - proof runs against the official implementation", "~400M", "dreamer",
        "image", "reference", "proof_canonical", canonical_display_name="DreamerV3 (official XL)",
    ),
    "tdmpc2:5m": _entry(
        "TD-MPC2 5M preset - fast planning", "~5M", "tdmpc2", "vector", "reference", "reference_family"
    ),
    "tdmpc2:proof_5m": _entry(
        "TD-MPC2 5M proof preset - parity runs against the official implementation", "~5M", "tdmpc2", "vector",
        "reference", "proof_canonical", canonical_display_name="TD-MPC2 5M (proof)",
    ),
    "tdmpc2:5m_legacy": _entry(
        "TD-MPC2 5M legacy preset - compatibility tier", "~5M", "tdmpc2", "vector", "reference", "reference_family"
    ),
    "tdmpc2:ci": _entry(
        "TD-MPC2 CI preset - tiny widths for tests and smoke runs", "~15K", "tdmpc2", "vector", "reference",
        "ci_only",
    ),
    "tdmpc2:19m": _entry("TD-MPC2 19M preset - balanced", "~19M", "tdmpc2", "vector", "reference", "reference_family"),
    "tdmpc2:48m": _entry(
        "TD-MPC2 48M preset - strong performance", "~48M", "tdmpc2", "vector", "reference", "reference_family"
    ),
    "tdmpc2:317m": _entry(
        "TD-MPC2 317M preset - maximum capacity", "~317M", "tdmpc2", "vector", "reference", "reference_family"
    ),
    "jepa:base": _entry(
        "JEPA base - representation prediction", "~1M+", "jepa", "image", "experimental", "none"
    ),
    "vjepa2:ci": _entry(
        "V-JEPA 2 CI preset - video representation prediction", "<1M", "vjepa2", "video",
        "experimental", "none",
    ),
    "vjepa2:tiny": _entry(
        "V-JEPA 2 tiny preset - video representation prediction", "~1M", "vjepa2", "video",
        "experimental", "none",
    ),
    "vjepa2:base": _entry(
        "V-JEPA 2 base - video representation prediction", "~10M", "vjepa2", "video",
        "experimental", "none",
    ),
    "token:base": _entry(
        "Token world model base - discrete token dynamics", "~5M", "token", "tokens", "experimental",
        "none",
    ),
    "diffusion:base": _entry(
        "Diffusion world model base - denoising next-observation prediction", "~1M", "diffusion",
        "image", "experimental", "none",
    ),
    "dit:base": _entry("DiT skeleton" + _CONFIG_ONLY, "skeleton", "dit", "image", "skeleton", "none"),
    "ssm:base": _entry("State-space model skeleton" + _CONFIG_ONLY, "skeleton", "ssm", "vector", "skeleton", "none"),
    "renderer3d:base": _entry(
        "3-D renderer skeleton" + _CONFIG_ONLY, "skeleton", "renderer3d", "image", "skeleton", "none"
    ),
    "physics:base": _entry(
        "Physics simulator skeleton" + _CONFIG_ONLY, "skeleton", "physics", "vector", "skeleton", "none"
    ),
    "gan:base": _entry("GAN skeleton" + _CONFIG_ONLY, "skeleton", "gan", "image", "skeleton", "none"),
}

MODEL_CATALOG: dict[str, dict[str, Any]] = {
    model_id: _normalize_catalog_entry(info) for model_id, info in _BUNDLED_CATALOG.items()
}

_SURFACES: dict[str, frozenset[str] | None] = {
    "supported": frozenset({"supported"}),
    "public": frozenset({"supported", "advanced"}),
    "all": None,
}


# ---------------------------------------------------------------------------------------------------
# Aliases and catalog
# ---------------------------------------------------------------------------------------------------
def register_catalog_entry(model_id: str, info: Mapping[str, Any]) -> None:
    """Add or replace the catalog entry of `model_id` (``support_tier`` is derived when missing)."""
    MODEL_CATALOG[model_id] = _normalize_catalog_entry(info)


def _catalog_key(model_id: str) -> str | None:
    """The catalog key of `model_id`, accepting family spellings such as ``dreamer:`` for ``dreamerv3:``."""
    if model_id in MODEL_CATALOG:
        return model_id
    if ":" not in model_id:
        return None
    family, size = model_id.split(":", 1)
    family = FAMILY_ALIASES.get(family.lower(), family.lower())
    for key in MODEL_CATALOG:
        key_family, key_size = key.split(":", 1)
        if key_size == size and FAMILY_ALIASES.get(key_family, key_family) == family:
            return key
    return None


def list_models(
    verbose: bool = False, maturity: str | None = None, surface: str = "supported"
) -> list[str] | dict[str, dict[str, Any]]:
    """Catalog model ids (catalog order), or ``{id: info}`` when `verbose`.

    Args:
        verbose: return the info dicts too.
        maturity: keep only entries of this maturity (``"reference"``, ``"experimental"``, ``"skeleton"``;
            ``"_"`` is read as ``"-"`` and ``"reference-family"`` means ``"reference"``).
        surface: ``"supported"`` (support tier "supported"), ``"public"`` ("supported" and "advanced") or
            ``"all"``.

    Raises:
        ValueError: an unknown `surface` or `maturity`.
    """
    if surface not in _SURFACES:
        raise ValueError(f"Unknown surface: {surface!r}. Expected one of {list(_SURFACES)}.")
    tiers = _SURFACES[surface]
    wanted: str | None = None
    if maturity is not None:
        wanted = str(maturity).strip().lower().replace("_", "-")
        wanted = {"reference-family": "reference"}.get(wanted, wanted)
        known = sorted({str(info.get("maturity")) for info in MODEL_CATALOG.values()})
        if wanted not in known:
            raise ValueError(f"Unknown maturity: {maturity!r}. Expected one of {known} (or 'reference-family').")
    selected = {
        model_id: dict(info)
        for model_id, info in MODEL_CATALOG.items()
        if (tiers is None or info.get("support_tier") in tiers) and (wanted is None or info.get("maturity") == wanted)
    }
    return selected if verbose else list(selected)


def get_model_info(model: str) -> dict[str, Any]:
    """Catalog info of a model id or alias, plus ``"model_id"`` (and ``"alias"`` when given an alias).

    Raises:
        ValueError: ``"Unknown model: X. Available models: [...]"``.
    """
    resolved = resolve_alias(model)
    key = _catalog_key(resolved)
    if key is None:
        raise ValueError(f"Unknown model: {model}. Available models: {list(MODEL_CATALOG)}")
    info = dict(MODEL_CATALOG[key])
    info["model_id"] = key
    if model.lower() in MODEL_ALIASES:
        info["alias"] = model
    return info


# ---------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------
def _check_config_kwargs(config_cls: type[WorldModelConfig], kwargs: Mapping[str, Any]) -> None:
    """Raise for a keyword argument that is not a field of `config_cls` (hub/internal kwargs excepted)."""
    names = [f.name for f in dataclasses.fields(config_cls)]
    for key in kwargs:
        if key in HUB_KWARGS or key in INTERNAL_KWARGS or key in names:
            continue
        raise ConfigurationError(f"Unknown parameter '{key}' for {config_cls.__name__}.{did_you_mean(key, names)}")


def _config_kwargs(kwargs: Mapping[str, Any], **named: Any) -> dict[str, Any]:
    """`kwargs` without hub/backend arguments, plus the `named` arguments that are not None."""
    values = {k: v for k, v in kwargs.items() if k not in HUB_KWARGS and k != "backend"}
    values.update({k: v for k, v in named.items() if v is not None})
    return values


def get_config(
    model: str,
    *,
    obs_shape: tuple[int, ...] | None = None,
    action_dim: int | None = None,
    **kwargs: Any,
) -> WorldModelConfig:
    """The config ``create_world_model(model, ...)`` would build, without building the model.

    Example:
        >>> get_config("dreamerv3:size12m").deter_dim
        2048

    Raises:
        ValueError: a model id without ``"type:size"`` form (after alias resolution), an unknown family or
            an unknown size.
        ConfigurationError: an unknown keyword argument or an invalid value.
    """
    resolved = resolve_alias(model)
    if ":" not in resolved:
        raise ValueError(f"Invalid model format: {model}. Expected 'type:size' format like 'dreamerv3:size12m'")
    family, size = resolved.split(":", 1)
    config_cls = get_config_class(family)
    _check_config_kwargs(config_cls, kwargs)
    return config_cls.from_size(size, **_config_kwargs(kwargs, obs_shape=obs_shape, action_dim=action_dim))


# ---------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------
def _check_api_version(api_version: str, action_spec: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> None:
    if api_version not in SUPPORTED_API_VERSIONS:
        raise ValueError(f"Unsupported api_version: {api_version}. Expected 'v0.2' or 'v3'.")
    if api_version == "v0.2":
        warnings.warn(
            "api_version='v0.2' is deprecated: its legacy adapters will be removed in v0.3. Use api_version='v3'.",
            DeprecationWarning,
            stacklevel=3,
        )
        return
    kind = action_spec.get("kind") if action_spec is not None else None
    if kind == "hybrid" or kwargs.get("action_type") == "hybrid":
        raise ValueError("action kind 'hybrid' is not supported when api_version='v3'.")


def _check_backend(backend: Any) -> None:
    if backend is None or backend in NATIVE_BACKENDS:
        return
    if backend in SUBPROCESS_BACKENDS:
        raise ValueError(
            f"Backend '{backend}' runs the official implementation in a subprocess (for model "
            f"'{SUBPROCESS_BACKENDS[backend]}'), which worldflux-jax does not provide. "
            f"Use backend='{NATIVE_BACKEND}' (the default)."
        )
    raise ValueError(f"Unknown backend: {backend!r}. Expected one of {list(NATIVE_BACKENDS)}.")


def _check_mapping(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, Mapping):
        raise ConfigurationError(f"{name} must be a dict, got {type(value).__name__}")


def _validate_model(model: Any) -> None:
    validate = getattr(model, "validate", None)
    if not callable(validate):
        return
    try:
        validate(raise_on_error=True)
    except ConfigurationError:
        raise
    except Exception as exc:  # a contract/protocol failure of the assembled model
        raise ConfigurationError(f"Component validation failed: {exc}") from exc


def _load_local(
    path: str, overrides: Mapping[str, Any], kwargs: Mapping[str, Any], device: str, api_version: str
) -> Any:
    """Load the saved model at `path`; overrides may only restate values of its saved config."""
    saved = WorldModelConfig.load(path)
    _check_config_kwargs(type(saved), kwargs)
    if overrides:
        before = saved.to_dict()
        after = saved.with_overrides(**overrides).to_dict()
        changed = sorted(k for k in after if after[k] != before.get(k))
        if changed:
            raise ConfigurationError(
                f"Cannot change {changed} when loading the saved model at '{path}': its config.json fixes them "
                f"(saved: { {k: before.get(k) for k in changed} }). Create a model from a preset id to change them."
            )
    return registry.build_from_pretrained(path, device=device, api_version=api_version)


def create_world_model(
    model: str,
    *,
    obs_shape: tuple[int, ...] | None = None,
    action_dim: int | None = None,
    observation_modalities: dict[str, Any] | None = None,
    action_spec: dict[str, Any] | None = None,
    component_overrides: dict[str, Any] | None = None,
    device: str = "cpu",
    api_version: str = "v3",
    **kwargs: Any,
) -> WorldModel:
    """Create a world model from a preset id, an alias or a saved model directory.

    Args:
        model: ``"type:size"`` (``"dreamerv3:size12m"``, ``"tdmpc2:5m"``; ``dreamer``/``dreamerv3`` and
            ``tdmpc``/``tdmpc2`` both name their family), an alias (``"dreamer-ci"``), or a local directory.
        obs_shape: observation shape, ``(C, H, W)`` images or ``(D,)`` vectors (default ``(3, 64, 64)``); a 1-D
            shape gives DreamerV3 its MLP encoder/decoder.
        action_dim: action dimension (default 6).
        observation_modalities: ``{name: {"shape", "kind", "dtype"}}`` specs (default: one ``"obs"``).
        action_spec: ``{"kind", "dim", ...}`` (overrides ``action_dim``/``action_type``).
        component_overrides: ``{slot: component}`` for the slots in ``COMPONENT_SLOTS``.
        device: where the model lives (``"cpu"`` by default).
        api_version: ``"v3"`` (default) or the deprecated ``"v0.2"``.
        **kwargs: config fields of the family (``hidden_dim=320``, ``kl_free=0.5``, ...). Unknown names raise.

    Raises:
        ValueError: bad ``api_version``, hybrid actions under v3, unknown family/model/size or backend.
        ConfigurationError: unknown config field (``" Did you mean: ...?"``), invalid values, or no world
            model registered for the family.
    """
    _check_api_version(api_version, action_spec if isinstance(action_spec, Mapping) else None, kwargs)
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
        raise ConfigurationError(f"model must be a non-empty model id or path, got {model!r}")
    if not isinstance(device, str) or not device:
        raise ConfigurationError(f"device must be a non-empty str such as 'cpu', got {device!r}")
    _check_mapping("observation_modalities", observation_modalities)
    _check_mapping("action_spec", action_spec)
    _check_mapping("component_overrides", component_overrides)
    model = os.fspath(model)
    resolved = resolve_alias(model)
    _check_backend(kwargs.get("backend"))
    overrides = _config_kwargs(
        kwargs,
        obs_shape=obs_shape,
        action_dim=action_dim,
        observation_modalities=observation_modalities,
        action_spec=action_spec,
    )

    if os.path.isdir(resolved):
        world_model = _load_local(resolved, overrides, kwargs, device, api_version)
    elif ":" in resolved:
        family, size = resolved.split(":", 1)
        config_cls = get_config_class(family)
        _check_config_kwargs(config_cls, kwargs)
        config = config_cls.from_size(size, **overrides)
        world_model = registry.build_model(config, device=device, api_version=api_version)
    elif os.path.exists(resolved):
        raise ValueError(
            f"'{model}' is a file; create_world_model expects a saved model directory (holding config.json) "
            "or a 'type:size' id"
        )
    else:
        raise ValueError(
            f"Unknown model '{model}'. Available model types: {', '.join(CONFIG_REGISTRY)}. "
            "Format: 'type:size' (e.g. 'dreamerv3:size12m')"
        )

    if component_overrides:
        apply_component_overrides(world_model, component_overrides)
    _validate_model(world_model)
    for name, value in (("_wf_api_version", api_version), ("_wf_backend", NATIVE_BACKEND), ("_wf_model_id", resolved)):
        try:
            setattr(world_model, name, value)
        except (AttributeError, TypeError):  # immutable model objects keep no factory metadata
            pass
    return world_model


# ---------------------------------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------------------------------
class WorldModelBuilder:
    """Fluent construction of ``create_world_model`` arguments, validated as they are set.

    Example:
        >>> model = (
        ...     WorldModelBuilder("dreamer-ci")
        ...     .with_obs_shape((4,))
        ...     .with_action_dim(2)
        ...     .with_config(kl_free=0.5)
        ...     .build()
        ... )
    """

    def __init__(self, model: str) -> None:
        if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
            raise ConfigurationError(f"model must be a non-empty model id or path, got {model!r}")
        self.model = os.fspath(model)
        self.obs_shape: tuple[int, ...] | None = None
        self.action_dim: int | None = None
        self.device = "cpu"
        self.api_version = "v3"
        self.observation_modalities: dict[str, Any] | None = None
        self.action_spec: dict[str, Any] | None = None
        self.components: dict[str, Any] = {}
        self.config: dict[str, Any] = {}

    def with_obs_shape(self, obs_shape: tuple[int, ...]) -> WorldModelBuilder:
        """Observation shape: a non-empty tuple (or list) of positive ints."""
        ok = (
            isinstance(obs_shape, (tuple, list))
            and len(obs_shape) > 0
            and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in obs_shape)
        )
        if not ok:
            raise ConfigurationError(f"obs_shape must be a non-empty tuple of positive ints, got {obs_shape!r}")
        self.obs_shape = tuple(obs_shape)
        return self

    def with_action_dim(self, action_dim: int) -> WorldModelBuilder:
        """Action dimension: a positive int."""
        if not isinstance(action_dim, int) or isinstance(action_dim, bool) or action_dim <= 0:
            raise ConfigurationError(f"action_dim must be a positive int, got {action_dim!r}")
        self.action_dim = action_dim
        return self

    def with_device(self, device: str) -> WorldModelBuilder:
        """Device string such as ``"cpu"`` or ``"cuda"``."""
        if not isinstance(device, str) or not device.strip():
            raise ConfigurationError(f"device must be a non-empty str, got {device!r}")
        self.device = device
        return self

    def with_api_version(self, api_version: str) -> WorldModelBuilder:
        """API version: ``"v3"`` or ``"v0.2"``."""
        if api_version not in SUPPORTED_API_VERSIONS:
            raise ConfigurationError(
                f"api_version must be one of {list(SUPPORTED_API_VERSIONS)}, got {api_version!r}"
            )
        self.api_version = api_version
        return self

    def with_observation_modalities(self, modalities: dict[str, Any]) -> WorldModelBuilder:
        """Observation modality specs: a non-empty dict ``{name: {"shape", "kind", "dtype"}}``."""
        if not isinstance(modalities, Mapping) or not modalities:
            raise ConfigurationError(f"observation_modalities must be a non-empty dict, got {modalities!r}")
        self.observation_modalities = dict(modalities)
        return self

    def with_action_spec(self, action_spec: dict[str, Any]) -> WorldModelBuilder:
        """Action spec dict (``{"kind": ..., "dim": ...}``)."""
        if not isinstance(action_spec, Mapping):
            raise ConfigurationError(f"action_spec must be a dict, got {action_spec!r}")
        self.action_spec = dict(action_spec)
        return self

    def with_component(self, slot: str, component: Any) -> WorldModelBuilder:
        """Replace the component in `slot` (one of ``COMPONENT_SLOTS``) when the model is built."""
        if slot not in COMPONENT_SLOTS:
            raise ConfigurationError(f"Unknown component slot {slot!r}. Accepted slots: {list(COMPONENT_SLOTS)}.")
        if component is None:
            raise ConfigurationError(f"component for slot '{slot}' must not be None")
        self.components[slot] = component
        return self

    def with_config(self, **overrides: Any) -> WorldModelBuilder:
        """Config field overrides (checked against the family's fields at ``build()``)."""
        self.config.update(overrides)
        return self

    def build(self) -> WorldModel:
        """``create_world_model`` with everything set so far."""
        return create_world_model(
            self.model,
            obs_shape=self.obs_shape,
            action_dim=self.action_dim,
            observation_modalities=self.observation_modalities,
            action_spec=self.action_spec,
            component_overrides=self.components or None,
            device=self.device,
            api_version=self.api_version,
            **self.config,
        )
