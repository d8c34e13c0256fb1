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
import importlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .batch import Batch
from .exceptions import CapabilityError, CheckpointError, ValidationError
from .model_contracts import ContractMixin, ValidationResult
from .output import LossOutput, ModelOutput
from .payloads import (
    ActionPayload,
    ActionSequence,
    ConditionPayload,
    WorldModelInput,
    normalize_planned_action,
)
from .pretrained import PretrainedMixin, load_pretrained_directory
from .rollout import open_loop_rollout
from .spec import Capability
from .state import State
from .trajectory import Trajectory

__all__ = [
    "IncompatibleKeys",
    "MissingComponentError",
    "ValidationResult",
    "WorldModel",
    "load_pretrained_directory",
]

_ROLLOUT_MODE_MESSAGE = (
    "rollout(..., mode=...) is deprecated in v0.2 and will be removed in v0.3. "
    "Use planner strategies for re-planning/tree-search."
)
# Where the bundled model classes live (imported on first use by `from_pretrained`).
from worldflux.models.registry import BUILTIN_MODEL_MODULES as _BUNDLED_MODELS  # noqa: E402, I001 - one table

# Names that moved to `worldflux.core.jax_model` with the JAX machinery (still importable from here).
_MOVED_TO_JAX_MODEL = frozenset({"JaxWorldModel", "loss_scalars", "resolve_jax_device"})


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_JAX_MODEL:
        return getattr(importlib.import_module("worldflux.core.jax_model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(..., strict=False)`` did not use (torch's ``_IncompatibleKeys``)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class MissingComponentError(CapabilityError, NotImplementedError):
    """A default ``encode`` / ``transition`` / ``rollout`` found neither an override nor the component it
    delegates to. A ``CapabilityError`` (the model lacks the capability) and, for code written against the
    reference (which raised ``NotImplementedError`` there), a ``NotImplementedError``."""


# ------------------------------------------------------------------------------------------------ model


class WorldModel(ContractMixin, PretrainedMixin, nn.Module, ABC):
    """Base class for all world models (contract methods: ``ContractMixin``, ``worldflux.core.model_contracts``;
    checkpoint methods: ``PretrainedMixin``, ``worldflux.core.pretrained``).

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

def _model_class(model_type: str) -> type[WorldModel] | None:
    """The registered ``WorldModel`` subclass for `model_type`, importing the bundled ones on demand."""
    cls = WorldModel._registry.get(model_type)
    if cls is None and model_type in _BUNDLED_MODELS:
        importlib.import_module(_BUNDLED_MODELS[model_type])
        cls = WorldModel._registry.get(model_type)
    return cls
