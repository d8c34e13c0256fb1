"""DreamerV3 core behaviour beyond parity: configs, converter, sampling, train step, learning."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldflux_jax.config import DreamerV3Config
from worldflux_jax.distributions import (
    categorical_kl,
    sample_categorical,
    symexp,
    symlog,
    twohot_encode,
    twohot_expected_value,
)
from worldflux_jax.dreamer import Batch, DreamerV3
from worldflux_jax.envs import PointMass
from worldflux_jax.errors import ConfigurationError
from worldflux_jax.evaluation import open_loop_error
from worldflux_jax.torch_layout import StateDictError
from worldflux_jax.train import create_train_state, make_optimizer, make_train_step


def small_config(**overrides) -> DreamerV3Config:
    return DreamerV3Config.from_size("ci", obs_shape=(6,), action_dim=2, **overrides)


# -- configs -------------------------------------------------------------------------------------
def test_presets_have_the_reference_dims() -> None:
    cfg = DreamerV3Config.from_size("size12m")
    assert (cfg.deter_dim, cfg.stoch_discrete, cfg.stoch_classes, cfg.hidden_dim, cfg.cnn_depth) == (
        2048,
        16,
        16,
        256,
        48,
    )
    assert cfg.stoch_dim == 256 and cfg.model_name == "size12m"
    xl = DreamerV3Config.from_size("official_xl")
    assert (xl.stoch_classes, xl.cnn_depth, xl.parity_profile) == (64, 64, "official_xl")
    assert set(DreamerV3Config.PRESETS) == {
        "ci",
        "size12m",
        "size25m",
        "size50m",
        "size100m",
        "size200m",
        "official_xl",
    }


def test_unknown_size_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="Unknown size: huge. Available"):
        DreamerV3Config.from_size("huge")


def test_vector_obs_selects_the_mlp_encoder_and_decoder() -> None:
    cfg = DreamerV3Config.from_size("size12m", obs_shape=(4,), action_dim=2)
    assert (cfg.encoder_type, cfg.decoder_type) == ("mlp", "mlp")
    assert DreamerV3Config.from_size("ci").encoder_type == "cnn"


def test_unknown_field_is_a_configuration_error_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="bogus_field"):
        DreamerV3Config.from_size("ci", bogus_field=1)


def test_cnn_encoder_with_vector_obs_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="CNN encoder requires 3D obs_shape"):
        DreamerV3Config.from_size("ci", obs_shape=(12,), encoder_type="cnn", decoder_type="mlp")


@pytest.mark.parametrize("field", ["deter_dim", "hidden_dim", "stoch_discrete", "stoch_classes", "action_dim"])
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_dims_are_rejected_by_name(field, value) -> None:
    with pytest.raises(ConfigurationError, match=field):
        DreamerV3Config.from_size("ci", **{field: value})


def test_kl_balance_maps_onto_the_dynamics_and_representation_scales() -> None:
    cfg = DreamerV3Config.from_size("ci", kl_balance=0.5)
    assert cfg.loss_scales["kl_dynamics"] == pytest.approx(0.3)
    assert cfg.loss_scales["kl_representation"] == pytest.approx(0.3)
    assert DreamerV3Config.from_dict(cfg.to_dict()).loss_scales == cfg.loss_scales
    assert "kl_balance" not in DreamerV3Config.from_size("ci").to_dict()
    with pytest.raises(ConfigurationError, match="kl_balance"):
        DreamerV3Config.from_size("ci", kl_balance=1.5)


def test_config_dict_round_trip() -> None:
    cfg = DreamerV3Config.from_size("size25m", obs_shape=(3, 64, 64), action_dim=18)
    data = cfg.to_dict()
    assert data["latent_type"] == "categorical" and data["obs_shape"] == [3, 64, 64]
    assert DreamerV3Config.from_dict(data) == cfg


def test_hwc_looking_obs_shape_is_explained() -> None:
    with (
        warnings.catch_warnings(record=True) as caught,
        pytest.raises(ConfigurationError, match=r"\(H, W, C\)"),
    ):
        warnings.simplefilter("always")
        DreamerV3Config.from_size("ci", obs_shape=(64, 64, 3))
    assert any("(H, W, C)" in str(w.message) for w in caught)


# -- math ------------------------------------------------------------------------------------------
def test_symlog_symexp_are_inverse() -> None:
    x = jnp.array([-1e3, -2.5, -1e-3, 0.0, 1e-3, 3.0, 1e4])
    np.testing.assert_allclose(symexp(symlog(x)), x, rtol=1e-5)


def test_twohot_round_trips_values_inside_the_bins() -> None:
    bins = jnp.linspace(-20.0, 20.0, 255)
    x = jnp.array([-19.9, -3.21, 0.0, 0.07, 12.5])
    target = twohot_encode(x, bins)
    np.testing.assert_allclose(target.sum(-1), 1.0, rtol=1e-6)
    assert int((target > 0).sum(-1).max()) <= 2
    np.testing.assert_allclose((target * bins).sum(-1), x, atol=1e-4)
    np.testing.assert_allclose(twohot_encode(jnp.array([50.0]), bins)[0, -1], 1.0, rtol=1e-6)
    logits = jnp.log(target + 1e-12)
    np.testing.assert_allclose(twohot_expected_value(logits, bins), x, atol=1e-3)


def test_kl_free_nats_clamp_the_summed_kl() -> None:
    key = jax.random.key(0)
    post, prior = jax.random.normal(key, (2, 5, 4, 4))
    raw = categorical_kl(post, prior)
    assert raw.shape == (5,) and bool(jnp.all(raw >= 0))
    np.testing.assert_allclose(categorical_kl(post, prior, 1e3), 1e3)
    np.testing.assert_allclose(categorical_kl(post, post), 0.0, atol=1e-6)


def test_stochastic_samples_follow_the_softmax() -> None:
    logits = jnp.array([[1.0, 0.0, -1.0, 0.5]])
    n = 40_000
    keys = jax.random.split(jax.random.key(1), n)
    raw = jax.vmap(lambda k: sample_categorical(logits, "sample", k))(keys)[:, 0]
    # Straight-through draws equal one-hot vectors up to float rounding of `hard + soft - sg(soft)`.
    draws = jnp.round(raw)
    np.testing.assert_allclose(raw, draws, atol=1e-6)
    assert bool(jnp.all(draws.sum(-1) == 1.0))
    freq = np.asarray(draws.mean(0))
    probs = np.asarray(jax.nn.softmax(logits[0]))
    # Chi-square goodness of fit, 3 degrees of freedom: 16.27 is the 0.1% critical value.
    chi2 = float(n * np.sum((freq - probs) ** 2 / probs))
    assert chi2 < 16.27, (freq, probs)


def test_straight_through_samples_pass_softmax_gradients() -> None:
    logits = jnp.array([[0.3, -0.2, 0.1]])
    weights = jnp.array([1.0, 2.0, 3.0])

    def weighted(x, sampling):
        return (sample_categorical(x, sampling, jax.random.key(0)) * weights).sum()

    for sampling in ("sample", "mode"):
        assert float(jnp.abs(jax.grad(weighted)(logits, sampling)).sum()) > 0
    assert float(jnp.abs(jax.grad(weighted)(logits, "argmax")).sum()) == 0


def test_invalid_sampling_is_rejected() -> None:
    model = DreamerV3(small_config())
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match="sampling must be one of"):
        model.encode(params, jnp.zeros((1, 6)), sampling="gumbel")


# -- model functions -------------------------------------------------------------------------------
def test_state_shapes_and_keys() -> None:
    cfg = small_config()
    model = DreamerV3(cfg)
    params = model.init(jax.random.key(0))
    obs = jnp.zeros((3, 6))
    encoded = model.encode(params, obs, jax.random.key(1))
    assert set(encoded) == {"deter", "stoch", "logits", "prior_logits", "posterior_logits"}
    assert encoded["deter"].shape == (3, 64) and encoded["stoch"].shape == (3, 4, 4)
    prior = model.transition(params, encoded, jnp.zeros((3, 2)), sampling="argmax")
    assert set(prior) == {"deter", "stoch", "logits", "prior_logits"}
    decoded = model.decode(params, prior)
    assert decoded["obs"].shape == (3, 6) and decoded["reward"].shape == (3, 1)
    states, rewards, continues = model.rollout(params, encoded, jnp.zeros((5, 3, 2)), jax.random.key(2))
    assert states["deter"].shape == (5, 3, 64) and rewards.shape == (5, 3) and continues.shape == (5, 3)
    init = model.initial_state(3)
    np.testing.assert_array_equal(init["stoch"][:, :, 0], 1.0)


def test_sampled_loops_draw_what_step_by_step_calls_with_split_keys_draw() -> None:
    # The loops draw every step's Gumbel noise before the loop; step t must use jax.random.split(key, T)[t].
    model = DreamerV3(small_config())
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(3)
    b, t = 3, 5
    obs = jnp.asarray(rng.standard_normal((b, t, 6)), jnp.float32)
    actions = jnp.asarray(rng.uniform(-1, 1, (b, t, 2)), jnp.float32)
    key = jax.random.key(7)
    keys = jax.random.split(key, t)

    filtered = model.observe(params, obs, actions, key)
    state = model.initial_state(b)
    for i in range(t):
        action = jnp.zeros((b, 2)) if i == 0 else actions[:, i - 1]
        state = model.update(params, state, action, obs[:, i], keys[i])
        np.testing.assert_array_equal(jnp.argmax(filtered["stoch"][i], -1), jnp.argmax(state["stoch"], -1))
        np.testing.assert_allclose(filtered["deter"][i], state["deter"], atol=1e-5)

    plan = jnp.swapaxes(actions, 0, 1)
    imagined, _, _ = model.rollout(params, state, plan, key)
    for i in range(t):
        state = model.transition(params, state, plan[i], keys[i])
        np.testing.assert_array_equal(jnp.argmax(imagined["stoch"][i], -1), jnp.argmax(state["stoch"], -1))
        np.testing.assert_allclose(imagined["deter"][i], state["deter"], atol=1e-5)


def test_encode_is_the_posterior_step_from_the_initial_state() -> None:
    model = DreamerV3(small_config())
    params = model.init(jax.random.key(0))
    params = jax.tree.map(lambda p: p + 0.1, params)  # nonzero GRU biases and weights everywhere
    obs = jnp.asarray(np.random.default_rng(0).standard_normal((3, 6)), jnp.float32)
    encoded = model.encode(params, obs, sampling="mode")
    updated = model.update(params, model.initial_state(3), jnp.zeros((3, 2)), obs, sampling="mode")
    assert set(encoded) == set(updated)
    for key in encoded:
        np.testing.assert_array_equal(encoded[key], updated[key], err_msg=key)


def test_loss_handles_a_single_step_sequence() -> None:
    model = DreamerV3(small_config())
    params = model.init(jax.random.key(0))
    batch = Batch(jnp.ones((2, 1, 6)), jnp.zeros((2, 1, 2)), jnp.zeros((2, 1)), jnp.zeros((2, 1)))
    total, parts = model.loss(params, batch, sampling="mode")
    assert np.isfinite(float(total)) and float(parts["reward"]) == 0.0


def test_state_dict_errors_name_the_tensors() -> None:
    model = DreamerV3(small_config())
    state = model.to_torch_state_dict(model.init(jax.random.key(0)))
    del state["rssm.gru.weight_hh"]
    state["encoder.mlp.0.weight"] = np.zeros((3, 3), np.float32)
    state["not.a.param"] = np.zeros(1, np.float32)
    with pytest.raises(StateDictError) as err:
        model.from_torch_state_dict(state)
    message = str(err.value)
    assert "rssm.gru.weight_hh" in message and "not.a.param" in message and "encoder.mlp.0.weight" in message


def test_converter_round_trip_for_other_shapes() -> None:
    cfg = DreamerV3Config.from_size("ci", obs_shape=(1, 32, 48), action_dim=3, cnn_depth=4)
    model = DreamerV3(cfg)
    params = model.init(jax.random.key(3))
    back = model.from_torch_state_dict(model.to_torch_state_dict(params))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.jit(model.decode)(params, model.initial_state(2))["obs"].shape == (2, 1, 32, 48)


# -- train step ------------------------------------------------------------------------------------
def _train_setup(cfg, trace_counter=None):
    model = DreamerV3(cfg)
    optimizer = make_optimizer(3e-4, grad_clip=100.0)
    state = create_train_state(model.init(jax.random.key(0)), optimizer)

    def loss_fn(params, extras, batch, key):
        if trace_counter is not None:
            trace_counter.append(1)
        return model.train_loss(params, extras, batch, key)

    return model, state, make_train_step(loss_fn, optimizer)


def test_train_step_compiles_once_and_donates_the_state() -> None:
    traces: list[int] = []
    env = PointMass()
    _, state, train_step = _train_setup(small_config(), traces)
    key = jax.random.key(0)
    for _ in range(3):
        key, data_key, step_key = jax.random.split(key, 3)
        batch = Batch(*env.generate(data_key, 4, 8))
        old_leaf = jax.tree.leaves(state.params)[0]
        # The step never copies to the host: metrics stay on the device until asked for.
        with jax.transfer_guard_device_to_host("disallow"):
            state, metrics = train_step(state, batch, step_key)
        assert old_leaf.is_deleted()
    assert len(traces) == 1
    assert int(state.step) == 3
    assert set(metrics) >= {
        "loss",
        "kl_dynamics",
        "kl_representation",
        "kl",
        "reconstruction",
        "reward",
        "continue",
        "grad_norm",
    }
    assert all(isinstance(v, jax.Array) for v in metrics.values())


@pytest.mark.slow
def test_loss_falls_and_open_loop_beats_repeating_the_last_observation() -> None:
    env = PointMass()
    cfg = small_config(deter_dim=128, hidden_dim=128, stoch_discrete=8, stoch_classes=8)
    model, state, train_step = _train_setup(cfg)
    generate = jax.jit(lambda k: Batch(*env.generate(k, 16, 32)))
    key = jax.random.key(0)
    losses = []
    for i in range(600):
        key, data_key, step_key = jax.random.split(key, 3)
        state, metrics = train_step(state, generate(data_key), step_key)
        if i < 5 or i >= 575:
            losses.append(float(metrics["loss"]))
    start, end = np.mean(losses[:5]), np.mean(losses[-25:])
    assert end < 0.4 * start, (start, end)
    held_out = Batch(*env.generate(jax.random.key(123), 64, 32))
    model_err, baseline_err = open_loop_error(model, state.params, held_out, context=8)
    assert model_err < baseline_err, (model_err, baseline_err)


def test_planners_drive_the_dreamer_model() -> None:
    from worldflux_jax.dreamer import planning_state
    from worldflux_jax.planners import make_cem_planner, make_mppi_planner

    model = DreamerV3(small_config())
    params = model.init(jax.random.key(0))
    state = planning_state(model.encode(params, jnp.zeros((3, 6)), sampling="mode"))
    pm = model.planning_model()
    cem = make_cem_planner(pm, horizon=4, action_dim=2, num_samples=32, num_elites=4, iterations=2,
                           action_low=-1.0, action_high=1.0)
    plan = cem(params, state, jax.random.key(1))
    assert plan.shape == (3, 4, 2) and bool(jnp.all(jnp.abs(plan) <= 1.0))
    mppi = make_mppi_planner(pm, horizon=4, action_dim=2, num_samples=32, num_elites=4, iterations=2)
    result = mppi(params, state, jax.random.key(2))
    assert result.actions.shape == (3, 4, 2) and bool(jnp.all(jnp.isfinite(result.actions)))
