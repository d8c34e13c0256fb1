"""Trajectory representation for imagination rollouts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .deferred import produce_field
from .exceptions import StateError
from .spec import SequenceLayout, StateSpec
from .state import State

__all__ = ["DeferredTrajectory", "Trajectory"]


def _leading(tensor: Tensor, name: str) -> int:
    if tensor.dim() == 0:
        raise StateError(f"Trajectory {name} must have a leading time axis, got a scalar")
    return int(tensor.shape[0])


@dataclass
class Trajectory:
    """Imagination rollout trajectory in latent space.

    Attributes:
        states: List of latent states [T+1] (initial + T steps).
        actions: Action tensor [T, batch, action_dim].
        rewards: Predicted rewards [T, batch] (optional).
        values: Predicted values [T+1, batch] (optional).
        continues: Continue probabilities (or logits, model dependent) [T, batch] (optional).
        state_spec: Optional contract of the state tensors.
        sequence_layout: Optional axis layout of the trajectory fields.

    The trajectory maintains the invariant that ``len(states) == actions.shape[0] + 1``, representing the
    initial state plus one state per action taken; violations raise ``StateError`` at construction.
    """

    states: list[State]
    actions: Tensor
    rewards: Tensor | None = None
    values: Tensor | None = None
    continues: Tensor | None = None
    state_spec: StateSpec | None = None
    sequence_layout: SequenceLayout | None = None

    def __post_init__(self) -> None:
        self._check_invariants()

    def _check_invariants(self) -> None:
        if not self.states:
            raise StateError("Trajectory must have at least one state")
        num_states = len(self.states)
        horizon = _leading(self.actions, "actions")
        if num_states != horizon + 1:
            raise StateError(
                f"Trajectory state/action mismatch: {num_states} states but {horizon} actions. "
                f"Expected {horizon + 1} states (initial + one per action)."
            )
        try:
            batch = self.states[0].batch_size
        except ValueError as exc:
            raise StateError(f"Trajectory state[0] is invalid: {exc}") from exc
        for index, state in enumerate(self.states[1:], start=1):
            try:
                state_batch = state.batch_size
            except ValueError as exc:
                raise StateError(f"Trajectory state[{index}] is invalid: {exc}") from exc
            if state_batch != batch:
                raise StateError(
                    f"Inconsistent batch size in trajectory: state[0] has batch_size={batch}, "
                    f"state[{index}] has batch_size={state_batch}"
                )
        if self.actions.dim() < 2 or int(self.actions.shape[1]) != batch:
            got = tuple(self.actions.shape)
            raise StateError(f"Actions must be [T, batch, ...] with batch={batch} matching the states, got shape {got}")
        for name, tensor, expected in (
            ("Rewards", self.rewards, horizon),
            ("Values", self.values, num_states),
            ("Continues", self.continues, horizon),
        ):
            if tensor is not None and _leading(tensor, name.lower()) != expected:
                reference = "states" if name == "Values" else "actions"
                raise StateError(
                    f"{name} length ({int(tensor.shape[0])}) doesn't match {reference} length ({expected})"
                )

    def __len__(self) -> int:
        """Number of states (T + 1)."""
        return len(self.states)

    @property
    def horizon(self) -> int:
        """Number of actions T."""
        return int(self.actions.shape[0])

    @property
    def batch_size(self) -> int:
        """Batch size B of the states."""
        return self.states[0].batch_size

    def to_tensor(self, key: str) -> Tensor:
        """Stack state tensor ``key`` across time: [T+1, batch, ...].

        Raises:
            KeyError: a state lacks ``key``.
        """
        missing = [i for i, s in enumerate(self.states) if key not in s.tensors]
        if missing:
            raise KeyError(f"State tensor {key!r} is missing from trajectory states {missing}")
        return torch.stack([s.tensors[key] for s in self.states], dim=0)

    def _map(self, fn: Callable[[Any], Any]) -> Trajectory:
        """Apply ``fn`` (a State/Tensor method such as ``.to``/``.detach``) to every state and tensor."""
        return Trajectory(
            states=[fn(s) for s in self.states],
            actions=fn(self.actions),
            rewards=None if self.rewards is None else fn(self.rewards),
            values=None if self.values is None else fn(self.values),
            continues=None if self.continues is None else fn(self.continues),
            state_spec=self.state_spec,
            sequence_layout=self.sequence_layout,
        )

    def to(self, device: torch.device | str) -> Trajectory:
        """Copy with every state and tensor moved to ``device``."""
        return self._map(lambda x: x.to(device))

    def detach(self) -> Trajectory:
        """Copy with every state and tensor detached from the autograd graph."""
        return self._map(lambda x: x.detach())


def _deferred_field(name: str) -> property:
    """A field of ``DeferredTrajectory``: produced by its producer on first read, then stored."""

    def get(self: DeferredTrajectory) -> Any:
        return produce_field(self, name)

    def set(self: DeferredTrajectory, value: Any) -> None:
        self.__dict__[name] = value

    return property(get, set, doc=f"``Trajectory.{name}``, produced on first read.")


class DeferredTrajectory(Trajectory):
    """A ``Trajectory`` whose ``states``, ``rewards`` and ``continues`` are produced on first read.

    ``WorldModel.rollout`` returns one so that the call returns as soon as the rollout is dispatched, and
    so that fields nobody reads are never built: a planner that reads only ``rewards`` skips the T per-step
    ``State`` objects. Reading a field waits for the rollout (as reading any JAX result does) and gives
    exactly what a ``Trajectory`` holds; the invariants hold by construction (every state is the initial one
    or a step of one stacked ``[T, B, ...]`` output). Pickling or copying yields a plain ``Trajectory``;
    ``dataclasses.replace`` and ``to``/``detach`` build validated ones.

    Build one with :meth:`deferred`; constructed with ``Trajectory``'s own arguments it behaves as one.
    """

    states = _deferred_field("states")  # type: ignore[assignment]
    rewards = _deferred_field("rewards")  # type: ignore[assignment]
    continues = _deferred_field("continues")  # type: ignore[assignment]

    @classmethod
    def deferred(
        cls,
        *,
        actions: Any,
        states: Callable[[], list[State]],
        rewards: Callable[[], Any],
        continues: Callable[[], Any],
    ) -> DeferredTrajectory:
        """A trajectory with the given `actions` ``[T, B, A]`` whose other fields come from the producers,
        each called once, on the first read of its field (``values``, ``state_spec`` and ``sequence_layout``
        are None)."""
        trajectory = cls.__new__(cls)
        trajectory.__dict__.update(
            actions=actions,
            values=None,
            state_spec=None,
            sequence_layout=None,
            _producers={"states": states, "rewards": rewards, "continues": continues},
        )
        return trajectory

    def __reduce__(self) -> tuple[type[Trajectory], tuple[Any, ...]]:
        return Trajectory, (
            self.states,
            self.actions,
            self.rewards,
            self.values,
            self.continues,
            self.state_spec,
            self.sequence_layout,
        )
