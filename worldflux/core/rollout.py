"""Open-loop imagination over a world model's ``transition`` and ``decode``.

* ``open_loop_rollout(model, initial_state, actions, conditions=None, deterministic=False) -> Trajectory``:
  for each action step ``state = model.transition(state, a_t)``, ``model.decode(state)``; collects the
  ``"reward"`` / ``"continue"`` predictions (stacked and squeezed to ``[T, B]``). ``actions``: a tensor
  ``[T, B, A]``, an ``ActionSequence`` (tensor or per-step payloads) or None (T = 0). This is
  ``WorldModel.rollout``'s default loop.
* ``TransitionDecodeRollout`` — a rollout component that runs that loop for any ``WorldModel``; it satisfies both
  the ``RolloutExecutor`` protocol (``rollout_open_loop(model, state, actions, conditions=None,
  deterministic=False)``) and the deprecated ``RolloutEngine`` protocol (``rollout(model, state,
  action_sequence, conditions=None, deterministic=False, mode="autoregressive")``; see
  ``worldflux.core.interfaces``). A planner ``ActionPayload`` is normalised first (``normalize_planned_action``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .payloads import ActionPayload, ActionSequence, normalize_planned_action
from .state import State
from .trajectory import Trajectory

__all__ = ["TransitionDecodeRollout", "action_steps", "open_loop_rollout"]


def action_steps(action_sequence: Any) -> list[Any]:
    """The per-step actions of a rollout input: rows of a ``[T, B, A]`` tensor or of an ``ActionSequence``'s
    tensor, its payloads, or nothing (None / an empty sequence)."""
    if action_sequence is None:
        return []
    if isinstance(action_sequence, ActionSequence):
        if action_sequence.tensor is not None:
            return list(action_sequence.tensor.unbind(0))
        return list(action_sequence.payloads or [])
    if not hasattr(action_sequence, "shape"):
        raise TypeError(
            "action_sequence must be a tensor [T, B, A], an ActionSequence, an ActionPayload or None, "
            f"got {type(action_sequence).__name__}"
        )
    return list(action_sequence.unbind(0)) if isinstance(action_sequence, Tensor) else list(action_sequence)


def open_loop_rollout(
    model: Any, initial_state: State, actions: Any, conditions: Any = None, deterministic: bool = False
) -> Trajectory:
    """Roll `model` forward from `initial_state` through `actions` (see the module docstring)."""
    steps = action_steps(actions)
    states, rewards, continues = [initial_state], [], []
    state = initial_state
    for action_t in steps:
        state = model.transition(state, action_t, conditions=conditions, deterministic=deterministic)
        states.append(state)
        predictions = model.decode(state, conditions=conditions).predictions
        if "reward" in predictions:
            rewards.append(predictions["reward"])
        if "continue" in predictions:
            continues.append(predictions["continue"])
    tensor = actions.tensor if isinstance(actions, ActionSequence) else actions
    if tensor is None:
        tensor = torch.zeros(len(steps), initial_state.batch_size, 0, device=initial_state.device)
    return Trajectory(
        states=states,
        actions=tensor,
        rewards=torch.stack(rewards, 0).squeeze(-1) if rewards else None,
        continues=torch.stack(continues, 0).squeeze(-1) if continues else None,
    )


class TransitionDecodeRollout:
    """Autoregressive rollouts of any ``WorldModel`` through its ``transition`` and ``decode``.

    Attach as ``model.rollout_executor = TransitionDecodeRollout()`` (or the deprecated
    ``model.rollout_engine``) or call ``TransitionDecodeRollout().rollout(model, state, actions)`` directly.
    """

    def rollout(
        self,
        model: Any,
        initial_state: State,
        action_sequence: ActionSequence | ActionPayload | Tensor | None,
        conditions: Any = None,
        deterministic: bool = False,
        mode: str = "autoregressive",
    ) -> Trajectory:
        """``Trajectory`` of T + 1 states, the actions and ``[T, B]`` rewards / continues (when decoded).

        Raises:
            ValueError: `mode` other than ``"autoregressive"`` (re-planning belongs to planners).
        """
        if mode != "autoregressive":
            raise ValueError(f"TransitionDecodeRollout only supports mode='autoregressive', got {mode!r}")
        if isinstance(action_sequence, ActionPayload):
            version = model._get_api_version() if hasattr(model, "_get_api_version") else "v0.2"
            action_sequence = normalize_planned_action(action_sequence, api_version=version)
        return open_loop_rollout(model, initial_state, action_sequence, conditions, deterministic)

    def rollout_open_loop(
        self, model: Any, initial_state: State, actions: Any, conditions: Any = None, deterministic: bool = False
    ) -> Trajectory:
        """The ``RolloutExecutor`` protocol's entry point (same as ``rollout``)."""
        return self.rollout(model, initial_state, actions, conditions=conditions, deterministic=deterministic)
