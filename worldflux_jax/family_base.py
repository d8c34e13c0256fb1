"""What the experimental families (JEPA, V-JEPA 2, token, diffusion) share on top of `worldflux_jax.family`.

`ExperimentalFamily` implements the model-family interface from a few family hooks:

| hook | meaning |
|---|---|
| `modules` | `{name: flax module}`; `params[name]` holds each module's parameters |
| `init_inputs()` | `{name: example args}` for `Module.init` |
| `target_module` | name of the module tracked by an EMA target (`extras`), or None |
| `initial_state(B)`, `encode(params, obs)` | states: dicts of `[B, ...]` float32 arrays |
| `transition(params, state, action, key, deterministic)` | the next state (`key` may be None if deterministic) |
| `predict_reward(params, state) -> [B]` | reward of arriving in `state` |
| `decode(params, state) -> {name: [B, ...]}` | predictions |
| `loss(params, extras, batch, key) -> (total, components)` | the training objective |

and provides the rest: `init`, `param_shapes`, `init_extras` / `post_update` (EMA with `ema_decay`),
`make_batch`, `rollout` (`lax.scan`), `planning_model`, and the torch state dict (`torch_layout` names, the
target under `_target_<module>.`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from worldflux_jax import torch_layout as tl
from worldflux_jax.family import float_obs, one_hot_actions
from worldflux_jax.tdmpc2 import Batch

Params = Any
State = dict[str, jax.Array]

__all__ = ["Batch", "ExperimentalFamily"]


class ExperimentalFamily(ABC):
    """Base of the experimental families: pure functions of `(params, ...)` for one config."""

    family = ""
    target_module: str | None = None
    ema_decay = 0.996
    modules: dict[str, nn.Module]

    def __init__(self, config: Any) -> None:
        self.config = config

    # -- hooks ------------------------------------------------------------------------------------
    @abstractmethod
    def init_inputs(self) -> dict[str, tuple[Any, ...]]:
        """`{module name: example args of Module.init}`."""

    @abstractmethod
    def initial_state(self, batch_size: int) -> State:
        """The state before any observation."""

    @abstractmethod
    def encode(self, params: Params, obs: jax.Array) -> State:
        """`obs [B, *obs_shape]` -> state."""

    @abstractmethod
    def transition(
        self, params: Params, state: State, action: jax.Array, key: jax.Array | None, deterministic: bool
    ) -> State:
        """The next state after `action [B, A]` (`key` may be None when `deterministic`)."""

    @abstractmethod
    def predict_reward(self, params: Params, state: State) -> jax.Array:
        """Reward `[B]` of arriving in `state`."""

    @abstractmethod
    def decode(self, params: Params, state: State) -> dict[str, jax.Array]:
        """Predictions `{name: [B, ...]}` of `state`."""

    @abstractmethod
    def loss(
        self, params: Params, extras: Params, batch: Batch, key: jax.Array | None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """`(total, components)` of a batch `obs [B, T, ...]`."""

    # -- parameters -------------------------------------------------------------------------------
    def _apply(self, name: str, params: Params, *args: Any, **kwargs: Any) -> Any:
        return self.modules[name].apply({"params": params[name]}, *args, **kwargs)

    def init(self, key: jax.Array) -> Params:
        """Fresh float32 parameters `{module name: tree}`."""
        inputs = self.init_inputs()
        keys = dict(zip(self.modules, jax.random.split(key, len(self.modules)), strict=True))
        return {n: m.init(keys[n], *inputs[n])["params"] for n, m in self.modules.items()}

    def param_shapes(self) -> Params:
        """The parameter tree as `ShapeDtypeStruct`s (no computation; traced once per family object)."""
        shapes = self.__dict__.get("_param_shapes")
        if shapes is None:
            shapes = self.__dict__["_param_shapes"] = jax.eval_shape(self.init, jax.random.key(0))
        return shapes

    def init_extras(self, params: Params) -> Params | None:
        """The EMA target (a copy of `params[target_module]`), or None without one."""
        if self.target_module is None:
            return None
        return jax.tree.map(jnp.array, params[self.target_module])

    def post_update(self, state: Any, components: Any = None) -> Any:
        """After an applied update: `target = d * target + (1 - d) * online` (d = `ema_decay`)."""
        del components
        if self.target_module is None:
            return state
        return state.replace(extras=self.ema(state.extras, state.params))

    def ema(self, target: Params, params: Params) -> Params:
        """The EMA step of the target toward `params[target_module]`."""
        d = self.ema_decay
        return jax.tree.map(lambda t, o: d * t + (1.0 - d) * o, target, params[self.target_module])

    # -- batches, rollouts, planning ------------------------------------------------------------
    def make_batch(self, obs: Any, actions: Any, rewards: Any, terminations: Any = None) -> Batch:
        """Raw arrays -> `Batch` (float32 obs `[B, T, *obs_shape]`, one-hot integer actions)."""
        terminations = None if terminations is None else jnp.asarray(terminations, jnp.float32)
        return Batch(
            float_obs(obs),
            one_hot_actions(actions, self.config.action_dim),
            jnp.asarray(rewards, jnp.float32),
            terminations,
        )

    def train_loss(self, params: Params, extras: Params, batch: Batch, key: jax.Array) -> tuple[jax.Array, dict]:
        """`make_train_step`'s loss signature."""
        return self.loss(params, extras, batch, key)

    def rollout(
        self, params: Params, state: State, actions: jax.Array, key: jax.Array | None, deterministic: bool = False
    ) -> tuple[State, jax.Array, jax.Array]:
        """Open-loop rollout with `actions [T, B, A]`: states `{k: [T, B, ...]}` (after each action), rewards
        `[T, B]` (reward of arriving in each state) and continues (ones) `[T, B]`."""
        steps = actions.shape[0]
        keys = jax.random.split(jax.random.key(0) if key is None else key, steps)

        def step(s: State, inputs: tuple[jax.Array, jax.Array]) -> tuple[State, State]:
            action, k = inputs
            nxt = self.transition(params, s, action, k, deterministic)
            return nxt, nxt

        _, states = jax.lax.scan(step, dict(state), (actions, keys))
        t, b = actions.shape[:2]
        flat = {k: v.reshape(t * b, *v.shape[2:]) for k, v in states.items()}
        rewards = self.predict_reward(params, flat).reshape(t, b)
        return states, rewards, jnp.ones_like(rewards)

    def planning_model(self) -> Any:
        """`PlanningModel(step)` for `worldflux_jax.planners`: a deterministic transition scored by the reward
        of the state it reaches."""
        from worldflux_jax.planners.base import PlanningModel

        def step(params: Params, state: State, action: jax.Array) -> tuple[State, jax.Array]:
            nxt = self.transition(params, state, action, None, True)
            return nxt, self.predict_reward(params, nxt)

        return PlanningModel(step=step)

    # -- torch layout -----------------------------------------------------------------------------
    @property
    def target_prefix(self) -> str:
        return f"_target_{self.target_module}."

    def torch_state_dict(self, params: Params, extras: Params | None = None) -> dict[str, np.ndarray]:
        """`{torch name: array}`: every parameter, and the EMA target under `_target_<module>.`."""
        state = tl.params_to_torch(params)
        if self.target_module is not None:
            target = params[self.target_module] if extras is None else extras
            state.update({self.target_prefix + k: v for k, v in tl.params_to_torch(target).items()})
        return state

    def state_dict_names(self) -> list[str]:
        """The names `torch_state_dict` writes, in order."""
        shapes = self.param_shapes()
        names = [tl.torch_name(tl._path_keys(p)) for p, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]]
        if self.target_module is not None:
            target = jax.tree_util.tree_flatten_with_path(shapes[self.target_module])[0]
            names += [self.target_prefix + tl.torch_name(tl._path_keys(p)) for p, _ in target]
        return names

    def from_torch_state_dict(self, state_dict: Mapping[str, Any]) -> tuple[Params, Params | None]:
        """`(params, extras)` from `torch_state_dict` output (a missing target copies the online module);
        raises `StateDictError` on missing, unexpected or mis-shaped tensors."""
        shapes = self.param_shapes()
        if self.target_module is None:
            return tl.params_from_torch(shapes, state_dict), None
        prefix = self.target_prefix
        online = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
        target = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        params = tl.params_from_torch(shapes, online)
        if not target:
            return params, self.init_extras(params)
        return params, tl.params_from_torch(shapes[self.target_module], target)
