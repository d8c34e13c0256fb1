"""``WorldModel``: the open base class of every world model (reference ``worldflux.core.model.WorldModel``).

``WorldModel`` is a ``torch.nn.Module`` and an ABC whose only abstract method is ``loss(batch)``. A user's own
world model subclasses it, calls ``super().__init__()``, and overrides what it has (typically ``encode``,
``transition``, ``decode`` and ``loss``); everything else has a documented default:

* ``encode`` / ``transition`` / ``decode`` / ``rollout`` delegate to attached components
  (``observation_encoder``, ``action_conditioner`` + ``dynamics_model``, ``decoder_module``,
  ``rollout_executor``; see ``worldflux.core.interfaces``). A model without the component raises
  ``CapabilityError`` (which is also a ``NotImplementedError``, what the reference raised for the first three).
* ``rollout`` loops ``transition`` + ``decode`` and collects the "reward" / "continue" predictions,
  ``plan_step`` calls ``transition``, ``sample_step`` decodes (after a transition when given an action),
  ``teacher_forcing_step`` calls ``update``, and ``update`` (with a ``DeprecationWarning``) re-encodes.
* ``async_encode`` / ``async_transition`` / ``async_decode`` / ``async_rollout`` use a component's native
  ``*_async`` method when it has one, else run the synchronous method in a worker thread.
* ``io_contract()`` is derived from ``config`` (``obs_shape``, ``action_dim``, ``action_type``) and the
  ``capabilities``; ``validate_batch_contract`` / ``validate_state_contract``, ``supports`` / ``require``,
  ``contract_fingerprint``, ``save_pretrained`` / ``from_pretrained`` (``config.json``, ``model.pt``,
  ``worldflux_meta.json``) work for every subclass.

The bundled DreamerV3 and TD-MPC2 models are ``worldflux.core.jax_model.JaxWorldModel`` subclasses, whose
parameters live in JAX and whose steps run as compiled JAX functions.

API version: the factory sets ``_wf_api_version`` ("v3" by default there); a model built directly behaves
as "v0.2". Under "v3", ``rollout(mode != "autoregressive")`` is an error instead of a
``DeprecationWarning``, and undeclared condition extras / hybrid actions are rejected.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import os
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from worldflux.core.pretrained_io import (
    SAFETENSORS_FILE,
    read_config,
    read_meta,
    read_weights,
    save_pretrained_files,
    weights_file,
)
from worldflux.interop import infer_kind, torch_meta_like

from .batch import Batch
from .exceptions import CapabilityError, CheckpointError, ConfigurationError, ValidationError
from .output import LossOutput, ModelOutput
from .payloads import (
    ActionPayload,
    ActionSequence,
    ConditionPayload,
    WorldModelInput,
    normalize_planned_action,
    validate_action_payload_against_union,
)
from .rollout import open_loop_rollout
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
from .trajectory import Trajectory

__all__ = [
    "IncompatibleKeys",
    "MissingComponentError",
    "ValidationResult",
    "WorldModel",
    "load_pretrained_directory",
]

SAVE_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"
META_FILE = "worldflux_meta.json"
_API_VERSIONS = ("v0.2", "v3")
_ROLLOUT_MODE_MESSAGE = (
    "rollout(..., mode=...) is deprecated in v0.2 and will be removed in v0.3. "
    "Use planner strategies for re-planning/tree-search."
)
# Where the bundled model classes live (imported on first use by `from_pretrained`).
_BUNDLED_MODELS = {"dreamer": "worldflux.models.dreamer", "tdmpc2": "worldflux.models.tdmpc2"}
# Names that moved to `worldflux.core.jax_model` with the JAX machinery (still importable from here).
_MOVED_TO_JAX_MODEL = frozenset({"JaxWorldModel", "loss_scalars", "resolve_jax_device"})
_SEQUENCE_LAYOUT = {
    "obs": "BT...",
    "actions": "BT...",
    "rewards": "BT",
    "terminations": "BT",
    "next_obs": "BT...",
    "mask": "BT...",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_JAX_MODEL:
        return getattr(importlib.import_module("worldflux.core.jax_model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class ValidationResult:
    """Outcome of ``WorldModel.validate``: ``valid``, the ``errors`` found and ``suggestions`` to fix them."""

    valid: bool
    errors: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(..., strict=False)`` did not use (torch's ``_IncompatibleKeys``)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class MissingComponentError(CapabilityError, NotImplementedError):
    """A default ``encode`` / ``transition`` / ``rollout`` found neither an override nor the component it
    delegates to. A ``CapabilityError`` (the model lacks the capability) and, for code written against the
    reference (which raised ``NotImplementedError`` there), a ``NotImplementedError``."""


# ------------------------------------------------------------------------------------------------ model


class WorldModel(nn.Module, ABC):
    """Base class for all world models.

    Subclasses implement ``loss(batch) -> LossOutput`` and override the steps they have (``encode``,
    ``transition``, ``update``, ``decode``, ``rollout``) or attach components (see the module docstring).
    Register a subclass for ``from_pretrained`` with a ``model_type`` class attribute or
    ``WorldModelRegistry.register(model_type, config_class)``.

    Attributes:
        capabilities: ``set[Capability]`` the model advertises (``supports`` / ``require``).
        observation_encoder, action_conditioner, dynamics_model, decoder_module, rollout_executor: optional
            components used by the default steps; ``rollout_engine`` is the deprecated predecessor of
            ``rollout_executor``.
        composable_support: names of the component slots the model supports.
    """

    model_type: ClassVar[str] = "base"
    _registry: ClassVar[dict[str, type[WorldModel]]] = {}
    # Class default, so reading it needs no ``nn.Module.__getattr__`` fallback on hot paths.
    _wf_api_version: str = "v0.2"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("model_type") not in (None, "base"):
            WorldModel._registry[cls.model_type] = cls

    def __init__(self) -> None:
        super().__init__()
        self.capabilities: set[Capability] = set()
        self.composable_support: set[str] = set()
        # Instance attributes (not class attributes): a component that is an nn.Module is then registered as
        # a submodule by nn.Module.__setattr__ and found again by attribute access.
        self.observation_encoder: Any = None
        self.action_conditioner: Any = None
        self.dynamics_model: Any = None
        self.decoder_module: Any = None
        self.rollout_executor: Any = None
        self.rollout_engine: Any = None

    # -- construction from a config (from_pretrained) --------------------------------------------------
    @classmethod
    def config_class(cls) -> type[Any]:
        """The config class that reads this model's ``config.json``: the one registered for ``model_type``
        (``WorldModelRegistry.register(..., config_class)`` or ``worldflux.core.config.register_config``),
        else ``WorldModelConfig``."""
        from .config import CONFIG_REGISTRY, WorldModelConfig

        return CONFIG_REGISTRY.get(cls.model_type, WorldModelConfig)

    @classmethod
    def fingerprint_for_config(cls, config: Any) -> str:
        """``contract_fingerprint()`` of a model built from `config` (builds one: ``cls(config)``)."""
        return cls(config).contract_fingerprint()

    @classmethod
    def _from_state_dict(cls, config: Any, state_dict: Mapping[str, Any], *, device: Any = None) -> WorldModel:
        """``cls(config)`` with `state_dict` loaded strictly.

        Raises:
            CheckpointError: missing, unexpected or mis-shaped tensors.
        """
        model = cls(config)
        # safetensors files load as numpy arrays; a torch module's load_state_dict copies only tensors
        tensors = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in state_dict.items()}
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"State dict does not match {cls.__name__}: {exc}") from exc
        if device is not None:
            model.to(device)
        return model

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
    def plan_step(
        self,
        state: State,
        action: ActionPayload | Any | None,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
    ) -> State:
        """Optional planner hook. Default delegates to transition()."""
        try:
            return self.transition(state, action, conditions=conditions, deterministic=deterministic)
        except TypeError:
            if conditions is not None:
                raise
            return self.transition(state, action, deterministic=deterministic)  # type: ignore[call-arg]

    def sample_step(
        self,
        state: State,
        action: ActionPayload | Any | None = None,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
    ) -> ModelOutput:
        """Optional sampler hook for generative families.

        If an action is provided, transition first then decode. Otherwise decode state.
        """
        if action is None:
            return self.decode(state, conditions=conditions)
        next_state = self.transition(state, action, conditions=conditions, deterministic=deterministic)
        return self.decode(next_state, conditions=conditions)

    def teacher_forcing_step(
        self, state: State, action: ActionPayload | Any | None, obs: Any, conditions: ConditionPayload | None = None
    ) -> State:
        """Optional training hook. Default delegates to update()."""
        return self.update(state, action, obs, conditions=conditions)

    async def async_encode(self, obs: Any, deterministic: bool = False) -> State:
        """Asynchronous non-blocking variant of encode: the encoder's ``encode_async`` when it has one, else
        ``encode`` in a worker thread."""
        native = getattr(self.observation_encoder, "encode_async", None)
        if callable(native):
            return await native(self._coerce_world_input(obs).observations)
        return await asyncio.to_thread(self.encode, obs, deterministic)

    async def async_transition(
        self,
        state: State,
        action: ActionPayload | Any | None,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
    ) -> State:
        """Asynchronous non-blocking variant of transition (``dynamics_model.transition_async`` when present)."""
        native = getattr(self.dynamics_model, "transition_async", None)
        if callable(native):
            return await native(state, self._conditioned(state, action, conditions), deterministic=deterministic)
        return await asyncio.to_thread(self.transition, state, action, conditions, deterministic)

    async def async_decode(self, state: State, conditions: ConditionPayload | None = None) -> ModelOutput:
        """Asynchronous non-blocking variant of decode (``decoder_module.decode_async`` when present)."""
        native = getattr(self.decoder_module, "decode_async", None)
        if callable(native):
            self._validate_conditions(conditions)
            predictions = await native(state, conditions=self.coerce_condition_payload(conditions))
            return ModelOutput(predictions=predictions, state=state)
        return await asyncio.to_thread(self.decode, state, conditions)

    async def async_rollout(
        self,
        initial_state: State,
        action_sequence: ActionSequence | ActionPayload | Any | None,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        mode: str = "autoregressive",
    ) -> Trajectory:
        """Asynchronous non-blocking variant of rollout (``rollout_executor.rollout_open_loop_async`` when
        present)."""
        native = getattr(self.rollout_executor, "rollout_open_loop_async", None)
        if callable(native):
            actions, condition_payload = self._rollout_inputs(action_sequence, conditions, mode)
            tensor = actions.tensor if isinstance(actions, ActionSequence) else actions
            return await native(
                self, initial_state, tensor, conditions=condition_payload, deterministic=deterministic
            )
        return await asyncio.to_thread(self.rollout, initial_state, action_sequence, conditions, deterministic, mode)

    # -- checkpoints ----------------------------------------------------------------------------------
    def save_pretrained(self, path: str) -> None:
        """Save model weights and config using a unified directory layout.

        Writes (each file atomically: a temporary file then ``os.replace``) ``config.json``
        (``config.to_dict()``, indent 2), ``model.safetensors`` and ``model.pt`` (the ``state_dict()`` with
        safetensors and with ``torch.save``, loadable with ``torch.load(..., weights_only=True)``) and
        ``worldflux_meta.json`` (``save_format_version``, ``worldflux_version``, ``api_version``, ``model_type``,
        ``contract_fingerprint``, ``created_at_utc``, ``weights_sha256``; indent 2, sorted keys, trailing
        newline). See ``worldflux.core.pretrained_io``.
        """
        meta = {
            "save_format_version": SAVE_FORMAT_VERSION,
            "worldflux_version": _worldflux_version(),
            "api_version": self._get_api_version(),
            "model_type": self.config.model_type,
            "contract_fingerprint": self.contract_fingerprint(),
            "created_at_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        save_pretrained_files(path, config=self.config.to_dict(), state_dict=self.state_dict(), meta=meta)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> WorldModel:
        """Load a model from a ``save_pretrained`` directory (ours or the reference's), or build one from a
        ``"type:size"`` id / Hugging Face repo id (``"owner/name[@rev]"``, needs ``huggingface_hub``).

        Extra kwargs are ignored for local directories; for ``"type:size"`` ids they override config fields.

        Raises:
            CheckpointError: a corrupt or incompatible directory (the message names the path and the problem).
            TypeError: the loaded model is not an instance of the calling class.
        """
        path = Path(os.fspath(name_or_path))
        if path.is_dir():
            model = load_pretrained_directory(path, expected_class=cls)
        else:
            model = _from_model_id(str(name_or_path), **kwargs)
        if not isinstance(model, cls):
            raise TypeError(
                f"{cls.__name__}.from_pretrained({str(name_or_path)!r}) produced a {type(model).__name__}, "
                f"not a {cls.__name__}"
            )
        return model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        commit_message: str | None = None,
    ) -> str:
        """Upload ``save_pretrained`` files to the Hugging Face Hub; returns the commit URL.

        Raises:
            ImportError: ``huggingface_hub`` is not installed.
        """
        try:
            import huggingface_hub
        except ImportError as exc:
            raise ImportError("push_to_hub needs huggingface_hub: pip install huggingface_hub") from exc
        api = huggingface_hub.HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            info = api.upload_folder(
                repo_id=repo_id, folder_path=tmp, commit_message=commit_message or "Upload WorldFlux model"
            )
        return str(getattr(info, "commit_url", info))


    # -- default steps (components) -------------------------------------------------------------------
    def _coerce_world_input(self, obs: Any) -> WorldModelInput:
        """`obs` as a ``WorldModelInput`` (a tensor becomes ``{"obs": tensor}``), checked for the contract's
        observation modalities.

        Raises:
            ValidationError: a declared observation modality is missing.
        """
        if isinstance(obs, WorldModelInput):
            world_input = obs
        elif isinstance(obs, Mapping):
            world_input = WorldModelInput(observations=dict(obs))
        else:
            world_input = WorldModelInput(observations={"obs": obs})
        declared = self.io_contract().effective_input_spec.modalities
        missing = sorted(k for k in declared if k not in world_input.observations)
        if missing:
            raise ValidationError(
                f"Observation is missing required modalities: {missing}. Provided: {sorted(world_input.observations)}"
            )
        return world_input

    def _missing(self, method: str, component: str) -> MissingComponentError:
        return MissingComponentError(
            f"{type(self).__name__}.{method}(...) is not implemented and no {component} is attached"
        )

    def _conditioned(self, state: State, action: Any, conditions: Any) -> dict[str, Any]:
        """Validate `action` and `conditions` and build the dynamics input (the conditioner's dict plus
        ``"action"``)."""
        payload = self.coerce_action_payload(action, kind=self.io_contract().action_spec.kind)
        if payload.kind != "none":
            self._validate_action(payload)
        self._validate_conditions(conditions)
        condition_payload = self.coerce_condition_payload(conditions)
        conditioned: dict[str, Any] = {}
        if self.action_conditioner is not None:
            conditioned.update(self.action_conditioner.condition(state, payload, condition_payload))
        tensor = None if payload.kind == "none" else payload.primary()
        if tensor is not None and "action" not in conditioned:
            conditioned["action"] = tensor
        return conditioned

    def encode(self, obs: Tensor | dict[str, Tensor] | WorldModelInput, deterministic: bool = False) -> State:
        """Encode observation to latent state."""
        if self.observation_encoder is None:
            raise self._missing("encode", "observation_encoder")
        return self.observation_encoder.encode(self._coerce_world_input(obs).observations)

    def transition(
        self,
        state: State,
        action: ActionPayload | Tensor | None,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
    ) -> State:
        """Predict next state (prior/imagination)."""
        if self.dynamics_model is None:
            raise self._missing("transition", "dynamics_model")
        conditioned = self._conditioned(state, action, conditions)
        return self.dynamics_model.transition(state, conditioned, deterministic=deterministic)

    def update(
        self,
        state: State,
        action: ActionPayload | Tensor | None,
        obs: Tensor | dict[str, Tensor] | WorldModelInput,
        conditions: ConditionPayload | None = None,
    ) -> State:
        """Update state with observation (posterior). The default re-encodes `obs` (with a
        ``DeprecationWarning``); stateful posterior models override it."""
        warnings.warn(
            "Calling default WorldModel.update(...). This fallback re-encodes observations and should be "
            "overridden by stateful posterior models.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.encode(obs)

    def decode(self, state: State, conditions: ConditionPayload | None = None) -> ModelOutput:
        """Decode latent state to predictions.

        Raises:
            CapabilityError: the model has no decoder.
        """
        self._validate_conditions(conditions)
        if self.decoder_module is None:
            raise CapabilityError(f"{type(self).__name__} does not expose a decoder component")
        predictions = self.decoder_module.decode(state, conditions=self.coerce_condition_payload(conditions))
        return ModelOutput(predictions=predictions, state=state)

    def _rollout_inputs(self, action_sequence: Any, conditions: Any, mode: str) -> tuple[Any, ConditionPayload]:
        if mode != "autoregressive":
            if self._get_api_version() == "v3":
                raise ValueError(_ROLLOUT_MODE_MESSAGE)
            warnings.warn(_ROLLOUT_MODE_MESSAGE, DeprecationWarning, stacklevel=3)
        self._validate_conditions(conditions)
        if isinstance(action_sequence, ActionPayload):
            action_sequence = normalize_planned_action(action_sequence, api_version=self._get_api_version())
        return action_sequence, self.coerce_condition_payload(conditions)

    def rollout(
        self,
        initial_state: State,
        action_sequence: ActionSequence | ActionPayload | Tensor | None,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        mode: str = "autoregressive",
    ) -> Trajectory:
        """Default rollout implementation using transition + decode.

        `action_sequence`: a tensor ``[T, B, A]``, an ``ActionSequence`` (tensor or per-step payloads), a
        planner ``ActionPayload`` (``normalize_planned_action``) or None (T = 0). Returns T + 1 states, the
        actions as given (``[T, B, 0]`` zeros for payload lists / None), and rewards / continues ``[T, B]``
        stacked from the "reward" / "continue" predictions when ``decode`` makes them.
        """
        actions, condition_payload = self._rollout_inputs(action_sequence, conditions, mode)
        executor = self.rollout_executor
        if executor is not None or self.rollout_engine is not None:
            tensor = actions.tensor if isinstance(actions, ActionSequence) else actions
            if executor is not None:
                return executor.rollout_open_loop(
                    self, initial_state, tensor, conditions=condition_payload, deterministic=deterministic
                )
            warnings.warn(
                "rollout_engine is deprecated in v0.2; attach rollout_executor instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            return self.rollout_engine.rollout(
                self, initial_state, tensor, conditions=condition_payload, deterministic=deterministic,
                mode="autoregressive",
            )
        return open_loop_rollout(self, initial_state, actions, condition_payload, deterministic)

    @abstractmethod
    def loss(self, batch: Batch) -> LossOutput:
        """Compute training loss."""


# ------------------------------------------------------------------------------------------------ helpers

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


def _worldflux_version() -> str:
    import worldflux

    return str(getattr(worldflux, "__version__", "0.1.1.dev0"))


def _model_class(model_type: str) -> type[WorldModel] | None:
    """The registered ``WorldModel`` subclass for `model_type`, importing the bundled ones on demand."""
    cls = WorldModel._registry.get(model_type)
    if cls is None and model_type in _BUNDLED_MODELS:
        importlib.import_module(_BUNDLED_MODELS[model_type])
        cls = WorldModel._registry.get(model_type)
    return cls


def load_pretrained_directory(
    path: str | os.PathLike[str], expected_class: type[WorldModel] | None = None
) -> WorldModel:
    """Load a ``save_pretrained`` directory (ours or the reference's) into its model class.

    Steps: read ``config.json`` and build the config of its ``model_type``; check ``worldflux_meta.json`` when
    present (``save_format_version`` in {None, 1, "1"}, ``model_type`` equal to the config's,
    ``contract_fingerprint`` equal to the rebuilt model's, computed from the config alone); load
    ``model.safetensors`` (preferred) or ``model.pt`` (``torch.load(weights_only=True)``), verified against
    ``weights_sha256`` when the meta file lists it, strictly (every tensor present, none unknown, shapes equal);
    restore ``_wf_api_version`` from the meta file. No random initialization happens. File reading:
    ``worldflux.core.pretrained_io``.

    Raises:
        CheckpointError: any missing, unreadable or inconsistent file, naming `path` and the problem.
        TypeError: `expected_class` is given and the directory holds another model type.
    """
    root = Path(path)
    config_path = root / CONFIG_FILE
    data = read_config(root)
    model_type = str(data["model_type"])
    model_cls = _model_class(model_type)
    if model_cls is None:
        raise CheckpointError(
            f"Cannot load {root}: model_type {model_type!r} is not registered (known: {sorted(WorldModel._registry)})"
        )
    if expected_class is not None and not issubclass(model_cls, expected_class):
        raise TypeError(
            f"{expected_class.__name__}.from_pretrained({str(root)!r}): the directory holds a {model_type!r} model "
            f"({model_cls.__name__}), not a {expected_class.__name__}"
        )
    try:
        config = model_cls.config_class().from_dict(data)
    except (ConfigurationError, TypeError, ValueError) as exc:
        raise CheckpointError(f"Invalid {config_path}: {exc}") from exc

    meta_path = root / META_FILE
    meta = read_meta(root)
    if meta:
        version = meta.get("save_format_version")
        if version not in (None, 1, "1"):
            raise CheckpointError(
                f"Unsupported save_format_version {version!r} in {meta_path} (supported: 1); the checkpoint is "
                "not compatible with the current runtime."
            )
        meta_type = meta.get("model_type")
        if meta_type is not None and meta_type != config.model_type:
            raise CheckpointError(
                f"model_type mismatch in {root}: {META_FILE} says {meta_type!r} but {CONFIG_FILE} says "
                f"{config.model_type!r}; the checkpoint is not compatible with the current runtime."
            )
        fingerprint = meta.get("contract_fingerprint")
        if fingerprint is not None:
            expected = model_cls.fingerprint_for_config(config)
            if fingerprint != expected:
                raise CheckpointError(
                    f"contract_fingerprint mismatch in {meta_path}: saved {fingerprint}, rebuilt model has "
                    f"{expected}; the checkpoint is not compatible with the current runtime."
                )

    weights_path = weights_file(root)
    state_dict = read_weights(root, meta)
    try:
        model = model_cls._from_state_dict(config, state_dict)
    except (CheckpointError, ValueError, TypeError) as exc:
        raise CheckpointError(f"Cannot load {weights_path}: {exc}") from exc
    api_version = meta.get("api_version")
    if api_version in _API_VERSIONS:
        model._wf_api_version = api_version
    return model


def _from_model_id(name: str, **kwargs: Any) -> WorldModel:
    """A fresh model for a "type:size" id or alias (kwargs override config fields), or a Hub repo id."""
    from worldflux.core.config import config_from_id, resolve_alias

    resolved = resolve_alias(name)
    if ":" in resolved:
        config = config_from_id(resolved, **kwargs)
        model_cls = _model_class(config.model_type)
        if model_cls is None:
            raise ValueError(
                f"No world model is registered for model_type {config.model_type!r} (known: "
                f"{sorted(WorldModel._registry)})"
            )
        return model_cls(config)
    parts = resolved.split("@", 1)[0].split("/")
    if len(parts) == 2 and all(parts):
        return _from_hub(resolved, **kwargs)
    raise CheckpointError(
        f"Cannot load {name!r}: not an existing directory, a 'type:size' id (e.g. 'dreamerv3:size12m') or a "
        "Hugging Face repo id ('owner/name')"
    )


def _from_hub(repo: str, **kwargs: Any) -> WorldModel:
    try:
        import huggingface_hub
    except ImportError as exc:
        raise ImportError(
            f"Loading {repo!r} from the Hugging Face Hub needs huggingface_hub: pip install huggingface_hub"
        ) from exc
    repo_id, _, revision = repo.partition("@")
    hub_keys = ("token", "cache_dir", "local_files_only", "force_download")
    local = huggingface_hub.snapshot_download(
        repo_id,
        revision=kwargs.get("revision") or revision or "main",
        allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, SAFETENSORS_FILE, META_FILE],
        **{k: kwargs[k] for k in hub_keys if k in kwargs},
    )
    return load_pretrained_directory(local)
