"""Pure-JAX pieces of the experimental families: tokenizers, the diffusion schedule and sampler, the family
registry and the torch state-dict round trip (no ``worldflux`` shell involved)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from worldflux_jax import experimental_config as xc
from worldflux_jax.diffusion import TERMINAL_SIGNAL, Diffusion, schedule
from worldflux_jax.errors import ConfigurationError
from worldflux_jax.family import as_family, config_from_id, family_for
from worldflux_jax.jepa import JEPA, VJEPA2
from worldflux_jax.token_model import Tokenizer, TokenModel
from worldflux_jax.torch_layout import StateDictError
from worldflux_jax.transformer import to_tokens, token_layout


def test_observation_tokens_cover_images_and_vectors():
    assert token_layout((3, 16, 16)) == (16, 48) and token_layout((5,)) == (5, 1) and token_layout((40,)) == (16, 3)
    image = jnp.arange(2 * 3 * 16 * 16, dtype=jnp.float32).reshape(2, 3, 16, 16)
    tokens = to_tokens(image, (3, 16, 16))
    assert tokens.shape == (2, 16, 48)
    np.testing.assert_array_equal(tokens[1, 5].reshape(3, 4, 4), image[1, :, 4:8, 4:8])  # patch (row 1, col 1)
    vector = to_tokens(jnp.ones((2, 40)), (40,))
    assert vector.shape == (2, 16, 3) and float(vector.sum()) == 80.0  # zero padding only


def test_token_quantization_round_trips_within_one_bin():
    tok = Tokenizer((6,), 1024)
    values = jnp.array([[-20.0, -1.0, -0.01, 0.0, 0.5, 30.0]])
    ids = tok.tokenize(values)
    assert ids.dtype == jnp.int32 and int(ids.min()) >= 0 and int(ids.max()) <= 1023
    back = tok.detokenize(ids)
    bin_width = 10.0 / 1023  # in symlog space
    err = np.abs(np.sign(values) * np.log1p(np.abs(values)) - np.sign(back) * np.log1p(np.abs(back)))
    assert float(err.max()) <= bin_width / 2 + 1e-6
    image = Tokenizer((3, 8, 8), 16)
    assert image.num_tokens == 48 and image.detokenize(image.tokenize(jnp.ones((2, 3, 8, 8)))).shape == (2, 3, 8, 8)
    chunks = Tokenizer((100,), 16)
    assert chunks.num_tokens == 50 and chunks.values(jnp.ones((1, 100))).shape == (1, 50)


def test_diffusion_schedule_keeps_the_first_step_and_ends_at_the_terminal_signal():
    sch = schedule(4, 1e-4, 0.02)
    assert np.isclose(sch["signal"][0], np.sqrt(1 - 1e-4)) and np.isclose(sch["signal"][-1], TERMINAL_SIGNAL)
    assert np.all(np.diff(sch["signal"]) < 0) and np.all((sch["beta"] > 0) & (sch["beta"] < 1))
    np.testing.assert_allclose(sch["signal"] ** 2 + sch["noise"] ** 2, 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.cumprod(sch["alpha"]), sch["abar"], rtol=1e-5)
    assert np.isclose(schedule(1, 1e-4, 0.02)["signal"][0], TERMINAL_SIGNAL)


@pytest.mark.parametrize("target", ["noise", "x0", "v"])
def test_diffusion_sampler_returns_x0_when_the_denoiser_is_exact(target):
    """With a denoiser that predicts its target from the true x0, K deterministic DDPM steps recover x0."""
    config = xc.DiffusionWorldModelConfig(obs_shape=(3,), action_dim=1, hidden_dim=8, prediction_target=target)
    fam = Diffusion(config)
    x0_true = jnp.array([[0.5, -1.0, 2.0]])
    sch = fam.schedule

    class Exact:
        def apply(self, variables, x, k, cond, action):
            s, n = jnp.asarray(sch["signal"])[k][:, None], jnp.asarray(sch["noise"])[k][:, None]
            eps = (x - s * x0_true) / n
            return {"noise": eps, "x0": x0_true, "v": s * eps - n * x0_true}[target]

    fam.modules["denoiser"] = Exact()
    state = {"obs": jnp.zeros((1, 3))}
    out = fam.transition({"denoiser": {}}, state, jnp.zeros((1, 1)), None, True)
    np.testing.assert_allclose(out["obs"], x0_true, rtol=1e-4, atol=1e-4)


def test_core_registry_builds_every_family_from_an_id():
    expected = {"jepa:ci": JEPA, "vjepa2:ci": VJEPA2, "token:ci": TokenModel, "diffusion:ci": Diffusion}
    for model_id, cls in expected.items():
        fam = family_for(config_from_id(model_id, obs_shape=(4,), action_dim=2))
        assert type(fam) is cls and as_family(fam) is fam
    with pytest.raises(ConfigurationError, match="unknown model family 'dit'"):
        config_from_id("dit:base")


def test_state_dict_round_trip_and_named_errors():
    fam = JEPA(xc.JEPABaseConfig.from_size("ci", obs_shape=(4,), action_dim=2))
    params = jax.jit(fam.init)(jax.random.key(0))
    target = jax.tree.map(lambda x: np.asarray(x) + 1.0, params["encoder"])
    sd = fam.torch_state_dict(params, target)
    assert list(sd) == fam.state_dict_names() and "encoder.pos_embed.weight" in sd
    assert sd["encoder.embed.weight"].shape == (32, 1)  # torch Linear layout [out, in]
    back, back_target = fam.from_torch_state_dict(sd)
    same = jax.tree.map(lambda a, b: np.array_equal(a, b), (params, target), (back, back_target))
    assert all(jax.tree.leaves(same))
    online_only = {k: v for k, v in sd.items() if not k.startswith("_target_encoder.")}
    _, copied = fam.from_torch_state_dict(online_only)
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: np.array_equal(a, b), copied, params["encoder"])))
    with pytest.raises(StateDictError, match=r"missing keys \['predictor.mlp.0.bias'\]"):
        fam.from_torch_state_dict({k: v for k, v in sd.items() if k != "predictor.mlp.0.bias"})


@settings(max_examples=25, deadline=None)
@given(
    values=hnp.arrays(np.float32, (1, 8), elements=st.floats(-1e3, 1e3, width=32)),
    vocab=st.integers(2, 4096),
)
def test_token_ids_are_in_range_and_monotonic(values, vocab):
    tok = Tokenizer((8,), vocab)
    ids = np.asarray(tok.tokenize(jnp.asarray(values)))
    assert ids.min() >= 0 and ids.max() <= vocab - 1
    order = np.argsort(values[0], kind="stable")
    assert np.all(np.diff(ids[0][order]) >= 0)  # a larger value never gets a smaller token
    again = np.asarray(tok.tokenize(tok.detokenize(jnp.asarray(ids))))
    np.testing.assert_array_equal(again, ids)  # bin centres map back to their own bin
