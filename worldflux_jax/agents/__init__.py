"""Batched, jitted policies over N environments for both model families (pure functions over pytrees).

Every agent is an `AgentFns(init, act)`:

* `init(num_envs) -> state`: the carried state (a pytree whose leaves lead with `N`);
* `act(params, obs [N, *obs_shape], state, reset [N] bool, key, explore bool) -> (actions [N, A], state)`:
  rows with `reset` start a new episode (their carried state is cleared first; `obs` is then the episode's
  first observation). Actions are float32 `[N, A]`: in `[-1, 1]` for continuous models, one-hot for
  discrete ones. `explore` is a traced boolean (one compilation serves collection and evaluation).

Kinds:

* `dreamer_actor` (DreamerV3 with `actor_critic=True`): posterior update with the previous action and the
  observation, then an actor draw (explore) or its mode (evaluation);
* `dreamer_planner` (DreamerV3 without the actor-critic): the posterior state, then MPPI or CEM over the
  world model's deterministic prior (`DreamerV3.planning_model`);
* `tdmpc2` (TD-MPC2): encode, then MPPI with the policy-prior trajectories, the terminal Q value and a warm
  start from the previous plan (`worldflux_jax.planners.mppi`); collection adds TD-MPC2's exploration noise
  (`MPPIResult.first_action`), evaluation takes the plan's mean first action;
* `random`: uniform actions in `[-1, 1]`, or uniform one-hot classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any
AgentState = Any

AGENT_KINDS = ("dreamer_actor", "dreamer_planner", "tdmpc2", "random")


class AgentFns(NamedTuple):
    init: Callable[[int], AgentState]
    act: Callable[..., tuple[jax.Array, AgentState]]
    kind: str
    action_dim: int
    discrete: bool


def _where_rows(mask: jax.Array, a: Any, b: Any) -> Any:
    """Per-row select over pytrees whose leaves lead with `N`."""

    def pick(x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y)

    return jax.tree.map(pick, a, b)


def _to_discrete(actions: jax.Array, discrete: bool) -> jax.Array:
    """Planner outputs are continuous vectors; a discrete model takes the one-hot of their argmax."""
    if not discrete:
        return actions
    return jax.nn.one_hot(jnp.argmax(actions, axis=-1), actions.shape[-1], dtype=jnp.float32)


def random_agent(action_dim: int, discrete: bool) -> AgentFns:
    def init(num_envs: int) -> AgentState:
        return {"step": jnp.zeros((num_envs,), jnp.int32)}

    def act(params: Params, obs: jax.Array, state: AgentState, reset: jax.Array, key: jax.Array, explore: Any):
        del params, explore
        n = obs.shape[0]
        if discrete:
            actions = jax.nn.one_hot(jax.random.randint(key, (n,), 0, action_dim), action_dim, dtype=jnp.float32)
        else:
            actions = jax.random.uniform(key, (n, action_dim), jnp.float32, -1.0, 1.0)
        return actions, {"step": jnp.where(reset, 0, state["step"]) + 1}

    return AgentFns(init, jax.jit(act), "random", action_dim, discrete)


def _dreamer_filter(core: Any, params: Params, obs: jax.Array, state: AgentState, reset: jax.Array, key: jax.Array):
    """The posterior state after `obs`, with reset rows restarted from the initial state and a zero action."""
    n = obs.shape[0]
    fresh = core.initial_state(n)
    latent = _where_rows(reset, {"deter": fresh["deter"], "stoch": fresh["stoch"]}, state["latent"])
    prev = jnp.where(reset[:, None], 0.0, state["prev_action"])
    post = core.update(params, latent, prev, obs.astype(jnp.float32), key, "sample")
    return {"deter": post["deter"], "stoch": post["stoch"]}


def dreamer_actor_agent(core: Any) -> AgentFns:
    """DreamerV3 acting with its actor (needs `config.actor_critic`)."""
    cfg = core.config
    discrete = cfg.action_type == "discrete"

    def init(num_envs: int) -> AgentState:
        fresh = core.initial_state(num_envs)
        return {
            "latent": {"deter": fresh["deter"], "stoch": fresh["stoch"]},
            "prev_action": jnp.zeros((num_envs, cfg.action_dim), jnp.float32),
        }

    def act(params: Params, obs: jax.Array, state: AgentState, reset: jax.Array, key: jax.Array, explore: Any):
        k_post, k_act = jax.random.split(key)
        latent = _dreamer_filter(core, params, obs, state, reset, k_post)
        actions = core.act(params, latent, k_act, explore)
        return actions, {"latent": latent, "prev_action": actions}

    return AgentFns(init, jax.jit(act), "dreamer_actor", cfg.action_dim, discrete)


def _planner(core: Any, planner: str, planner_kwargs: dict[str, Any]) -> Any:
    from worldflux_jax.planners.cem import make_cem_planner
    from worldflux_jax.planners.mppi import make_mppi_planner

    model = core.planning_model()
    kwargs = dict(planner_kwargs)
    kwargs.setdefault("action_dim", core.config.action_dim)
    if planner == "mppi":
        return make_mppi_planner(model, **kwargs)
    if planner == "cem":
        kwargs.setdefault("horizon", 12)
        kwargs.setdefault("action_low", -1.0)
        kwargs.setdefault("action_high", 1.0)
        return make_cem_planner(model, **kwargs)
    raise ValueError(f"planner must be 'mppi' or 'cem', got {planner!r}")


def dreamer_planner_agent(core: Any, planner: str = "mppi", **planner_kwargs: Any) -> AgentFns:
    """DreamerV3 acting by planning over its world model (MPPI with warm start, or CEM)."""
    from worldflux_jax.dreamer import planning_state

    cfg = core.config
    discrete = cfg.action_type == "discrete"
    plan = _planner(core, planner, planner_kwargs)

    def init(num_envs: int) -> AgentState:
        fresh = core.initial_state(num_envs)
        return {
            "latent": {"deter": fresh["deter"], "stoch": fresh["stoch"]},
            "prev_action": jnp.zeros((num_envs, cfg.action_dim), jnp.float32),
            "plan_mean": jnp.zeros((num_envs, plan.horizon, cfg.action_dim), jnp.float32),
        }

    def act(params: Params, obs: jax.Array, state: AgentState, reset: jax.Array, key: jax.Array, explore: Any):
        k_post, k_plan = jax.random.split(key)
        latent = _dreamer_filter(core, params, obs, state, reset, k_post)
        mean = jnp.where(reset[:, None, None], 0.0, state["plan_mean"])
        actions, mean = _plan_actions(plan, planner, params, planning_state(latent), k_plan, mean, explore)
        actions = _to_discrete(actions, discrete)
        return actions, {"latent": latent, "prev_action": actions, "plan_mean": mean}

    return AgentFns(init, jax.jit(act), "dreamer_planner", cfg.action_dim, discrete)


def _plan_actions(plan: Any, planner: str, params: Params, latent: Any, key: jax.Array, mean: jax.Array, explore: Any):
    """First actions `[N, A]` and the plan mean to warm-start from next time."""
    if planner == "mppi":
        result = plan(params, latent, key, mean)
        return jnp.where(explore, result.first_action, result.mean[:, 0]), result.mean
    actions = plan(params, latent, key)  # CEM: [N, H, A], no warm start
    return actions[:, 0], actions


def tdmpc2_agent(core: Any, **planner_kwargs: Any) -> AgentFns:
    """TD-MPC2 acting with MPPI (policy prior, terminal Q, warm start); defaults from the model config."""
    cfg = core.config
    discrete = cfg.action_type == "discrete"
    kwargs = {
        "horizon": cfg.horizon,
        "num_samples": cfg.num_samples,
        "num_elites": cfg.num_elites,
        "temperature": cfg.temperature,
        "momentum": cfg.momentum,
        "gamma": cfg.gamma,
        "num_pi_trajs": min(24, max(cfg.num_samples - 1, 0)),
    }
    kwargs.update(planner_kwargs)
    plan = _planner(core, "mppi", kwargs)

    def init(num_envs: int) -> AgentState:
        return {"plan_mean": jnp.zeros((num_envs, plan.horizon, cfg.action_dim), jnp.float32)}

    def act(params: Params, obs: jax.Array, state: AgentState, reset: jax.Array, key: jax.Array, explore: Any):
        latent = core.encode(params, obs.astype(jnp.float32))
        mean = jnp.where(reset[:, None, None], 0.0, state["plan_mean"])
        actions, mean = _plan_actions(plan, "mppi", params, latent, key, mean, explore)
        return _to_discrete(actions, discrete), {"plan_mean": mean}

    return AgentFns(init, jax.jit(act), "tdmpc2", cfg.action_dim, discrete)


def make_agent_fns(core: Any, policy: str = "agent", **kwargs: Any) -> AgentFns:
    """The agent for a core model. `policy`: "agent" (the family's own: DreamerV3's actor when it has one,
    else MPPI; TD-MPC2's MPPI), "actor", "mppi", "cem" or "random"."""
    cfg = core.config
    family = getattr(core, "family", None)
    discrete = cfg.action_type == "discrete"
    if policy == "random":
        return random_agent(cfg.action_dim, discrete)
    if family == "tdmpc2":
        if policy not in ("agent", "mppi"):
            raise ValueError(f"policy for a TD-MPC2 model must be 'agent', 'mppi' or 'random', got {policy!r}")
        return tdmpc2_agent(core, **kwargs)
    if family == "dreamer":
        has_actor = bool(getattr(cfg, "actor_critic", False))
        if policy == "actor" or (policy == "agent" and has_actor):
            if not has_actor:
                raise ValueError("policy='actor' needs a DreamerV3 model with actor_critic=True")
            return dreamer_actor_agent(core)
        if policy in ("agent", "mppi", "cem"):
            return dreamer_planner_agent(core, "cem" if policy == "cem" else "mppi", **kwargs)
        raise ValueError(f"policy must be one of 'agent', 'actor', 'mppi', 'cem', 'random', got {policy!r}")
    raise ValueError(f"no agent for a core of family {family!r}")
