"""``TDMPC2WorldModel``: the reference TD-MPC2 API (reference §4.4) over ``worldflux_jax.tdmpc2``.

Shapes: B batch, T time, A action_dim, L latent_dim, K num_q_networks.

* ``encode(obs [B, *obs_shape])`` -> State ``latent [B, L]`` (flatten, MLP, SimNorm; ``deterministic`` is
  ignored: the model has no stochastic latents). ``update(state, action, obs)`` = ``encode(obs)``.
* ``transition(state, action [B, A] | None, ..., task_id=None)`` -> ``latent [B, L]`` =
  SimNorm(z + delta(z, a[, task])).
* ``decode(state)`` -> predictions ``reward [B, 1]`` (reward head at the policy action), ``continue`` (ones)
  ``[B, 1]``, ``q_values [K, B, 1]`` (ensemble axis first, as the reference), ``action [B, A]`` (policy).
* ``predict_q(state, action)`` -> ``[K, B]``; ``predict_reward(state, action)`` -> ``[B]``.
* ``rollout(state, actions [T, B, A])`` -> ``Trajectory`` (rewards ``[T, B]``, continues ones ``[T, B]``).
* ``loss(Batch(obs [B, T, ...], actions [B, T, A], rewards [B, T][, terminations [B, T]]))`` ->
  ``LossOutput`` with components ``consistency``, ``reward``, ``td``, ``policy``.
* ``on_after_optimizer_step()``: target ensemble EMA ``target = (1 - tau) * target + tau * online``
  (``tau = config.target_q_tau``); ``loss`` never touches the target.

The target Q ensemble lives in ``extras`` (alias ``target_params``), the pytree of ``params["_q_ensemble"]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from torch import Tensor

from worldflux.core.batch import Batch
from worldflux.core.contracts import tdmpc2_io_contract
from worldflux.core.exceptions import ShapeMismatchError
from worldflux.core.jax_model import JaxWorldModel, loss_scalars
from worldflux.core.output import LossOutput
from worldflux.core.payloads import ActionPayload, ConditionPayload
from worldflux.core.spec import Capability, ModelIOContract
from worldflux.core.state import State
from worldflux.interop import to_kind
from worldflux.models.registry import register_model, register_pretrained_loader
from worldflux_jax.config import TDMPC2Config as CoreTDMPC2Config
from worldflux_jax.tdmpc2 import LOSS_KEYS, TDMPC2, _alias
from worldflux_jax.tdmpc2 import Batch as CoreBatch

__all__ = ["TDMPC2WorldModel"]

_TARGET_PREFIX = "_target_q_ensemble."
_ONLINE_Q_PREFIX = "_q_ensemble."
_BUFFERS = ("_device_tracker",)


def _actions(action: jax.Array | None, batch: int, config: Any) -> jax.Array:
    """Float32 actions ``[..., A]``: zeros when None, one-hot for integer class indices."""
    if action is None:
        return jnp.zeros((batch, config.action_dim), jnp.float32)
    if jnp.issubdtype(action.dtype, jnp.integer):
        return jax.nn.one_hot(action, config.action_dim, dtype=jnp.float32)
    return action.astype(jnp.float32)


def _flat(obs: jax.Array, leading: int) -> jax.Array:
    return obs.reshape(*obs.shape[:leading], -1).astype(jnp.float32)


@register_model("tdmpc2")
class TDMPC2WorldModel(JaxWorldModel):
    """TD-MPC2 world model (SimNorm latent, residual MLP dynamics, Q ensemble, policy prior).

    Args:
        config: a ``TDMPC2Config``.
        seed: seeds parameter initialization (None: drawn from torch's RNG).
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        api_version: ``"v3"`` or ``"v0.2"``; None keeps the default of models built directly (v0.2).

    Example:
        >>> model = TDMPC2WorldModel(TDMPC2Config.from_size("ci", obs_shape=(39,), action_dim=6))
        >>> state = model.encode(torch.zeros(4, 39))
        >>> model.decode(state).predictions["q_values"].shape
        torch.Size([2, 4, 1])
    """

    model_type = "tdmpc2"
    _KEY_ORDER = {"state": ("latent",), "predictions": ("reward", "continue", "q_values", "action"), "loss": LOSS_KEYS}

    # -- hooks ----------------------------------------------------------------------------------------
    @classmethod
    def config_class(cls) -> type[Any]:
        from worldflux.core.config import TDMPC2Config

        return TDMPC2Config

    def _check_config(self, config: Any) -> None:
        if not isinstance(config, CoreTDMPC2Config):
            raise TypeError(f"TDMPC2WorldModel needs a TDMPC2Config, got {type(config).__name__}")

    def _make_core(self, config: Any) -> TDMPC2:
        return TDMPC2(config)

    @staticmethod
    def _init_arrays(core: TDMPC2, seed: jax.Array) -> tuple[Any, Any]:
        params = core.init(jax.random.key(seed))
        return params, core.init_target(params)

    def _capabilities(self, config: Any) -> set[Capability]:
        return {
            Capability.LATENT_DYNAMICS,
            Capability.VALUE,
            Capability.POLICY,
            Capability.REWARD_PRED,
            Capability.CONTINUE_PRED,
        }

    def _composable(self, config: Any) -> set[str]:
        return {"observation_encoder", "action_conditioner", "dynamics_model", "rollout_executor"}

    @classmethod
    def contract_for_config(cls, config: Any) -> ModelIOContract:
        """The reference TD-MPC2 contract, from config values only."""
        return tdmpc2_io_contract(
            obs_shape=config.obs_shape,
            action_spec=config.action_spec,
            latent_dim=config.latent_dim,
            num_q_networks=config.num_q_networks,
            action_dim=config.action_dim,
        )

    @property
    def _state_meta(self) -> dict[str, Any]:
        return {"latent_type": "simnorm"}

    @property
    def target_params(self) -> Any:
        """The target Q ensemble (same pytree as ``params["_q_ensemble"]``); an alias of ``extras``."""
        return self.extras

    @target_params.setter
    def target_params(self, value: Any) -> None:
        self.extras = value

    def _canonical_names(self) -> list[str]:
        names = self.__dict__.get("_names_cache")
        if names is None:
            names = self.core.parameter_names()
            self.__dict__["_names_cache"] = names
        return names

    def _state_dict_arrays(self) -> dict[str, np.ndarray]:
        state = self.core.to_torch_state_dict(self.params, self.extras)
        for name in self._canonical_names():
            state[_alias(name)] = state[name]  # one array under both names: torch.save stores it once
        return state

    def _state_dict_keys(self) -> tuple[list[str], list[str]]:
        names = self._canonical_names()
        aliases = [_alias(n) for n in names]
        target = [_TARGET_PREFIX + n[len(_ONLINE_Q_PREFIX):] for n in names if n.startswith(_ONLINE_Q_PREFIX)]
        return names + aliases + target, list(_BUFFERS)

    def _complete_state_dict(self, merged: dict[str, Any], provided: set[str]) -> None:
        for name in self._canonical_names():
            alias = _alias(name)
            if name in provided and alias not in provided:
                merged[alias] = merged[name]
            elif alias in provided and name not in provided:
                merged[name] = merged[alias]

    def _params_from_state_dict(self, state_dict: Mapping[str, np.ndarray]) -> tuple[Any, Any]:
        return self.core.from_torch_state_dict(state_dict)

    def _check_obs(self, obs: Any, leading: int, what: str = "obs") -> None:
        """TD-MPC2 flattens observations: ``obs [*leading, ...]`` must hold ``prod(obs_shape)`` values per sample."""
        size = math.prod(self.config.obs_shape)
        shape = tuple(obs.shape)
        if len(shape) <= leading or math.prod(shape[leading:]) != size:
            axes = "B, T" if leading == 2 else "B"
            raise ShapeMismatchError(
                f"{what} must have shape ({axes}, *{tuple(self.config.obs_shape)}) (flattened to {size} values)",
                expected=tuple(self.config.obs_shape),
                got=shape,
            )

    # -- jitted array steps (the jitted functions are the module-level `_*` functions of the core) ----------
    def _encode(self, obs: jax.Array, deterministic: bool) -> Mapping[str, jax.Array]:
        return self._jit("encode", _encode)(self.params, obs)

    def transition(
        self,
        state: State,
        action: ActionPayload | Tensor | None,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        task_id: Tensor | None = None,
    ) -> State:
        """Predict next latent: ``z' = SimNorm(z + delta(z, a[, task]))``; state ``latent [B, L]``, action
        ``[B, A]`` (None: zeros), optional ``task_id [B]`` (integers; used when ``config.num_tasks > 1``)."""
        self._validate_conditions(conditions)
        arrays, kind = self._state_in(state)
        task = None if task_id is None else self._jax_in(task_id, np.int32)
        out = self._jit("transition", _transition)(self.params, arrays, self._action_in(action, arrays), task)
        return self._state_out(out, kind)

    def _transition(
        self, state: Mapping[str, jax.Array], action: jax.Array | None, deterministic: bool
    ) -> Mapping[str, jax.Array]:
        return self._jit("transition", _transition)(self.params, dict(state), action, None)

    def _update(
        self, state: Mapping[str, jax.Array], action: jax.Array | None, obs: jax.Array
    ) -> Mapping[str, jax.Array]:
        return self._encode(obs, False)

    def _decode(self, state: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return self._jit("decode", TDMPC2.decode)(self.params, dict(state))

    def _rollout(
        self, state: Mapping[str, jax.Array], actions: jax.Array, deterministic: bool
    ) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
        return self._jit("rollout", _rollout)(self.params, dict(state), actions)

    def predict_q(self, state: State, action: ActionPayload | Tensor) -> Tensor:
        """Q ensemble at ``(latent [B, L], action [B, A])``: ``[K, B]`` in the state's array kind."""
        arrays, kind = self._state_in(state)
        out = self._jit("predict_q", _predict_q)(self.params, arrays, self._action_in(action, arrays))
        return to_kind(out, kind)

    def predict_reward(self, state: State, action: ActionPayload | Tensor) -> Tensor:
        """Reward head at ``(latent [B, L], action [B, A])``: ``[B]`` in the state's array kind."""
        arrays, kind = self._state_in(state)
        out = self._jit("predict_reward", _predict_reward)(self.params, arrays, self._action_in(action, arrays))
        return to_kind(out, kind)

    def loss(self, batch: Batch) -> LossOutput:
        """The reference TD-MPC2 loss (reference §4.4), with the current target ensemble.

        Args:
            batch: a ``Batch`` (or dict of its fields) with ``obs [B, T, *obs_shape]``, ``actions [B, T, A]``,
                ``rewards [B, T]`` and optionally ``terminations [B, T]``.

        Returns:
            ``LossOutput`` with ``loss`` = consistency + reward + td + policy (the config's coefficients),
            ``components`` ``consistency``, ``reward``, ``td``, ``policy`` in the batch's array kind, and
            ``metrics`` as Python floats (one device-to-host transfer). Values only: training uses the jitted
            train step (``core.train_loss`` with ``extras`` as the target).

        Raises:
            ValueError: a required field is missing.
            ShapeMismatchError: a field has the wrong shape.
        """
        arrays, kind = self._batch_in(batch, ("obs", "actions", "rewards"))
        total, components, scalars = self._jit("loss", _loss)(self.params, self.extras, arrays)
        return self._loss_output(total, components, scalars, kind)

    def core_batch(self, arrays: Mapping[str, jax.Array | None]) -> CoreBatch:
        """The core's ``Batch`` (flattened float32 obs, one-hot actions) from ``{"obs", "actions", "rewards"
        [, "terminations"]}`` JAX arrays; jit-friendly (used by the loss and by trainers)."""
        return core_batch(self.core, arrays)

    def on_after_optimizer_step(self) -> None:
        """EMA of the target Q ensemble toward the online one (``tau = config.target_q_tau``)."""
        self.extras = self._jit("target_ema", _target_ema)(self.extras, self.params["_q_ensemble"])


def _encode(core: TDMPC2, params: Any, obs: jax.Array) -> dict[str, jax.Array]:
    return core.encode(params, _flat(obs, 1))


def _transition(
    core: TDMPC2, params: Any, state: dict, action: jax.Array | None, task_id: jax.Array | None
) -> dict[str, jax.Array]:
    return core.transition(params, state, _actions(action, state["latent"].shape[0], core.config), task_id)


def _rollout(core: TDMPC2, params: Any, state: dict, actions: jax.Array) -> tuple[dict, jax.Array, jax.Array]:
    return core.rollout(params, state, _actions(actions, state["latent"].shape[0], core.config))


def _predict_q(core: TDMPC2, params: Any, state: dict, action: jax.Array | None) -> jax.Array:
    return core.predict_q(params, state, _actions(action, state["latent"].shape[0], core.config))


def _predict_reward(core: TDMPC2, params: Any, state: dict, action: jax.Array | None) -> jax.Array:
    return core.predict_reward(params, state, _actions(action, state["latent"].shape[0], core.config))


def _loss(
    core: TDMPC2, params: Any, target: Any, arrays: dict
) -> tuple[jax.Array, Mapping[str, jax.Array], jax.Array]:
    return loss_scalars(*core.loss(params, target, core_batch(core, arrays)))


def _target_ema(core: TDMPC2, target: Any, online: Any) -> Any:
    tau = core.config.target_q_tau
    return jax.tree.map(lambda old, new: (1.0 - tau) * old + tau * new, target, online)


def core_batch(core: TDMPC2, arrays: Mapping[str, jax.Array | None]) -> CoreBatch:
    """The core's ``Batch`` (flattened float32 obs, one-hot actions) from ``{"obs", "actions", "rewards"
    [, "terminations"]}``."""
    obs = arrays["obs"]
    terminations = arrays.get("terminations")
    return CoreBatch(
        _flat(obs, 2),
        _actions(arrays["actions"], obs.shape[0], core.config),
        arrays["rewards"].astype(jnp.float32),
        None if terminations is None else terminations.astype(jnp.float32),
    )


@register_pretrained_loader("tdmpc2")
def load_tdmpc2(path: str, *, device: Any = None) -> TDMPC2WorldModel:
    """Registry loader: ``TDMPC2WorldModel.from_pretrained(path)``, moved to `device` when given."""
    model = TDMPC2WorldModel.from_pretrained(path)
    return model if device is None else model.to(device)  # type: ignore[return-value]
