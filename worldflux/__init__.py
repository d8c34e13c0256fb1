"""WorldFlux: the documented world-model API, backed by the JAX core in `worldflux_jax`.

Names are resolved lazily on first access (module-level ``__getattr__``) and then cached in the module
globals, so ``import worldflux`` stays cheap::

    from worldflux import create_world_model, DreamerV3Config

To export a new name, add it to ``_EXPORTS`` (name -> ``"module:attribute"``) under its group; ``__all__``
is built from that table. Names kept only for backward compatibility go in ``_DEPRECATED``: they still
import, with a ``DeprecationWarning`` naming their full path, and are not in ``__all__``.
"""

from __future__ import annotations

import importlib
import warnings
from importlib import metadata as _metadata
from typing import Any

try:
    __version__: str = _metadata.version("worldflux-jax")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.1.dev0"

_CORE = "worldflux.core"
_CONFIG = "worldflux.core.config"
_FACTORY = "worldflux.factory"

# name -> "module:attribute", grouped as in the reference's ``__all__``.
_EXPORTS: dict[str, str] = {
    # Simple API
    "create_world_model": f"{_FACTORY}:create_world_model",
    "list_models": f"{_FACTORY}:list_models",
    "get_model_info": f"{_FACTORY}:get_model_info",
    "get_config": f"{_FACTORY}:get_config",
    "WorldModelBuilder": f"{_FACTORY}:WorldModelBuilder",
    "MODEL_ALIASES": f"{_FACTORY}:MODEL_ALIASES",
    "MODEL_CATALOG": f"{_FACTORY}:MODEL_CATALOG",
    # Core containers
    "State": f"{_CORE}:State",
    "Trajectory": f"{_CORE}:Trajectory",
    "Batch": f"{_CORE}:Batch",
    "BatchRequest": f"{_CORE}:BatchRequest",
    "BatchProvider": f"{_CORE}:BatchProvider",
    "BatchProviderV2": f"{_CORE}:BatchProviderV2",
    "TransitionProvider": f"{_CORE}:TransitionProvider",
    "SequenceProvider": f"{_CORE}:SequenceProvider",
    "TokenProvider": f"{_CORE}:TokenProvider",
    "VideoProvider": f"{_CORE}:VideoProvider",
    "ModelOutput": f"{_CORE}:ModelOutput",
    "WorldModelOutput": "worldflux.core.output:WorldModelOutput",
    "LossOutput": f"{_CORE}:LossOutput",
    # Payloads
    "ActionPayload": f"{_CORE}:ActionPayload",
    "ActionSequence": f"{_CORE}:ActionSequence",
    "ConditionPayload": f"{_CORE}:ConditionPayload",
    "WorldModelInput": f"{_CORE}:WorldModelInput",
    "normalize_planned_action": f"{_CORE}:normalize_planned_action",
    "PLANNER_HORIZON_KEY": f"{_CORE}:PLANNER_HORIZON_KEY",
    "PLANNER_SEQUENCE_KEY": f"{_CORE}:PLANNER_SEQUENCE_KEY",
    "ACTION_COMPONENTS_KEY": f"{_CORE}:ACTION_COMPONENTS_KEY",
    # Specs
    "ModalityKind": f"{_CORE}:ModalityKind",
    "ModalitySpec": f"{_CORE}:ModalitySpec",
    "ObservationSpec": f"{_CORE}:ObservationSpec",
    "ActionSpec": f"{_CORE}:ActionSpec",
    "ConditionSpec": f"{_CORE}:ConditionSpec",
    "StateSpec": f"{_CORE}:StateSpec",
    "TokenSpec": f"{_CORE}:TokenSpec",
    "PredictionSpec": f"{_CORE}:PredictionSpec",
    "SequenceFieldSpec": f"{_CORE}:SequenceFieldSpec",
    "SequenceLayout": f"{_CORE}:SequenceLayout",
    "ModelIOContract": f"{_CORE}:ModelIOContract",
    "Capability": f"{_CORE}:Capability",
    "ModelMaturity": f"{_CORE}:ModelMaturity",
    # Config
    "LatentType": f"{_CONFIG}:LatentType",
    "DynamicsType": f"{_CONFIG}:DynamicsType",
    "WorldModelConfig": f"{_CONFIG}:WorldModelConfig",
    "DreamerV3Config": f"{_CONFIG}:DreamerV3Config",
    "TDMPC2Config": f"{_CONFIG}:TDMPC2Config",
    "JEPABaseConfig": f"{_CONFIG}:JEPABaseConfig",
    "VJEPA2Config": f"{_CONFIG}:VJEPA2Config",
    "TokenWorldModelConfig": f"{_CONFIG}:TokenWorldModelConfig",
    "DiffusionWorldModelConfig": f"{_CONFIG}:DiffusionWorldModelConfig",
    # Component protocols
    "ComponentSpec": "worldflux.core.interfaces:ComponentSpec",
    "ActionConditioner": "worldflux.core.interfaces:ActionConditioner",
    "AsyncObservationEncoder": "worldflux.core.interfaces:AsyncObservationEncoder",
    "AsyncDynamicsModel": "worldflux.core.interfaces:AsyncDynamicsModel",
    "AsyncDecoder": "worldflux.core.interfaces:AsyncDecoder",
    "AsyncRolloutExecutor": "worldflux.core.interfaces:AsyncRolloutExecutor",
    "DynamicsModel": "worldflux.core.interfaces:DynamicsModel",
    "Decoder": "worldflux.core.interfaces:Decoder",
    "RolloutExecutor": "worldflux.core.interfaces:RolloutExecutor",
    # Planners (CEMPlanner itself lives only in `worldflux.planners`)
    "Planner": "worldflux.planners:Planner",
    "PlannerObjective": "worldflux.planners:PlannerObjective",
    "RewardObjective": "worldflux.planners:RewardObjective",
    # Protocol/registry
    "WorldModel": "worldflux.core.model:WorldModel",
    "OfficialBackendHandle": "worldflux.training.delegated:OfficialBackendHandle",
    "resolve_backend_execution": "worldflux.execution:resolve_backend_execution",
    "JobHandle": "worldflux.training.delegated:JobHandle",
    "JobStatus": "worldflux.training.delegated:JobStatus",
    "WorldModelRegistry": "worldflux.core.registry:WorldModelRegistry",
    "AutoWorldModel": "worldflux.core.registry:AutoWorldModel",
    "AutoConfig": "worldflux.core.registry:AutoConfig",
    # Latent spaces
    "LatentSpace": "worldflux.core.latent_space:LatentSpace",
    "GaussianLatentSpace": "worldflux.core.latent_space:GaussianLatentSpace",
    "CategoricalLatentSpace": "worldflux.core.latent_space:CategoricalLatentSpace",
    "SimNormLatentSpace": "worldflux.core.latent_space:SimNormLatentSpace",
    # Models
    "DreamerV3WorldModel": "worldflux.models:DreamerV3WorldModel",
    "TDMPC2WorldModel": "worldflux.models:TDMPC2WorldModel",
    "JEPABaseWorldModel": "worldflux.models:JEPABaseWorldModel",
    "VJEPA2WorldModel": "worldflux.models:VJEPA2WorldModel",
    "TokenWorldModel": "worldflux.models:TokenWorldModel",
    "DiffusionWorldModel": "worldflux.models:DiffusionWorldModel",
    # Utils
    "set_seed": "worldflux.utils:set_seed",
}

# Deprecated top-level names: name -> "module:attribute" (importable with a DeprecationWarning).
_DEPRECATED: dict[str, str] = {
    "PluginManifest": "worldflux.core.registry:PluginManifest",
    "RolloutEngine": "worldflux.core.interfaces:RolloutEngine",
    "first_action": "worldflux.core.payloads:first_action",
    "is_namespaced_extra_key": "worldflux.core.payloads:is_namespaced_extra_key",
    "DiTSkeletonConfig": f"{_CONFIG}:DiTSkeletonConfig",
    "SSMSkeletonConfig": f"{_CONFIG}:SSMSkeletonConfig",
    "Renderer3DSkeletonConfig": f"{_CONFIG}:Renderer3DSkeletonConfig",
    "PhysicsSkeletonConfig": f"{_CONFIG}:PhysicsSkeletonConfig",
    "GANSkeletonConfig": f"{_CONFIG}:GANSkeletonConfig",
    "DiTSkeletonWorldModel": "worldflux.models.skeletons:DiTSkeletonWorldModel",
    "SSMSkeletonWorldModel": "worldflux.models.skeletons:SSMSkeletonWorldModel",
    "Renderer3DSkeletonWorldModel": "worldflux.models.skeletons:Renderer3DSkeletonWorldModel",
    "PhysicsSkeletonWorldModel": "worldflux.models.skeletons:PhysicsSkeletonWorldModel",
    "GANSkeletonWorldModel": "worldflux.models.skeletons:GANSkeletonWorldModel",
}

# Subpackages that attribute access imports (``worldflux.core``), when they exist.
_SUBPACKAGES = ("core", "training", "agents", "execution", "verify", "cloud")

__all__ = [*_EXPORTS, "execution"]  # the reference lists the `execution` subpackage in its Simple API group


def _resolve(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is not None:
        value = _resolve(target)
        globals()[name] = value
        return value
    target = _DEPRECATED.get(name)
    if target is not None:
        full_path = target.replace(":", ".")
        warnings.warn(
            f"Importing '{name}' from 'worldflux' is deprecated. Use '{full_path}' instead. Will be removed in v0.2.0.",
            DeprecationWarning,
            stacklevel=2,
        )
        return _resolve(target)
    if name in _SUBPACKAGES:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module 'worldflux' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
