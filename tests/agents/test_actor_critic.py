"""DreamerV3 actor-critic core (worldflux_jax.actor_critic): returns, normaliser, gradients, layout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldflux_jax import actor_critic as ac
from worldflux_jax.config import DreamerV3Config
from worldflux_jax.dreamer import DreamerV3


def _states(cfg: DreamerV3Config, t: int = 2, b: int = 3) -> dict[str, jax.Array]:
    k1, k2 = jax.random.split(jax.random.key(1))
    return {
        "deter": jax.random.normal(k1, (t, b, cfg.deter_dim)),
        "stoch": jax.nn.one_hot(
            jax.random.randint(k2, (t, b, cfg.stoch_discrete), 0, cfg.stoch_classes), cfg.stoch_classes
        ),
    }


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


@pytest.mark.parametrize(
    ("action_type", "extra"),
    [
        ("discrete", {}),
        ("continuous", {}),
        ("discrete", {"behavior_profile": "paper", "imagination_starts": 4}),
        ("continuous", {"behavior_profile": "paper", "actor_gradient": "dynamics"}),
    ],
)
def test_actor_gradient_reaches_only_actor_and_critic_only_critic(action_type: str, extra: dict) -> None:
    cfg = _config(action_type, **extra)
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


def test_paper_profile_weights_steps_by_cumulative_continue() -> None:
    """Continues of 0 after the first imagined step leave only t = 0 in the paper profile's losses."""
    cfg = _config("discrete", behavior_profile="paper", actor_entropy_coef=0.0)
    params = ac.init_heads(cfg, jax.random.key(0))
    extras = ac.ac_extras(params)
    h, n = cfg.imagination_horizon, 5
    feats = jax.random.normal(jax.random.key(3), (h + 1, n, cfg.feature_dim))
    actions = jax.nn.one_hot(jax.random.randint(jax.random.key(4), (h, n), 0, 2), 2)
    trajectory = ac.ImaginedTrajectory(feats, actions)
    bins = DreamerV3(cfg).bins
    rewards = lambda f: jnp.ones(f.shape[:2])  # noqa: E731
    ends = lambda f: jnp.full(f.shape[:2], -1e4)  # noqa: E731  continue = sigmoid(-1e4) = 0
    _, comps = jax.jit(lambda p: ac.loss(cfg, p, extras, trajectory, rewards, ends, bins))(params)
    # Returns are the one reward (c = 0 cuts the bootstrap); the online critic is the baseline.
    values = ac.critic_value(cfg, params[ac.CRITIC], feats[0], bins)
    scale, _, _ = ac.normalize_returns(jnp.ones((h, n)), extras["return_low"], extras["return_high"])
    logp, _ = ac.log_prob_entropy(cfg, params[ac.ACTOR], feats[0], actions[0])
    expected = -jnp.sum(logp * (1.0 - values) / scale) / (h * n)
    np.testing.assert_allclose(comps["actor"], expected, rtol=1e-5, atol=1e-6)
    ref_cfg = _config("discrete", actor_entropy_coef=0.0)
    _, ref = jax.jit(lambda p: ac.loss(ref_cfg, p, extras, trajectory, rewards, ends, bins))(params)
    assert abs(float(ref["actor"]) - float(expected)) > 1e-6  # the reference profile averages every step


def test_paper_profile_discrete_actor_has_one_percent_unimix() -> None:
    cfg = _config("discrete", behavior_profile="paper")
    params = jax.tree.map(lambda p: 100.0 * p, ac.init_heads(cfg, jax.random.key(0))[ac.ACTOR])
    feats = jax.random.normal(jax.random.key(3), (32, cfg.feature_dim))
    logits, _ = ac.actor_dist(cfg, params, feats)
    probs = np.asarray(jnp.exp(logits))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert probs.min() >= 0.01 / 2 - 1e-6
    plain, _ = ac.actor_dist(_config("discrete"), params, feats)
    assert float(jax.nn.softmax(plain).min()) < 0.005  # without unimix the same logits saturate


def test_dynamics_gradient_differs_from_reinforce_and_subsets_bound_the_starts() -> None:
    base = dict(actor_entropy_coef=0.0)
    reinforce = DreamerV3(_config("continuous", **base))
    dynamics = DreamerV3(_config("continuous", actor_gradient="dynamics", **base))
    params = reinforce.init(jax.random.key(0))
    extras = ac.ac_extras(params)
    states = _states(reinforce.config)

    def actor_grad(model):
        f = lambda p: model._actor_critic_loss(p, extras, states, jax.random.key(2))[1]["actor"]  # noqa: E731
        return jax.tree.leaves(jax.jit(jax.grad(f))(params)[ac.ACTOR])

    g_r, g_d = actor_grad(reinforce), actor_grad(dynamics)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in g_d)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(g_r, g_d, strict=True)) > 1e-6

    # imagination_starts >= N is every start (the same loss as 0); fewer is a different, finite loss.
    loss = lambda m: jax.jit(lambda p: m._actor_critic_loss(p, extras, states, jax.random.key(2))[1])(params)  # noqa: E731
    every = loss(reinforce)
    same = loss(DreamerV3(_config("continuous", imagination_starts=6, **base)))
    fewer = loss(DreamerV3(_config("continuous", imagination_starts=2, **base)))
    np.testing.assert_array_equal(every["critic"], same["critic"])
    assert np.isfinite(float(fewer["critic"])) and float(fewer["critic"]) != float(every["critic"])


def test_behavior_fields_are_validated_and_kept_out_of_reference_configs() -> None:
    from worldflux_jax.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="behavior_profile must be one of"):
        _config(behavior_profile="papr")
    with pytest.raises(ConfigurationError, match="actor_gradient='dynamics' needs action_type='continuous'"):
        _config("discrete", actor_gradient="dynamics")
    with pytest.raises(ConfigurationError, match="imagination_starts must be >= 0"):
        _config(imagination_starts=-1)
    plain = _config().to_dict()
    assert not {"behavior_profile", "actor_gradient", "imagination_starts"} & set(plain)
    cfg = _config("continuous", behavior_profile="paper", actor_gradient="dynamics", imagination_starts=8)
    again = DreamerV3Config.from_dict(cfg.to_dict())
    assert (again.behavior_profile, again.actor_gradient, again.imagination_starts) == ("paper", "dynamics", 8)


def test_replay_critic_returns_stop_at_real_terminations_and_train_only_the_critic() -> None:
    from worldflux_jax.errors import ConfigurationError

    cfg = _config(behavior_profile="paper", replay_critic=0.3)
    model = DreamerV3(cfg)
    params = model.init(jax.random.key(0))
    extras = ac.ac_extras(params)
    t, b = 4, 2
    features = jax.random.normal(jax.random.key(3), (t, b, cfg.feature_dim))
    rewards = jnp.array([[0.0, 5.0, 7.0, 1.0], [0.0, 5.0, 7.0, 1.0]])
    terminations = jnp.array([[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])  # row 0 ends at t = 1 (then absorbing)
    loss, returns = ac.replay_critic_loss(cfg, params, extras, features, rewards, terminations, model.bins)
    assert returns.shape == (t - 1, b) and np.isfinite(float(loss))
    # Row 0: the terminal step cuts the return, whatever the critic says: R_0 = r_1, R_1 = r_2, R_2 = r_3.
    np.testing.assert_allclose(np.asarray(returns[:, 0]), [5.0, 7.0, 1.0], rtol=1e-6)
    # Row 1 continues: R_2 = r_3 + gamma * v_3, so it depends on the critic's bootstrap.
    v = ac.critic_value(cfg, params[ac.CRITIC], features, model.bins)
    np.testing.assert_allclose(float(returns[2, 1]), 1.0 + cfg.gamma * float(v[3, 1]), rtol=1e-5)

    # Inside the full loss it only adds to `critic` and only reaches the critic's parameters.
    batch = model.make_batch(jnp.ones((b, t, 4)), jnp.zeros((b, t), jnp.int32), rewards, terminations)
    off = DreamerV3(_config(behavior_profile="paper"))
    key = jax.random.key(5)
    with_rc = jax.jit(lambda p: model.loss(p, batch, key, "sample", extras)[1])(params)
    without = jax.jit(lambda p: off.loss(p, batch, key, "sample", extras)[1])(params)
    np.testing.assert_allclose(float(with_rc["actor"]), float(without["actor"]), rtol=1e-6)
    assert float(with_rc["critic"]) > float(without["critic"])

    def replay_only(p):
        return ac.replay_critic_loss(cfg, p, extras, features, rewards, terminations, model.bins)[0]

    grads = jax.grad(replay_only)(params)
    for name, sub in grads.items():
        norm = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(sub))
        assert (norm > 0) == (name == ac.CRITIC), name

    with pytest.raises(ConfigurationError, match="replay_critic must be a finite number >= 0"):
        _config(replay_critic=-0.1)
    with pytest.raises(ConfigurationError, match="needs actor_critic=True"):
        DreamerV3Config.from_size("ci", obs_shape=(4,), action_dim=2, replay_critic=0.3)
    assert "replay_critic" not in _config().to_dict()
    assert DreamerV3Config.from_dict(cfg.to_dict()).replay_critic == 0.3
