"""Core types of the WorldFlux API: states, batches, outputs, payloads, specs and exceptions.

``first_action`` and ``is_namespaced_extra_key`` are importable from here but, as in the reference, are not
part of ``__all__``. ``WorldModel`` and the config classes resolve lazily (module ``__getattr__``): they import
the JAX core and ``worldflux.core.model`` imports this package's submodules, so importing them eagerly here
would create an import cycle and make ``import worldflux.core`` heavy.
"""

from __future__ import annotations

import importlib
from typing import Any

from .batch import (
    Batch,
    BatchProvider,
    BatchProviderV2,
    BatchRequest,
    SequenceProvider,
    TokenProvider,
    TransitionProvider,
    VideoProvider,
)
from .exceptions import (
    BufferError,
    CapabilityError,
    CheckpointError,
    ConfigurationError,
    ModelNotFoundError,
    ShapeMismatchError,
    StateError,
    TrainingError,
    ValidationError,
    WorldFluxError,
)
from .output import LossOutput, ModelOutput, WorldModelOutput
from .payloads import (
    ACTION_COMPONENTS_KEY,
    PLANNER_HORIZON_KEY,
    PLANNER_SEQUENCE_KEY,
    ActionPayload,
    ActionSequence,
    ConditionPayload,
    WorldModelInput,
    normalize_planned_action,
)
from .payloads import (
    first_action as first_action,
)
from .payloads import (
    is_namespaced_extra_key as is_namespaced_extra_key,
)
from .spec import (
    ActionSpec,
    Capability,
    ConditionSpec,
    ModalityKind,
    ModalitySpec,
    ModelIOContract,
    ModelMaturity,
    ObservationSpec,
    PredictionSpec,
    SequenceFieldSpec,
    SequenceLayout,
    StateSpec,
    TokenSpec,
)
from .state import State
from .trajectory import Trajectory

__all__ = [
    # Core containers
    "State",
    "Trajectory",
    "Batch",
    "BatchRequest",
    "BatchProvider",
    "BatchProviderV2",
    "TransitionProvider",
    "SequenceProvider",
    "TokenProvider",
    "VideoProvider",
    "ModelOutput",
    "WorldModelOutput",
    "LossOutput",
    # Payloads
    "ActionPayload",
    "ActionSequence",
    "ConditionPayload",
    "WorldModelInput",
    "normalize_planned_action",
    "PLANNER_HORIZON_KEY",
    "PLANNER_SEQUENCE_KEY",
    "ACTION_COMPONENTS_KEY",
    # Specs
    "ModalityKind",
    "ModalitySpec",
    "ObservationSpec",
    "ActionSpec",
    "ConditionSpec",
    "StateSpec",
    "TokenSpec",
    "PredictionSpec",
    "SequenceFieldSpec",
    "SequenceLayout",
    "ModelIOContract",
    "Capability",
    "ModelMaturity",
    # Exceptions
    "WorldFluxError",
    "ConfigurationError",
    "ShapeMismatchError",
    "StateError",
    "ModelNotFoundError",
    "CheckpointError",
    "TrainingError",
    "BufferError",
    "ValidationError",
    "CapabilityError",
    # Registry (lazy)
    "PluginManifest",
    # Config (lazy)
    "LatentType",
    "DynamicsType",
    "WorldModelConfig",
    "DreamerV3Config",
    "TDMPC2Config",
    "JEPABaseConfig",
    "VJEPA2Config",
    "TokenWorldModelConfig",
    "DiffusionWorldModelConfig",
    # Protocol (lazy)
    "WorldModel",
    # Component interfaces and latent spaces (lazy)
    "ComponentSpec",
    "ObservationEncoder",
    "AsyncObservationEncoder",
    "ActionConditioner",
    "DynamicsModel",
    "AsyncDynamicsModel",
    "Decoder",
    "AsyncDecoder",
    "RolloutExecutor",
    "AsyncRolloutExecutor",
    "AsyncObservationEncoderAdapter",
    "AsyncDynamicsModelAdapter",
    "AsyncDecoderAdapter",
    "AsyncRolloutExecutorAdapter",
    "ensure_async_observation_encoder",
    "ensure_async_dynamics_model",
    "ensure_async_decoder",
    "ensure_async_rollout_executor",
    "LatentSpace",
    "GaussianLatentSpace",
    "CategoricalLatentSpace",
    "SimNormLatentSpace",
]

# Lazily resolved names: name -> "module:attribute".
_LAZY: dict[str, str] = {
    **{
        name: f"worldflux.core.config:{name}"
        for name in (
            "LatentType",
            "DynamicsType",
            "WorldModelConfig",
            "DreamerV3Config",
            "TDMPC2Config",
            "JEPABaseConfig",
            "VJEPA2Config",
            "TokenWorldModelConfig",
            "DiffusionWorldModelConfig",
        )
    },
    "WorldModel": "worldflux.core.model:WorldModel",
    "PluginManifest": "worldflux.core.plugins:PluginManifest",
    "RolloutEngine": "worldflux.core.interfaces:RolloutEngine",  # importable, not in __all__ (as the reference)
    "ComponentSpec": "worldflux.core.interfaces:ComponentSpec",
    "ObservationEncoder": "worldflux.core.interfaces:ObservationEncoder",
    "AsyncObservationEncoder": "worldflux.core.interfaces:AsyncObservationEncoder",
    "ActionConditioner": "worldflux.core.interfaces:ActionConditioner",
    "DynamicsModel": "worldflux.core.interfaces:DynamicsModel",
    "AsyncDynamicsModel": "worldflux.core.interfaces:AsyncDynamicsModel",
    "Decoder": "worldflux.core.interfaces:Decoder",
    "AsyncDecoder": "worldflux.core.interfaces:AsyncDecoder",
    "RolloutExecutor": "worldflux.core.interfaces:RolloutExecutor",
    "AsyncRolloutExecutor": "worldflux.core.interfaces:AsyncRolloutExecutor",
    "AsyncObservationEncoderAdapter": "worldflux.core.interfaces:AsyncObservationEncoderAdapter",
    "AsyncDynamicsModelAdapter": "worldflux.core.interfaces:AsyncDynamicsModelAdapter",
    "AsyncDecoderAdapter": "worldflux.core.interfaces:AsyncDecoderAdapter",
    "AsyncRolloutExecutorAdapter": "worldflux.core.interfaces:AsyncRolloutExecutorAdapter",
    "ensure_async_observation_encoder": "worldflux.core.interfaces:ensure_async_observation_encoder",
    "ensure_async_dynamics_model": "worldflux.core.interfaces:ensure_async_dynamics_model",
    "ensure_async_decoder": "worldflux.core.interfaces:ensure_async_decoder",
    "ensure_async_rollout_executor": "worldflux.core.interfaces:ensure_async_rollout_executor",
    "LatentSpace": "worldflux.core.latent_space:LatentSpace",
    "GaussianLatentSpace": "worldflux.core.latent_space:GaussianLatentSpace",
    "CategoricalLatentSpace": "worldflux.core.latent_space:CategoricalLatentSpace",
    "SimNormLatentSpace": "worldflux.core.latent_space:SimNormLatentSpace",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'worldflux.core' has no attribute '{name}'")
    module_name, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
