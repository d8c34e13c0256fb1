"""The contract half of ``WorldModel``: its I/O contract, validation, capabilities and argument coercion
(``io_contract``, ``validate``, ``contract_fingerprint``, ``supports`` / ``require``, ``validate_batch_contract``,
``validate_state_contract``, ``coerce_action_payload``, ``coerce_condition_payload``, ``action_tensor_or_none``).

``ContractMixin`` is one of ``WorldModel``'s bases (``worldflux.core.model``); it holds no state of its own and
reads the model's ``config``, ``capabilities`` and ``_wf_api_version``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worldflux.interop import infer_kind, torch_meta_like

from .batch import Batch
from .exceptions import CapabilityError, ConfigurationError, ValidationError
from .payloads import ActionPayload, ConditionPayload, validate_action_payload_against_union
from .spec import (
    ActionSpec,
    Capability,
    ModalityKind,
    ModalitySpec,
    ModelIOContract,
    ObservationSpec,
    PredictionSpec,
    SequenceLayout,
    StateSpec,
    contract_fingerprint,
)
from .state import State

__all__ = ["ContractMixin", "ValidationResult"]

_SEQUENCE_LAYOUT = {
    "obs": "BT...",
    "actions": "BT...",
    "rewards": "BT",
    "terminations": "BT",
    "next_obs": "BT...",
    "mask": "BT...",
}


@dataclass
class ValidationResult:
    """Outcome of ``WorldModel.validate``: ``valid``, the ``errors`` found and ``suggestions`` to fix them."""

    valid: bool
    errors: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)


class ContractMixin:
    """I/O contract, validation and capability methods of ``WorldModel`` (see the module docstring)."""

    capabilities: set[Capability]

    # -- contracts and validation ---------------------------------------------------------------------
    def io_contract(self) -> ModelIOContract:
        """Return runtime I/O contract.

        Subclasses should override this when they have richer modality/state specs. The default is derived
        from ``config.obs_shape`` / ``action_dim`` / ``action_type`` (image for a rank-3 shape, else vector;
        continuous actions unless ``action_type == "discrete"``) and the advertised capabilities; it requires
        only ``obs`` in a batch and no state tensors.
        """
        config = getattr(self, "config", None)
        obs_shape = tuple(getattr(config, "obs_shape", ()) or ()) or (1,)
        action_dim = int(getattr(config, "action_dim", 0) or 0)
        action_type = str(getattr(getattr(config, "action_type", "continuous"), "value", None)
                          or getattr(config, "action_type", "continuous"))
        kind = ModalityKind.IMAGE if len(obs_shape) == 3 else ModalityKind.VECTOR
        observation = ObservationSpec(modalities={"obs": ModalitySpec(kind=kind, shape=obs_shape)})
        discrete = action_type == "discrete"
        action = ActionSpec(
            kind=action_type, dim=action_dim, discrete=discrete, num_actions=action_dim if discrete else None
        )
        predictions: dict[str, ModalitySpec] = {}
        if Capability.OBS_DECODER in self.capabilities:
            predictions["obs"] = ModalitySpec(kind=kind, shape=obs_shape)
        if Capability.REWARD_PRED in self.capabilities:
            predictions["reward"] = ModalitySpec(kind=ModalityKind.VECTOR, shape=(1,))
        if Capability.CONTINUE_PRED in self.capabilities:
            predictions["continue"] = ModalitySpec(kind=ModalityKind.VECTOR, shape=(1,))
        return ModelIOContract(
            observation_spec=observation,
            input_spec=observation,
            target_spec=ObservationSpec(modalities={"next_obs": ModalitySpec(kind=kind, shape=obs_shape)}),
            action_spec=action,
            state_spec=StateSpec(tensors={}),
            prediction_spec=PredictionSpec(tensors=predictions),
            sequence_layout=SequenceLayout(axes_by_field=dict(_SEQUENCE_LAYOUT)),
            required_batch_keys=("obs",),
            required_state_keys=(),
        )

    def validate(self, *, raise_on_error: bool = True) -> ValidationResult:
        """Check the I/O contract.

        Raises:
            ConfigurationError: ``"Component validation failed: ..."`` when invalid and ``raise_on_error``.
        """
        errors: list[str] = []
        suggestions: list[str] = []
        try:
            self.io_contract().validate()
        except Exception as exc:  # noqa: BLE001 - reported, not raised, when raise_on_error=False
            errors.append(f"io_contract: {exc}")
            suggestions.append("Check the config's obs_shape / action_spec values.")
        self._validate_more(errors, suggestions)
        result = ValidationResult(valid=not errors, errors=errors, suggestions=suggestions)
        if errors and raise_on_error:
            raise ConfigurationError("Component validation failed: " + "; ".join(errors))
        return result

    def _validate_more(self, errors: list[str], suggestions: list[str]) -> None:  # noqa: B027 - optional hook
        """Subclasses append further ``validate()`` findings (e.g. parameters against the architecture)."""

    # -- API version, contracts, capabilities ---------------------------------------------------------
    def _get_api_version(self) -> str:
        return getattr(self, "_wf_api_version", "v0.2")

    def contract_fingerprint(self) -> str:
        """Return a stable fingerprint (SHA-256 hex) for this model's declared IO contract."""
        return contract_fingerprint(self.io_contract())

    def supports(self, capability: Capability | str) -> bool:
        """Return True if the model advertises a capability."""
        try:
            return Capability(capability) in self.capabilities
        except ValueError:
            return False

    def require(self, capability: Capability | str, message: str | None = None) -> None:
        """Raise ``CapabilityError`` if the model does not support a capability."""
        if not self.supports(capability):
            value = getattr(capability, "value", capability)
            raise CapabilityError(message or f"Model lacks capability: {value}")

    @property
    def supports_reward(self) -> bool:
        return self.supports(Capability.REWARD_PRED)

    @property
    def supports_continue(self) -> bool:
        return self.supports(Capability.CONTINUE_PRED)

    @property
    def supports_planning(self) -> bool:
        return self.supports(Capability.PLANNING)

    def on_after_optimizer_step(self) -> None:  # noqa: B027 - optional hook
        """Hook called by trainers after each optimizer step (no-op here; TD-MPC2 updates its target)."""

    # -- batch / state contracts ----------------------------------------------------------------------
    @staticmethod
    def has_batch_key(batch: Batch, key: str) -> bool:
        """True when `key` (``"obs"``, ``"inputs.obs"``, ``"targets:rewards"`` ...) resolves to a non-None value."""
        return _resolve_batch_key(batch, key) is not None

    def validate_batch_contract(self, batch: Batch) -> None:
        """Validate batch keys/layouts against model I/O contract.

        Raises:
            ValidationError: a required batch key is missing, or (``strict_layout``) a condition key is not
                declared by the contract.
        """
        contract = self.io_contract()
        missing = [k for k in contract.required_batch_keys if _resolve_batch_key(batch, k) is None]
        if missing:
            raise ValidationError(
                f"Batch is missing required batch keys: {missing}. Required: {list(contract.required_batch_keys)}"
            )
        if getattr(batch, "strict_layout", False) and getattr(batch, "conditions", None):
            allowed = set(contract.condition_spec.modalities) | set(contract.effective_condition_extra_keys)
            unknown = sorted(k for k in batch.conditions if k not in allowed)
            if unknown:
                raise ValidationError(
                    f"Batch conditions contain undeclared keys: {unknown}. Declared: {sorted(allowed)}"
                )

    def validate_state_contract(self, state: State) -> None:
        """Validate state tensor keys/shapes against model I/O contract.

        Raises:
            ValidationError: a required tensor is missing or has the wrong shape ``[B, *spec.shape]``.
        """
        contract = self.io_contract()
        tensors = getattr(state, "tensors", None)
        if type(tensors) is not dict and not isinstance(tensors, Mapping):
            raise ValidationError(f"Expected a State, got {type(state).__name__}")
        required = contract.required_state_keys
        for key in required:
            if key not in tensors:
                missing = [k for k in required if k not in tensors]
                raise ValidationError(
                    f"State is missing required state tensors: {missing}. Required: {list(required)}"
                )
        for name, shape in self._state_shapes(contract):
            value = tensors.get(name)
            if value is not None and value.shape[1:] != shape:
                raise ValidationError(f"State tensor '{name}' has shape {tuple(value.shape)}; expected (B, *{shape})")

    def _state_shapes(self, contract: ModelIOContract) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """``(name, per-sample shape)`` of every tensor of `contract`'s state spec (computed once per contract)."""
        cached = self.__dict__.get("_state_shapes_cache")
        if cached is None or cached[0] is not contract:
            shapes = tuple((name, tuple(spec.shape)) for name, spec in contract.state_spec.tensors.items())
            cached = (contract, shapes)
            self.__dict__["_state_shapes_cache"] = cached
        return cached[1]

    # -- payload helpers ------------------------------------------------------------------------------
    @staticmethod
    def coerce_action_payload(action: Any, *, kind: str = "continuous") -> ActionPayload:
        """ActionPayload -> itself; None -> ``ActionPayload(kind="none")``; an array (torch/numpy/JAX) ->
        ``ActionPayload(kind, tensor=array)``."""
        if isinstance(action, ActionPayload):
            return action
        if action is None:
            return ActionPayload(kind="none")
        if infer_kind(action, default="") in ("torch", "numpy", "jax") and not isinstance(action, list | tuple):
            return ActionPayload(kind=kind, tensor=action)  # type: ignore[arg-type]
        raise TypeError(f"action must be an ActionPayload, a tensor/array or None, got {type(action).__name__}")

    @staticmethod
    def coerce_condition_payload(conditions: Any) -> ConditionPayload:
        """None -> empty ``ConditionPayload``; a ConditionPayload -> itself; a dict -> its ``extras``."""
        if conditions is None:
            return ConditionPayload()
        if isinstance(conditions, ConditionPayload):
            return conditions
        if isinstance(conditions, Mapping):
            return ConditionPayload(extras=dict(conditions))
        raise TypeError(f"conditions must be a ConditionPayload, a dict or None, got {type(conditions).__name__}")

    def action_tensor_or_none(self, action: Any, *, validate_contract: bool = True) -> Any:
        """The action array of `action` (None for None / kind "none"), validated against the contract's
        action specs when `validate_contract`.

        Raises:
            ValidationError: the action does not fit any declared action spec.
        """
        if action is None:
            return None
        payload = self.coerce_action_payload(action, kind=self.io_contract().action_spec.kind)
        if validate_contract:
            self._validate_action(payload)
        if payload.kind == "none":
            return None
        return payload.primary()

    def _validate_action(self, payload: ActionPayload) -> None:
        shadow = ActionPayload(
            kind=payload.kind,
            tensor=None if payload.tensor is None else torch_meta_like(payload.tensor),
            tokens=None if payload.tokens is None else torch_meta_like(payload.tokens),
            latent=None if payload.latent is None else torch_meta_like(payload.latent),
            text=payload.text,
            extras=payload.extras,
        )
        try:
            validate_action_payload_against_union(
                shadow, self.io_contract().effective_action_specs, api_version=self._get_api_version()
            )
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc

    def _validate_action_tensor(self, tensor: Any) -> None:
        """``_validate_action`` of a plain action array of the contract's kind. Its outcome depends only on
        the array's shape and dtype and on the api_version, so a layout that passed once is not checked again
        (unless a spec is the deprecated "hybrid" kind, whose check warns each time)."""
        key = (tuple(tensor.shape), str(tensor.dtype), self._get_api_version())
        layouts = self.__dict__.setdefault("_valid_action_layouts", set())
        if key in layouts:
            return
        contract = self.io_contract()
        self._validate_action(ActionPayload(kind=contract.action_spec.kind, tensor=tensor))
        if all(str(getattr(s.kind, "value", s.kind)) != "hybrid" for s in contract.effective_action_specs):
            layouts.add(key)

    def _validate_conditions(self, conditions: Any) -> None:
        if conditions is None:
            return
        payload = self.coerce_condition_payload(conditions)
        contract = self.io_contract()
        try:
            payload.validate(
                allowed_extra_keys=contract.effective_condition_extra_keys,
                extra_schema=contract.condition_extras_schema_dict(),
                api_version=self._get_api_version(),
            )
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc

    # -- hooks around the core methods ----------------------------------------------------------------


def _resolve_batch_key(batch: Any, key: str) -> Any:
    parts = key.replace(":", ".").split(".")
    root, rest = parts[0], parts[1:]
    value = getattr(batch, root, None) if hasattr(batch, root) else None
    if value is None:
        for container in ("inputs", "targets", "conditions", "extras"):
            mapping = getattr(batch, container, None) or {}
            if root in mapping:
                value = mapping[root]
                break
    for part in rest:
        if isinstance(value, Mapping):
            value = value.get(part)
        else:
            value = getattr(value, part, None)
        if value is None:
            return None
    return value
