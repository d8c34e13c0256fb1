"""make_agent / Agent.act: batched acting, carried state and per-env resets, over several model kinds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldflux import create_world_model
from worldflux.agents import make_agent
from worldflux.core.exceptions import ConfigurationError
from worldflux_jax import actor_critic as ac
from worldflux_jax.dreamer import features_of


@pytest.fixture(scope="module")
def dreamer_discrete():
    return create_world_model("dreamer:ci", obs_shape=(4,), action_dim=2, action_type="discrete", actor_critic=True)


@pytest.fixture(scope="module")
def tdmpc2():
    return create_world_model("tdmpc2:ci", obs_shape=(3,), action_dim=1)


def test_dreamer_actor_acts_one_hot_and_resets_rows_independently(dreamer_discrete) -> None:
    agent = make_agent(dreamer_discrete, seed=1)
    assert agent.kind == "dreamer_actor" and agent.discrete
    obs = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    actions, state = agent.act(obs, None, None)
    assert actions.shape == (3, 2) and isinstance(actions, np.ndarray)
    np.testing.assert_array_equal(actions.sum(-1), 1.0)
    # The carried state depends on history; a reset row forgets it and equals a fresh start.
    _, s_cont = agent.act(obs, state, np.array([False, True, False]))
    fresh = make_agent(dreamer_discrete, seed=1)
    _, s_fresh = fresh.act(obs, None, None)
    deter_cont = np.asarray(s_cont["latent"]["deter"])
    deter_fresh = np.asarray(s_fresh["latent"]["deter"])
    np.testing.assert_allclose(deter_cont[1], deter_fresh[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(deter_cont[0], deter_fresh[0])
    # Greedy acting takes the actor's mode at the new latent state.
    greedy, s_greedy = agent.act(obs, state, None, explore=False)
    core = dreamer_discrete.core
    logits, _ = ac.actor_dist(core.config, dreamer_discrete.params["actor"], features_of(s_greedy["latent"]))
    np.testing.assert_array_equal(greedy.argmax(-1), np.asarray(logits).argmax(-1))


def test_torch_in_torch_out_and_shape_errors(dreamer_discrete) -> None:
    agent = make_agent(dreamer_discrete)
    actions, _ = agent.act(torch.zeros(2, 4))
    assert isinstance(actions, torch.Tensor) and actions.shape == (2, 2)
    with pytest.raises(ValueError, match="obs must have shape"):
        agent.act(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="reset_mask"):
        agent.act(np.zeros((2, 4), np.float32), agent.initial_state(2), np.array([True]))


def test_tdmpc2_mppi_agent_warm_start_and_reset(tdmpc2) -> None:
    agent = make_agent(tdmpc2, num_samples=32, num_elites=4, num_pi_trajs=4, iterations=2)
    assert agent.kind == "tdmpc2"
    obs = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    actions, state = agent.act(obs, None, None)
    assert actions.shape == (2, 1) and np.all(np.abs(actions) <= 1.0)
    assert np.abs(np.asarray(state["plan_mean"])).sum() > 0  # the plan is carried for the warm start
    greedy, _ = agent.act(obs, state, np.array([True, False]), explore=False)
    np.testing.assert_array_equal(greedy, np.asarray(_plan_first(agent, obs, state, [True, False])))


def _plan_first(agent, obs, state, reset):
    """The greedy action is the plan mean's first step (recomputed with the same key)."""
    agent._calls -= 1  # replay the previous call's key
    _, new_state = agent.act(obs, state, np.array(reset), explore=False)
    return np.asarray(new_state["plan_mean"])[:, 0]


@pytest.mark.parametrize("policy", ["random", "mppi"])
def test_other_policies_share_the_interface(dreamer_discrete, policy: str) -> None:
    kwargs = {"num_samples": 16, "num_elites": 4, "horizon": 3, "iterations": 1} if policy == "mppi" else {}
    agent = make_agent(dreamer_discrete, policy, **kwargs)
    actions, state = agent.act(np.zeros((4, 4), np.float32))
    actions, state = agent.act(np.zeros((4, 4), np.float32), state, np.array([True, False, False, True]))
    assert actions.shape == (4, 2)
    np.testing.assert_array_equal(actions.sum(-1), 1.0)


def test_unknown_policy_and_actor_without_actor_critic_are_configuration_errors(tdmpc2) -> None:
    with pytest.raises(ConfigurationError, match="policy must be one of"):
        make_agent(tdmpc2, "greedy")
    with pytest.raises(ConfigurationError, match="TD-MPC2"):
        make_agent(tdmpc2, "actor")
