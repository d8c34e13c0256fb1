"""Reference I/O contracts of the DreamerV3 and TD-MPC2 world models, built from plain config values.

The model classes call these from ``io_contract()``. The contracts reproduce the reference
implementation's field values exactly, so ``contract_fingerprint`` of the result equals the fingerprint the
reference records in ``worldflux_meta.json`` (e.g. DreamerV3 size12m with obs (3, 64, 64) and a 6-dim
continuous action gives ``0398b927...``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .exceptions import ContractValidationError
from .spec import (
    ActionSpec,
    ConditionSpec,
    ModalityKind,
    ModalitySpec,
    ModelIOContract,
    ObservationSpec,
    PredictionSpec,
    SequenceLayout,
    StateSpec,
)

__all__ = ["action_spec_from_config", "dreamer_io_contract", "family_io_contract", "tdmpc2_io_contract"]

# Shared sequence layout of both reference families: batch-major, time second.
_SEQUENCE_AXES: dict[str, str] = {
    "obs": "BT...",
    "actions": "BT...",
    "rewards": "BT",
    "terminations": "BT",
    "next_obs": "BT...",
}


def action_spec_from_config(action_spec: Mapping[str, Any]) -> ActionSpec:
    """Build an ``ActionSpec`` from the normalized config dict ``{"kind", "dim", "discrete"[, "num_actions"]}``.

    A discrete spec without ``num_actions`` uses ``dim`` (as the reference does).

    Raises:
        ContractValidationError: a required key is missing, or the values form an invalid ActionSpec.
    """
    missing = [key for key in ("kind", "dim") if key not in action_spec]
    if missing:
        raise ContractValidationError(
            f"action_spec is missing keys {missing}; expected a dict with 'kind', 'dim' and optionally "
            f"'discrete'/'num_actions', got {dict(action_spec)}"
        )
    kind = str(action_spec["kind"])
    dim = int(action_spec["dim"])
    discrete = bool(action_spec.get("discrete", kind == "discrete"))
    num_actions = action_spec.get("num_actions")
    if discrete and num_actions is None:
        num_actions = dim
    return ActionSpec(
        kind=kind,
        dim=dim,
        discrete=discrete,
        num_actions=None if num_actions is None else int(num_actions),
    )


def _shape(values: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def dreamer_io_contract(
    obs_shape: Sequence[int],
    action_spec: Mapping[str, Any],
    deter_dim: int,
    stoch_discrete: int,
    stoch_classes: int,
    encoder_type: str,
) -> ModelIOContract:
    """DreamerV3 contract.

    obs modality "obs" (image when ``encoder_type == "cnn"``, else vector) of shape ``obs_shape``; state
    ``deter`` [deter_dim] and ``stoch`` [stoch_discrete, stoch_classes]; predictions ``obs`` (obs_shape),
    ``reward`` (1,), ``continue`` (1,); batch layout "BT..."/"BT"; required batch keys obs, actions, rewards,
    terminations; required state keys deter, stoch; no condition extras.
    """
    obs = _shape(obs_shape)
    obs_kind = ModalityKind.IMAGE if encoder_type == "cnn" else ModalityKind.VECTOR
    return ModelIOContract(
        observation_spec=ObservationSpec(modalities={"obs": ModalitySpec(kind=obs_kind, shape=obs)}),
        action_spec=action_spec_from_config(action_spec),
        state_spec=StateSpec(
            tensors={
                "deter": ModalitySpec(kind=ModalityKind.VECTOR, shape=(int(deter_dim),)),
                "stoch": ModalitySpec(kind=ModalityKind.VECTOR, shape=(int(stoch_discrete), int(stoch_classes))),
            }
        ),
        prediction_spec=PredictionSpec(
            tensors={
                "obs": ModalitySpec(kind=obs_kind, shape=obs),
                "reward": ModalitySpec(kind=ModalityKind.VECTOR, shape=(1,)),
                "continue": ModalitySpec(kind=ModalityKind.VECTOR, shape=(1,)),
            }
        ),
        condition_spec=ConditionSpec(allowed_extra_keys=()),
        sequence_layout=SequenceLayout(axes_by_field=dict(_SEQUENCE_AXES)),
        required_batch_keys=("obs", "actions", "rewards", "terminations"),
        required_state_keys=("deter", "stoch"),
    )


def tdmpc2_io_contract(
    obs_shape: Sequence[int],
    action_spec: Mapping[str, Any],
    latent_dim: int,
    num_q_networks: int,
    action_dim: int,
) -> ModelIOContract:
    """TD-MPC2 contract.

    obs modality "obs" (vector) of shape ``obs_shape``; state ``latent`` [latent_dim]; predictions
    ``reward`` (1,), ``continue`` (1,), ``q_values`` (num_q_networks, 1), ``action`` (action_dim,); batch
    layout "BT..."/"BT"; required batch keys obs, actions, rewards (terminations optional); required state
    key latent; no condition extras.
    """
    return ModelIOContract(
        observation_spec=ObservationSpec(
            modalities={"obs": ModalitySpec(kind=ModalityKind.VECTOR, shape=_shape(obs_shape))}
        ),
        action_spec=action_spec_from_config(action_spec),
        state_spec=StateSpec(tensors={"latent": ModalitySpec(kind=ModalityKind.VECTOR, shape=(int(latent_dim),))}),
        prediction_spec=PredictionSpec(
            tensors={
                "reward": ModalitySpec(kind=ModalityKind.VECTOR, shape=(1,)),
                "continue": ModalitySpec(kind=ModalityKind.VECTOR, shape=(1,)),
                "q_values": ModalitySpec(kind=ModalityKind.VECTOR, shape=(int(num_q_networks), 1)),
                "action": ModalitySpec(kind=ModalityKind.VECTOR, shape=(int(action_dim),)),
            }
        ),
        condition_spec=ConditionSpec(allowed_extra_keys=()),
        sequence_layout=SequenceLayout(axes_by_field=dict(_SEQUENCE_AXES)),
        required_batch_keys=("obs", "actions", "rewards"),
        required_state_keys=("latent",),
    )


def family_io_contract(
    obs_shape: Sequence[int],
    action_spec: Mapping[str, Any],
    state_shapes: Mapping[str, Sequence[int]],
    prediction_shapes: Mapping[str, Sequence[int]],
) -> ModelIOContract:
    """Contract of an experimental family (JEPA, V-JEPA 2, token, diffusion): obs modality "obs" (image for
    3-D shapes, video for 4-D, else vector); the given state tensors (all required) and predictions (an
    ``"obs"`` prediction has the observation's kind); batch layout "BT..."/"BT"; required batch keys obs,
    actions, rewards (terminations optional); no condition extras."""
    obs = _shape(obs_shape)
    obs_kind = {3: ModalityKind.IMAGE, 4: ModalityKind.VIDEO}.get(len(obs), ModalityKind.VECTOR)

    def spec(name: str, shape: Sequence[int]) -> ModalitySpec:
        return ModalitySpec(kind=obs_kind if name == "obs" else ModalityKind.VECTOR, shape=_shape(shape))

    return ModelIOContract(
        observation_spec=ObservationSpec(modalities={"obs": ModalitySpec(kind=obs_kind, shape=obs)}),
        action_spec=action_spec_from_config(action_spec),
        state_spec=StateSpec(tensors={k: spec(k, v) for k, v in state_shapes.items()}),
        prediction_spec=PredictionSpec(tensors={k: spec(k, v) for k, v in prediction_shapes.items()}),
        condition_spec=ConditionSpec(allowed_extra_keys=()),
        sequence_layout=SequenceLayout(axes_by_field=dict(_SEQUENCE_AXES)),
        required_batch_keys=("obs", "actions", "rewards"),
        required_state_keys=tuple(state_shapes),
    )
