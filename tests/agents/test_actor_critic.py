"""DreamerV3 actor-critic core (worldflux_jax.actor_critic): returns, normaliser, gradients, layout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldflux_jax import actor_critic as ac
from worldflux_jax.config import DreamerV3Config
from worldflux_jax.dreamer import DreamerV3


def _config(action_type: str = "discrete", **kw) -> DreamerV3Config:
    return DreamerV3Config.from_size(
        "ci", obs_shape=(4,), action_dim=2, action_type=action_type, actor_critic=True, imagination_horizon=3, **kw
    )


def test_td_lambda_matches_hand_computed_case() -> None:
    gamma, lam = 0.9, 0.5
    rewards = jnp.array([[1.0], [2.0]])
    values = jnp.array([[10.0], [20.0], [30.0]])
    continues = jnp.array([[1.0], [0.5]])
    # R_2 = v_2 = 30; R_1 = 2 + 0.9 * 0.5 * (0.5 * 30 + 0.5 * 30) = 15.5
    # R_0 = 1 + 0.9 * 1.0 * (0.5 * 20 + 0.5 * 15.5) = 16.975
    out = ac.td_lambda(rewards, values, continues, gamma, lam)
    np.testing.assert_allclose(np.asarray(out)[:, 0], [16.975, 15.5], rtol=1e-6)


def test_td_lambda_one_is_discounted_monte_carlo_and_zero_is_td0() -> None:
    rng = np.random.default_rng(0)
    r = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    c = jnp.ones((4, 3))
    mc = ac.td_lambda(r, v, c, 0.9, 1.0)
    expected0 = sum(0.9**t * r[t] for t in range(4)) + 0.9**4 * v[4]
    np.testing.assert_allclose(mc[0], expected0, rtol=1e-5)
    td0 = ac.td_lambda(r, v, c, 0.9, 0.0)
    np.testing.assert_allclose(td0, r + 0.9 * v[1:], rtol=1e-5)


def test_return_normalisation_percentile_ema_and_span_clamp() -> None:
    returns = jnp.arange(101, dtype=jnp.float32)  # percentiles 5 and 95 are exactly 5 and 95
    scale, low, high = ac.normalize_returns(returns, jnp.float32(0.0), jnp.float32(1.0))
    np.testing.assert_allclose(low, 0.99 * 0.0 + 0.01 * 5.0, rtol=1e-6)
    np.testing.assert_allclose(high, 0.99 * 1.0 + 0.01 * 95.0, rtol=1e-6)
    np.testing.assert_allclose(scale, high - low, rtol=1e-6)  # span 1.89 > 1
    small = jnp.linspace(0.0, 0.1, 11)
    scale, _, _ = ac.normalize_returns(small, jnp.float32(0.0), jnp.float32(0.5))
    assert float(scale) == 1.0  # span clamped to >= 1
    scale, _, _ = ac.normalize_returns(returns, jnp.float32(0.0), jnp.float32(100.0), enabled=False)
    assert float(scale) == 1.0


@pytest.mark.parametrize("action_type", ["discrete", "continuous"])
def test_actor_gradient_reaches_only_actor_and_critic_only_critic(action_type: str) -> None:
    cfg = _config(action_type)
    model = DreamerV3(cfg)
    params = model.init(jax.random.key(0))
    extras = ac.ac_extras(params)
    t, b = 2, 3
    k1, k2 = jax.random.split(jax.random.key(1))
    states = {
        "deter": jax.random.normal(k1, (t, b, cfg.deter_dim)),
        "stoch": jax.nn.one_hot(jax.random.randint(k2, (t, b, cfg.stoch_discrete), 0, cfg.stoch_classes), 4),
    }

    def component(name: str):
        def f(p):
            _, comps = model._actor_critic_loss(p, extras, states, jax.random.key(2))
            return comps[name]

        return jax.jit(jax.grad(f))(params)

    for name, owner in (("actor", ac.ACTOR), ("critic", ac.CRITIC)):
        grads = component(name)
        for top, sub in grads.items():
            norm = float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(sub)))
            if top == owner:
                assert norm > 0, f"{name} loss has no gradient for {top}"
            else:
                assert norm == 0.0, f"{name} loss leaks gradient into {top}"


def test_continuous_log_prob_matches_change_of_variables() -> None:
    cfg = _config("continuous")
    params = ac.init_heads(cfg, jax.random.key(0))[ac.ACTOR]
    feats = jax.random.normal(jax.random.key(3), (5, cfg.feature_dim))
    actions = ac.sample_action(cfg, params, feats, jax.random.key(4))
    assert actions.shape == (5, 2) and bool(jnp.all(jnp.abs(actions) < 1))
    logp, entropy = ac.log_prob_entropy(cfg, params, feats, actions)
    mean, std = ac.actor_dist(cfg, params, feats)
    u = jnp.arctanh(actions)
    normal = -0.5 * ((u - mean) / std) ** 2 - jnp.log(std * jnp.sqrt(2 * jnp.pi))
    expected = jnp.sum(normal - jnp.log(1 - actions**2 + 1e-6), axis=-1)
    np.testing.assert_allclose(logp, expected, rtol=1e-4, atol=1e-4)
    assert entropy.shape == (5,)
    greedy = ac.sample_action(cfg, params, feats, jax.random.key(4), explore=False)
    np.testing.assert_allclose(greedy, jnp.tanh(mean), rtol=1e-6)


def test_discrete_actor_samples_one_hot_and_greedy_is_argmax() -> None:
    cfg = _config("discrete")
    params = ac.init_heads(cfg, jax.random.key(0))[ac.ACTOR]
    feats = jax.random.normal(jax.random.key(3), (64, cfg.feature_dim))
    actions = ac.sample_action(cfg, params, feats, jax.random.key(4))
    assert set(np.unique(np.asarray(actions))) <= {0.0, 1.0}
    np.testing.assert_array_equal(actions.sum(-1), 1.0)
    logits, _ = ac.actor_dist(cfg, params, feats)
    greedy = ac.sample_action(cfg, params, feats, jax.random.key(4), explore=False)
    np.testing.assert_array_equal(greedy.argmax(-1), logits.argmax(-1))


def test_slow_critic_post_update_and_optimizer_groups() -> None:
    cfg = _config()
    params = DreamerV3(cfg).init(jax.random.key(0))
    extras = ac.ac_extras(params)
    moved = {**params, ac.CRITIC: jax.tree.map(lambda x: x + 1.0, params[ac.CRITIC])}
    comps = {"return_low": jnp.float32(-2.0), "return_high": jnp.float32(3.0)}
    new = ac.post_update(cfg, extras, moved, comps)
    leaf = jax.tree.leaves(new[ac.SLOW_CRITIC])[0]
    np.testing.assert_allclose(leaf, jax.tree.leaves(params[ac.CRITIC])[0] + 0.02, rtol=1e-5, atol=1e-6)
    assert float(new["return_low"]) == -2.0 and float(new["return_high"]) == 3.0
    labels, rates = ac.optimizer_groups(cfg, params)
    assert rates == {"world_model": cfg.learning_rate, "actor": cfg.actor_lr, "critic": cfg.critic_lr}
    assert set(jax.tree.leaves(labels[ac.ACTOR])) == {"actor"}
    assert set(jax.tree.leaves(labels["rssm"])) == {"world_model"}


def test_actor_critic_state_dict_round_trip_in_torch_layout() -> None:
    cfg = _config("continuous")
    model = DreamerV3(cfg)
    params = model.init(jax.random.key(0))
    extras = {**ac.ac_extras(params), "return_low": jnp.float32(-1.5), "return_high": jnp.float32(4.0)}
    sd = model.to_torch_state_dict(params, extras)
    h = cfg.hidden_dim
    assert sd["actor.mlp.0.weight"].shape == (h, cfg.feature_dim)  # torch Linear [out, in]
    assert sd["actor.mlp.6.weight"].shape == (2 * cfg.action_dim, h)
    assert sd["critic.mlp.6.weight"].shape == (cfg.reward_num_bins, h)
    assert sd["slow_critic.mlp.6.weight"].shape == (cfg.reward_num_bins, h)
    assert float(sd["_return_low"]) == -1.5
    back = model.from_torch_state_dict(sd)
    back_extras = model.extras_from_torch_state_dict(sd, back)
    for a, b in zip(jax.tree.leaves((params, extras)), jax.tree.leaves((back, back_extras)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_parity_tool_loads_and_exports_actor_critic_heads_by_torch_name() -> None:
    from worldflux_jax import parity

    cfg = _config("discrete")
    model = DreamerV3(cfg)
    params = model.init(jax.random.key(0))
    sd = model.to_torch_state_dict(params)
    rng = np.random.default_rng(0)
    arrays = {f"param/{k}": v for k, v in sd.items()}
    arrays["input/obs"] = rng.normal(size=(2, 3, 4)).astype(np.float32)
    arrays["input/actions"] = np.eye(2, dtype=np.float32)[rng.integers(0, 2, (2, 3))]
    arrays["input/rewards"] = rng.normal(size=(2, 3)).astype(np.float32)
    arrays["input/terminations"] = np.zeros((2, 3), np.float32)
    out = parity.recompute_dreamer(cfg, arrays)
    assert {"loss/actor", "loss/critic"} <= set(out)
    assert out["grad/actor.mlp.6.weight"].shape == sd["actor.mlp.6.weight"].shape
    assert np.abs(out["grad/critic.mlp.6.weight"]).sum() > 0
    assert not any(k.startswith("grad/slow_critic") for k in out)
