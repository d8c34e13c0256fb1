"""Registered components (reference ``WorldModelRegistry.register_component`` and friends; experimental).

A component is a class implementing one of the protocols of ``worldflux.core.interfaces`` (observation encoder,
action conditioner, dynamics model, decoder, rollout executor), registered under an id with a
``ComponentSpec`` whose ``component_type`` names its slot kind. ``create_world_model(...,
component_overrides={"action_conditioner": "acme.zero_action"})`` and ``WorldModelBuilder.with_component``
accept such an id, a class (instantiated with ``(model)`` when its constructor takes a required positional
argument, else ``()``) or a ready instance (``build_component``).

Slot -> expected ``component_type``: ``observation_encoder``, ``action_conditioner``, ``dynamics_model``,
``decoder`` / ``decoder_module`` -> ``decoder``, ``rollout_executor`` / ``rollout_engine`` -> ``rollout_executor``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from .exceptions import ConfigurationError
from .interfaces import ComponentSpec

__all__ = [
    "COMPONENT_SLOTS",
    "SLOT_COMPONENT_TYPES",
    "apply_component_overrides",
    "build_component",
    "component_registry",
    "get_component",
    "instantiate_component",
    "register_component",
    "unregister_component",
]

COMPONENT_SLOTS = (
    "observation_encoder",
    "action_conditioner",
    "dynamics_model",
    "decoder",
    "decoder_module",
    "rollout_executor",
    "rollout_engine",
)
# Slot name -> model attribute, where they differ (for models without set_component).
_SLOT_ATTRIBUTES = {"decoder": "decoder_module"}
SLOT_COMPONENT_TYPES = {
    "observation_encoder": "observation_encoder",
    "action_conditioner": "action_conditioner",
    "dynamics_model": "dynamics_model",
    "decoder": "decoder",
    "decoder_module": "decoder",
    "rollout_executor": "rollout_executor",
    "rollout_engine": "rollout_executor",
}
_REGISTRY: dict[str, tuple[ComponentSpec, type]] = {}


def register_component(component_id: str, component_class: type, spec: ComponentSpec) -> None:
    """Register `component_class` under `component_id`.

    Raises:
        ConfigurationError: an empty id, a non-class, a spec that is not a ``ComponentSpec``, or an id already
            registered to another class.
    """
    if not isinstance(component_id, str) or not component_id:
        raise ConfigurationError(f"component_id must be a non-empty string, got {component_id!r}")
    if not isinstance(component_class, type):
        raise ConfigurationError(f"component_class must be a class, got {component_class!r}")
    if not isinstance(spec, ComponentSpec):
        raise ConfigurationError(f"spec must be a ComponentSpec, got {type(spec).__name__}")
    existing = _REGISTRY.get(component_id)
    if existing is not None and existing[1] is not component_class:
        raise ConfigurationError(
            f"Component '{component_id}' is already registered to {existing[1].__name__}. "
            f"Cannot re-register to {component_class.__name__}."
        )
    _REGISTRY[component_id] = (spec, component_class)


def unregister_component(component_id: str) -> bool:
    return _REGISTRY.pop(component_id, None) is not None


def get_component(component_id: str) -> tuple[ComponentSpec, type]:
    """``(spec, class)`` of `component_id`.

    Raises:
        ConfigurationError: an unknown id (the message lists the registered ones).
    """
    if component_id not in _REGISTRY:
        raise ConfigurationError(f"Unknown component id '{component_id}'. Available: {sorted(_REGISTRY)}")
    return _REGISTRY[component_id]


def component_registry() -> dict[str, ComponentSpec]:
    """Registered component ids and their specs."""
    return {component_id: spec for component_id, (spec, _) in _REGISTRY.items()}


def instantiate_component(component_class: type, model: Any) -> Any:
    """``component_class(model)`` when its constructor requires a positional argument, else
    ``component_class()``."""
    try:
        params = list(inspect.signature(component_class).parameters.values())
    except (TypeError, ValueError):
        params = []
    required = [
        p for p in params
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if required or any(p.kind == p.VAR_POSITIONAL for p in params):
        return component_class(model)
    return component_class()


def build_component(override: object, *, expected_component_type: str, model: Any) -> Any:
    """The component for an override: a registered id (its type must be `expected_component_type`), a class
    (instantiated) or an instance (returned as is).

    Raises:
        ConfigurationError: an unknown id, or one registered for another component type.
    """
    if isinstance(override, str):
        spec, component_class = get_component(override)
        if spec.component_type != expected_component_type:
            raise ConfigurationError(
                f"Component '{override}' has type {spec.component_type!r}, expected {expected_component_type!r}."
            )
        return instantiate_component(component_class, model)
    if isinstance(override, type):
        return instantiate_component(override, model)
    return override


def apply_component_overrides(model: Any, overrides: Mapping[str, Any]) -> None:
    """Put each ``{slot: id | class | instance}`` override into `model` (``set_component(slot, component)`` when
    the model has it, else the slot's attribute; ``"decoder"`` is the ``decoder_module`` attribute).

    Raises:
        ConfigurationError: an unknown slot, a bad component id, or a model without the slot.
    """
    from .registry import WorldModelRegistry

    unknown = [slot for slot in overrides if slot not in COMPONENT_SLOTS]
    if unknown:
        raise ConfigurationError(f"Unknown component slot(s) {unknown}. Accepted slots: {list(COMPONENT_SLOTS)}.")
    WorldModelRegistry.load_entrypoint_plugins()
    setter = getattr(model, "set_component", None)
    for slot, override in overrides.items():
        component = build_component(override, expected_component_type=SLOT_COMPONENT_TYPES[slot], model=model)
        if callable(setter):
            setter(slot, component)
            continue
        attribute = slot if hasattr(model, slot) else _SLOT_ATTRIBUTES.get(slot, slot)
        if not hasattr(model, attribute):
            raise ConfigurationError(
                f"{type(model).__name__} does not accept component overrides for slot '{slot}' (it has neither "
                f"set_component(slot, component) nor a '{attribute}' attribute)."
            )
        setattr(model, attribute, component)
