"""Agents: one batched, jitted acting interface over N environments for every world model.

    agent = make_agent(model)                      # DreamerV3: its actor (actor_critic=True) or MPPI;
    state = agent.initial_state(num_envs)          # TD-MPC2: MPPI with policy prior + terminal Q
    actions, state = agent.act(obs, state, reset_mask, explore=True)

* ``obs [N, *obs_shape]``: a torch tensor or numpy array; ``actions [N, A]`` come back in the same kind
  (float32: in ``[-1, 1]`` for continuous models, one-hot for discrete ones).
* ``reset_mask [N]`` (bool): rows whose episode starts at this ``obs`` (their recurrent / latent state and
  warm-start plan are cleared first). ``agent_state=None`` starts every row fresh.
* ``explore``: True samples (actor draws, MPPI's noisy elite action); False acts greedily (the actor's
  mode, the plan's mean first action).
* The model's current ``params`` are read at every call (training in between is picked up without
  recompiling); the carried state is the recurrent / latent state, the previous action and the previous plan.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from worldflux.core.exceptions import ConfigurationError
from worldflux.interop import array_kind, to_kind
from worldflux_jax.agents import AGENT_KINDS, AgentFns, make_agent_fns

__all__ = ["AGENT_KINDS", "POLICIES", "Agent", "make_agent"]

POLICIES = ("agent", "actor", "mppi", "cem", "random")


class Agent:
    """A batched policy over a world model (see the module docstring). Build it with ``make_agent``."""

    def __init__(self, model: Any, fns: AgentFns, seed: int = 0) -> None:
        self.model = model
        self.fns = fns
        self.kind = fns.kind
        self.action_dim = fns.action_dim
        self.discrete = fns.discrete
        self._key = jax.random.key(int(seed) % 2**31)
        self._calls = 0

    def initial_state(self, num_envs: int) -> Any:
        """The carried state of ``num_envs`` fresh episodes (a JAX pytree)."""
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        return self.fns.init(int(num_envs))

    def act(self, obs: Any, agent_state: Any = None, reset_mask: Any = None, explore: bool = True) -> tuple[Any, Any]:
        """Actions ``[N, A]`` for observations ``[N, *obs_shape]`` and the next carried state."""
        kind = array_kind(obs) or "numpy"
        obs_j = jnp.asarray(to_kind(obs, "numpy") if kind == "torch" else obs, jnp.float32)
        obs_shape = tuple(getattr(self.model.config, "obs_shape", ()) or ())
        if obs_j.ndim != len(obs_shape) + 1 or (obs_shape and tuple(obs_j.shape[1:]) != obs_shape):
            raise ValueError(
                f"obs must have shape [N, *obs_shape] = [N, {', '.join(map(str, obs_shape))}], got {tuple(obs_j.shape)}"
            )
        n = obs_j.shape[0]
        if agent_state is None:
            agent_state = self.initial_state(n)
            reset = np.ones((n,), bool)
        elif reset_mask is None:
            reset = np.zeros((n,), bool)
        else:
            reset = np.asarray(to_kind(reset_mask, "numpy") if array_kind(reset_mask) else reset_mask, bool)
            if reset.shape != (n,):
                raise ValueError(f"reset_mask must have shape [N] = [{n}], got {reset.shape}")
        key = jax.random.fold_in(self._key, self._calls)
        self._calls += 1
        actions, agent_state = self.fns.act(
            self.model.params, obs_j, agent_state, jnp.asarray(reset), key, jnp.asarray(bool(explore))
        )
        return to_kind(actions, "torch" if kind == "torch" else "numpy"), agent_state

    def __repr__(self) -> str:
        return f"Agent(kind={self.kind!r}, action_dim={self.action_dim}, discrete={self.discrete})"


def make_agent(model: Any, policy: str = "agent", *, seed: int = 0, **planner_kwargs: Any) -> Agent:
    """A batched agent for ``model`` (a ``worldflux`` world model).

    Args:
        model: a world model from ``create_world_model`` (DreamerV3 or TD-MPC2).
        policy: ``"agent"`` (the family's own policy: DreamerV3's actor when ``actor_critic=True``, else MPPI
            over its world model; TD-MPC2's MPPI with policy prior, terminal Q and warm start), ``"actor"``,
            ``"mppi"``, ``"cem"`` or ``"random"``.
        seed: seeds the agent's key stream (exploration noise, latent draws).
        **planner_kwargs: passed to the MPPI / CEM planner (``horizon``, ``num_samples``, ``iterations`` ...).

    Raises:
        ConfigurationError: ``policy`` is unknown or does not fit the model.
    """
    if policy not in POLICIES:
        raise ConfigurationError(f"policy must be one of {list(POLICIES)}, got {policy!r}")
    core = getattr(model, "core", None)
    if core is None or not hasattr(model, "params"):
        raise ConfigurationError(
            f"make_agent needs a worldflux world model (create_world_model), got {type(model).__name__}"
        )
    try:
        key = (id(core), policy, tuple(sorted(planner_kwargs.items())))
        hash(key)
    except TypeError:
        key = None
    cached = _FNS.get(key) if key is not None else None
    if cached is not None and cached[0] is core:
        return Agent(model, cached[1], seed)
    try:
        fns = make_agent_fns(core, policy, **planner_kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"cannot build a {policy!r} agent for this model: {exc}") from exc
    if key is not None:
        # Agents of the same core and settings share one jitted function (no recompilation per evaluation).
        _FNS[key] = (core, fns)
    return Agent(model, fns, seed)


_FNS: dict[Any, tuple[Any, AgentFns]] = {}
