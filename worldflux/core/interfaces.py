"""Component protocols of the open ``WorldModel`` (reference ``worldflux.core.interfaces``).

A ``WorldModel`` may be assembled from components instead of overriding ``encode`` / ``transition`` /
``decode`` / ``rollout``: ``observation_encoder.encode(observations) -> State``,
``action_conditioner.condition(state, action, conditions) -> dict``,
``dynamics_model.transition(state, conditioned, deterministic=False) -> State``,
``decoder_module.decode(state, conditions=None) -> dict[str, Tensor]`` and
``rollout_executor.rollout_open_loop(model, state, actions, conditions=None, deterministic=False)``.

Each has an asynchronous twin (``encode_async``, ``transition_async``, ``decode_async``,
``rollout_open_loop_async``). ``ensure_async_*`` wraps a component so that it always offers the async method:
its own when it has one, else the synchronous method run in a worker thread (``asyncio.to_thread``), which
keeps the event loop free while a step computes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .payloads import ActionPayload, ConditionPayload
from .state import State

__all__ = [
    "ActionConditioner",
    "AsyncDecoder",
    "AsyncDecoderAdapter",
    "AsyncDynamicsModel",
    "AsyncDynamicsModelAdapter",
    "AsyncObservationEncoder",
    "AsyncObservationEncoderAdapter",
    "AsyncRolloutExecutor",
    "AsyncRolloutExecutorAdapter",
    "ComponentSpec",
    "Decoder",
    "DynamicsModel",
    "ObservationEncoder",
    "RolloutEngine",
    "RolloutExecutor",
    "ensure_async_decoder",
    "ensure_async_dynamics_model",
    "ensure_async_observation_encoder",
    "ensure_async_rollout_executor",
]


@dataclass(frozen=True)
class ComponentSpec:
    """Metadata of a component: ``name``, ``component_type``, ``version`` and a free ``config`` dict."""

    name: str
    component_type: str
    version: str = "v0"
    config: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ObservationEncoder(Protocol):
    def encode(self, observations: dict[str, Any]) -> State: ...


@runtime_checkable
class AsyncObservationEncoder(Protocol):
    async def encode_async(self, observations: dict[str, Any]) -> State: ...


@runtime_checkable
class ActionConditioner(Protocol):
    def condition(
        self, state: State, action: ActionPayload | None, conditions: ConditionPayload | None = None
    ) -> dict[str, Any]: ...


@runtime_checkable
class DynamicsModel(Protocol):
    def transition(self, state: State, conditioned: dict[str, Any], deterministic: bool = False) -> State: ...


@runtime_checkable
class AsyncDynamicsModel(Protocol):
    async def transition_async(
        self, state: State, conditioned: dict[str, Any], deterministic: bool = False
    ) -> State: ...


@runtime_checkable
class Decoder(Protocol):
    def decode(self, state: State, conditions: ConditionPayload | None = None) -> dict[str, Any]: ...


@runtime_checkable
class AsyncDecoder(Protocol):
    async def decode_async(self, state: State, conditions: ConditionPayload | None = None) -> dict[str, Any]: ...


@runtime_checkable
class RolloutExecutor(Protocol):
    def rollout_open_loop(
        self, model: Any, initial_state: State, actions: Any, conditions: Any = None, deterministic: bool = False
    ) -> Any: ...


@runtime_checkable
class RolloutEngine(Protocol):
    """Deprecated predecessor of ``RolloutExecutor`` (the ``model.rollout_engine`` slot, kept from v0.2):
    ``rollout(model, initial_state, action_sequence, conditions=None, deterministic=False, mode="autoregressive")``.
    ``worldflux.core.rollout.TransitionDecodeRollout`` implements both protocols."""

    def rollout(
        self,
        model: Any,
        initial_state: State,
        action_sequence: Any,
        conditions: Any = None,
        deterministic: bool = False,
        mode: str = "autoregressive",
    ) -> Any: ...


@runtime_checkable
class AsyncRolloutExecutor(Protocol):
    async def rollout_open_loop_async(
        self, model: Any, initial_state: State, actions: Any, conditions: Any = None, deterministic: bool = False
    ) -> Any: ...


class _AsyncAdapter:
    """An async view of a synchronous component: ``<sync>_async`` runs ``<sync>`` in a worker thread."""

    _sync_name = ""

    def __init__(self, component: Any) -> None:
        self.component = component

    async def _call(self, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.component, self._sync_name), *args, **kwargs)


class AsyncObservationEncoderAdapter(_AsyncAdapter):
    _sync_name = "encode"

    async def encode_async(self, observations: dict[str, Any]) -> State:
        return await self._call(observations)


class AsyncDynamicsModelAdapter(_AsyncAdapter):
    _sync_name = "transition"

    async def transition_async(self, state: State, conditioned: dict[str, Any], deterministic: bool = False) -> State:
        return await self._call(state, conditioned, deterministic=deterministic)


class AsyncDecoderAdapter(_AsyncAdapter):
    _sync_name = "decode"

    async def decode_async(self, state: State, conditions: ConditionPayload | None = None) -> dict[str, Any]:
        return await self._call(state, conditions=conditions)


class AsyncRolloutExecutorAdapter(_AsyncAdapter):
    _sync_name = "rollout_open_loop"

    async def rollout_open_loop_async(
        self, model: Any, initial_state: State, actions: Any, conditions: Any = None, deterministic: bool = False
    ) -> Any:
        return await self._call(
            model, initial_state, actions, conditions=conditions, deterministic=deterministic
        )


def _ensure(component: Any, async_name: str, adapter: type[_AsyncAdapter]) -> Any:
    if component is None:
        return None
    if callable(getattr(component, async_name, None)):
        return component
    return adapter(component)


def ensure_async_observation_encoder(component: Any) -> Any:
    """`component` if it has ``encode_async``, else an adapter running its ``encode`` in a thread (None stays None)."""
    return _ensure(component, "encode_async", AsyncObservationEncoderAdapter)


def ensure_async_dynamics_model(component: Any) -> Any:
    """`component` if it has ``transition_async``, else a thread adapter of its ``transition``."""
    return _ensure(component, "transition_async", AsyncDynamicsModelAdapter)


def ensure_async_decoder(component: Any) -> Any:
    """`component` if it has ``decode_async``, else a thread adapter of its ``decode``."""
    return _ensure(component, "decode_async", AsyncDecoderAdapter)


def ensure_async_rollout_executor(component: Any) -> Any:
    """`component` if it has ``rollout_open_loop_async``, else a thread adapter of its ``rollout_open_loop``."""
    return _ensure(component, "rollout_open_loop_async", AsyncRolloutExecutorAdapter)
