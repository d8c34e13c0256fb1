"""The array boundary of ``JaxWorldModel``: reference-layout state dicts (``state_dict`` / ``load_state_dict``) and
the conversion of torch / numpy / JAX inputs into the jitted functions' arrays and of their outputs back
(``_jax_in``, ``_state_in`` / ``_state_out``, ``_action_in``, ``_batch_in``, ``_loss_output``).

``JaxIOMixin`` is a base of ``worldflux.core.jax_model.JaxWorldModel`` and uses its ``params``, ``extras``,
``config``, ``_device`` and the subclass hooks (``_state_dict_arrays``, ``_state_dict_keys``,
``_params_from_state_dict``, ``_complete_state_dict``, ``_state_meta``, ``_KEY_ORDER``).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from worldflux.interop import array_kind, cpu_to_torch, infer_kind, to_jit_input, to_kind, to_numpy, tree_to_kind
from worldflux_jax.torch_layout import StateDictError

from .batch import Batch
from .exceptions import CheckpointError, ShapeMismatchError
from .model import IncompatibleKeys
from .output import DeferredLossOutput, LossOutput
from .payloads import WorldModelInput
from .state import State

__all__ = ["JaxIOMixin", "loss_scalars"]


class JaxIOMixin:
    """State dicts and array conversion of ``JaxWorldModel`` (see the module docstring)."""

    _KEY_ORDER: dict[str, tuple[str, ...]]

    # -- state dicts ----------------------------------------------------------------------------------
    def state_dict(self) -> collections.OrderedDict[str, torch.Tensor]:
        """The reference ``state_dict``: torch tensors (fresh CPU copies) in the reference names and layouts,
        buffers included (``_device_tracker``; DreamerV3 ``reward_head.bins``; TD-MPC2 aliases sharing
        storage with their canonical tensors and the ``_target_q_ensemble.*`` copy)."""
        arrays = self._state_dict_arrays()
        out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        seen: dict[int, torch.Tensor] = {}
        for name, value in arrays.items():
            tensor = seen.get(id(value))
            if tensor is None:
                tensor = torch.from_numpy(np.array(value, dtype=np.float32, copy=True))
                seen[id(value)] = tensor
            out[name] = tensor
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Load a reference-layout state dict (torch tensors or numpy/JAX arrays).

        With ``strict=True`` every key of ``state_dict()`` must be present (buffers may be omitted) and none
        may be unknown. With ``strict=False`` missing tensors keep their current values and unknown keys are
        ignored. Shapes must always match.

        Returns:
            ``IncompatibleKeys(missing_keys, unexpected_keys)``.

        Raises:
            CheckpointError: naming the missing, unexpected or mis-shaped tensors.
        """
        if not isinstance(state_dict, Mapping):
            raise CheckpointError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
        required, optional = self._state_dict_keys()
        known = set(required) | set(optional)
        unexpected = sorted(k for k in state_dict if k not in known)
        missing = sorted(k for k in required if k not in state_dict)
        if strict and (missing or unexpected):
            problems = []
            if missing:
                problems.append(f"missing keys {missing}")
            if unexpected:
                problems.append(f"unexpected keys {unexpected}")
            raise CheckpointError(f"State dict does not match {type(self).__name__}: " + "; ".join(problems))
        provided = {k: _host_array(k, v) for k, v in state_dict.items() if k in known}
        if missing:
            merged: dict[str, Any] = dict(self._state_dict_arrays())
            merged.update(provided)
            self._complete_state_dict(merged, set(provided))
        else:
            merged = provided
        try:
            params, extras = self._params_from_state_dict(merged)
        except StateDictError as exc:
            raise CheckpointError(str(exc)) from exc
        self.params = jax.device_put(params, self._device)
        self.extras = None if extras is None else jax.device_put(extras, self._device)
        return IncompatibleKeys(missing, unexpected)

    # -- array conversion helpers ---------------------------------------------------------------------
    def _jax_in(self, x: Any, dtype: Any = None) -> jax.Array | np.ndarray:
        """`x` as an argument of the jitted functions on the model's device, without copying CPU memory
        (``worldflux.interop.to_jit_input``)."""
        return to_jit_input(x, dtype=dtype, device=self._device)

    def _observation(self, obs: Any) -> Any:
        """The "obs" array of a tensor, a dict with "obs" or a ``WorldModelInput``."""
        if isinstance(obs, WorldModelInput):
            if "obs" not in obs.observations:
                raise ValueError(
                    f"WorldModelInput.observations must contain 'obs' for {type(self).__name__}, "
                    f"got keys {sorted(obs.observations)}"
                )
            return obs.observations["obs"]
        if isinstance(obs, Mapping):
            if "obs" not in obs:
                raise ValueError(f"Observation dict must contain the key 'obs', got keys {sorted(obs)}")
            return obs["obs"]
        if obs is None:
            raise ValueError("obs must be a tensor, a dict with 'obs' or a WorldModelInput, got None")
        return obs

    def _check_obs(self, obs: Any, leading: int, what: str = "obs") -> None:
        """Check ``obs.shape == (*leading axes, *obs_shape)`` (subclasses may relax it)."""
        expected = tuple(self.config.obs_shape)
        got = tuple(obs.shape)
        if len(got) != leading + len(expected) or got[leading:] != expected:
            axes = "B, T" if leading == 2 else "B"
            raise ShapeMismatchError(f"{what} must have shape ({axes}, *{expected})", expected=expected, got=got)

    def _state_in(self, state: State) -> tuple[dict[str, jax.Array], str]:
        """The jitted functions' input state ``{key: array}`` (required keys only) and the state's kind."""
        if not isinstance(state, State):
            raise TypeError(f"state must be a State, got {type(state).__name__}")
        self.validate_state_contract(state)
        tensors = state.tensors
        keys = self.io_contract().required_state_keys
        arrays = {k: self._jax_in(tensors[k], np.float32) for k in keys}
        # The contract check above guarantees a first tensor; its kind is the state's.
        return arrays, array_kind(next(iter(tensors.values()))) or infer_kind(state)

    def _state_out(self, arrays: Mapping[str, Any], kind: str) -> State:
        return State(tensors=self._kind_out(self._ordered(arrays, "state"), kind), meta=dict(self._state_meta))

    def _kind_out(self, values: dict[str, Any], kind: str) -> dict[str, Any]:
        """``tree_to_kind`` of a dict of this model's jitted outputs (JAX arrays on the model's device take the
        direct CPU path to torch)."""
        if kind == "torch" and self._device.platform == "cpu":
            return {
                k: cpu_to_torch(v) if isinstance(v, jax.Array) else tree_to_kind(v, kind) for k, v in values.items()
            }
        return tree_to_kind(values, kind)

    def _ordered(self, values: Mapping[str, Any], what: str) -> dict[str, Any]:
        """`values` with keys in the reference's order for `what` (jitted outputs come back sorted)."""
        return {k: values[k] for k in _key_order(self._KEY_ORDER.get(what, ()), tuple(values))}

    def _action_in(self, action: Any, state: Mapping[str, Any]) -> jax.Array | np.ndarray | None:
        """The validated action array for a step from `state` (None for no action).

        Raises:
            ValidationError: the action does not fit the contract.
            ShapeMismatchError: its leading (batch) axis differs from the state's.
        """
        tensor = self.action_tensor_or_none(action)
        if tensor is None:
            return None
        batch = int(next(iter(state.values())).shape[0])
        shape = tuple(tensor.shape)
        if not shape or shape[0] != batch:
            raise ShapeMismatchError(
                f"action must have a leading batch axis of size {batch} (the state's batch size)",
                expected=(batch, self.config.action_dim),
                got=shape,
            )
        return self._jax_in(tensor)

    def _loss_output(
        self, total: jax.Array, components: Mapping[str, jax.Array], scalars: jax.Array, kind: str
    ) -> LossOutput:
        """``LossOutput`` in `kind`, produced when first read (see ``DeferredLossOutput``); ``metrics`` are
        Python floats.

        Args:
            total: the loss, a scalar array.
            components: the named loss terms, scalar arrays.
            scalars: ``[1 + len(components)]``, `total` then the components in sorted key order, from the same
                jitted call (``loss_scalars``): the host fetches this one vector instead of one array per term.
            kind: the array kind of the returned ``loss`` and ``components``.
        """
        components = self._ordered(components, "loss")
        names = sorted(components)
        if kind == "torch" and self._device.platform == "cpu":
            # The host vector as one tensor: the loss and each term are views of it, instead of a conversion
            # per scalar.
            vector = functools.cache(lambda: cpu_to_torch(scalars, track_origin=False))

            def loss() -> Any:
                return vector()[0]

            def terms() -> dict[str, Any]:
                by_name = dict(zip(names, vector().unbind(0)[1:], strict=True))
                return {k: by_name[k] for k in components}

            host = vector
        else:
            # A CPU array reads as a host view; jax.device_get's tree handling costs 5x more per call.
            on_cpu = self._device.platform == "cpu"

            def loss() -> Any:
                return to_kind(total, kind)

            def terms() -> dict[str, Any]:
                return tree_to_kind(components, kind)

            def host() -> Any:
                return np.asarray(scalars) if on_cpu else np.asarray(jax.device_get(scalars))

        def metrics() -> dict[str, float]:
            values = dict(zip(names, host()[1:].tolist(), strict=True))
            return {k: values[k] for k in components}

        return DeferredLossOutput(loss, terms, metrics)

    def _batch_in(self, batch: Batch | Mapping[str, Any], required: tuple[str, ...]) -> tuple[dict[str, Any], str]:
        """The legacy fields of `batch` (a ``Batch`` or dict) named in `required` (plus terminations when
        present), with dict observations reduced to their "obs" entry."""
        if not isinstance(batch, Batch) and isinstance(batch, Mapping):
            batch = Batch(**batch)
        if not isinstance(batch, Batch):
            raise TypeError(f"batch must be a Batch or a dict, got {type(batch).__name__}")
        fields = {
            "obs": batch.obs if batch.obs is not None else batch.inputs.get("obs"),
            "actions": batch.actions if batch.actions is not None else batch.inputs.get("actions"),
            "rewards": batch.rewards if batch.rewards is not None else batch.targets.get("rewards"),
            "terminations": (
                batch.terminations if batch.terminations is not None else batch.targets.get("terminations")
            ),
        }
        if isinstance(fields["obs"], Mapping):
            if "obs" not in fields["obs"]:
                raise ValueError(f"Batch obs dict must contain 'obs', got keys {sorted(fields['obs'])}")
            fields["obs"] = fields["obs"]["obs"]
        missing = [k for k in required if fields[k] is None]
        if missing:
            raise ValueError(
                f"{type(self).__name__}.loss requires batch fields {list(required)}; missing: {missing}"
            )
        obs = fields["obs"]
        self._check_obs(obs, 2, "batch.obs")
        b, t = int(obs.shape[0]), int(obs.shape[1])
        for name in ("rewards", "terminations"):
            value = fields[name]
            if value is not None and tuple(value.shape) != (b, t):
                raise ShapeMismatchError(
                    f"batch.{name} must have shape (B, T)", expected=(b, t), got=tuple(value.shape)
                )
        actions = fields["actions"]
        if tuple(actions.shape[:2]) != (b, t):
            raise ShapeMismatchError(
                "batch.actions must have shape (B, T, A)", expected=(b, t), got=tuple(actions.shape)
            )
        self._validate_action_tensor(actions)
        kind = array_kind(obs) or "torch"
        return {k: None if v is None else self._jax_in(v) for k, v in fields.items()}, kind


def _host_array(name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(to_numpy(value), dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - anything that is not an array of numbers
        raise CheckpointError(f"State dict entry {name!r} is not a numeric tensor ({type(value).__name__})") from exc


def loss_scalars(
    total: jax.Array, components: Mapping[str, jax.Array]
) -> tuple[jax.Array, Mapping[str, jax.Array], jax.Array]:
    """``(total, components, [total, *components in sorted key order])`` for a jitted loss function: the
    stacked float32 vector is what ``WorldModel._loss_output`` fetches to the host in one transfer."""
    values = [total, *(components[k] for k in sorted(components))]
    return total, components, jnp.stack([jnp.asarray(v, jnp.float32).reshape(()) for v in values])


@functools.lru_cache(maxsize=256)
def _key_order(reference: tuple[str, ...], keys: tuple[str, ...]) -> tuple[str, ...]:
    """`keys` in the `reference` order, keys it does not name last in sorted order."""
    ranked = {k: i for i, k in enumerate(reference)}
    return tuple(sorted(keys, key=lambda k: (ranked.get(k, len(ranked)), k)))
