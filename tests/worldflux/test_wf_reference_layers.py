"""The reference's torch layer classes (``worldflux.models.dreamer`` / ``worldflux.models.tdmpc2``): they load the
reference fixtures' weights and our JAX models' exported ``state_dict()`` with ``strict=True``, reproduce the
fixtures, agree with the JAX models on the same inputs, and the helper functions match their definitions."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import FIXTURES
from worldflux import create_world_model
from worldflux.core.latent_space import SimNormLatentSpace
from worldflux.models import dreamer as wd
from worldflux.models import tdmpc2 as wt
from worldflux_jax.actor_critic import td_lambda

TOL = {"rtol": 1e-4, "atol": 1e-5}


def _fixture(case: str) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(FIXTURES / f"{case}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads((FIXTURES / f"{case}.json").read_text())


def _params(arrays: dict[str, np.ndarray], prefix: str = "") -> dict[str, torch.Tensor]:
    return {k.removeprefix("param/" + prefix): torch.from_numpy(v) for k, v in arrays.items()
            if k.startswith("param/" + prefix)}


# ---------------------------------------------------------------------------------------------- DreamerV3


class DreamerTree(nn.Module):
    """The reference DreamerV3 model's children, built from the reference layer classes."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        obs_shape, act = tuple(cfg["obs_shape"]), cfg["action_dim"]
        deter, hidden, disc, cls = cfg["deter_dim"], cfg["hidden_dim"], cfg["stoch_discrete"], cfg["stoch_classes"]
        kernels = tuple(cfg["cnn_kernels"])
        if cfg["encoder_type"] == "cnn":
            self.encoder = wd.CNNEncoder(obs_shape, cfg["cnn_depth"], kernels)
        else:
            self.encoder = wd.MLPEncoder(int(np.prod(obs_shape)), hidden, deter)
        self.rssm = wd.RSSM(self.encoder.output_dim, act, deter, disc, cls, hidden)
        if cfg["decoder_type"] == "cnn":
            self.decoder = wd.CNNDecoder(self.rssm.feature_dim, obs_shape, cfg["cnn_depth"], kernels)
        else:
            self.decoder = wd.MLPDecoder(self.rssm.feature_dim, obs_shape, hidden)
        self.reward_head = wd.RewardHead(self.rssm.feature_dim, hidden, use_symlog=True, use_twohot=True)
        self.continue_head = wd.ContinueHead(self.rssm.feature_dim, hidden)
        self.register_buffer("_device_tracker", torch.empty(0))

    def encode(self, obs: torch.Tensor, sampling: str = "mode"):
        initial = self.rssm.initial_state(obs.shape[0])
        zeros = torch.zeros(obs.shape[0], self.rssm.action_dim)
        return self.rssm.posterior_step(initial, zeros, self.encoder(obs), sampling=sampling)

    def decode(self, state) -> dict[str, torch.Tensor]:
        features = torch.cat([state.tensors["deter"], state.tensors["stoch"].flatten(1)], -1)
        return {"obs": self.decoder(features), "reward": self.reward_head.predict(features),
                "continue": self.continue_head(features)}


@pytest.mark.parametrize("case", ["dreamerv3_ci_vector", "dreamerv3_ci_image"])
def test_dreamer_layers_reproduce_the_reference_fixture(case):
    arrays, meta = _fixture(case)
    tree = DreamerTree(meta["config"])
    tree.load_state_dict({**_params(arrays), "_device_tracker": torch.empty(0)}, strict=True)
    obs, actions = torch.from_numpy(arrays["input/obs"]), torch.from_numpy(arrays["input/actions"])
    with torch.no_grad():
        state = tree.encode(obs[:, 0])
        for key in ("deter", "stoch", "logits"):
            np.testing.assert_allclose(state.tensors[key].numpy(), arrays[f"encode/{key}"], **TOL)
        nxt = tree.rssm.prior_step(state, actions[:, 0], deterministic=True)
        for key in ("deter", "stoch", "prior_logits"):
            np.testing.assert_allclose(nxt.tensors[key].numpy(), arrays[f"transition/{key}"], **TOL)
        decoded = tree.decode(nxt)
    np.testing.assert_allclose(decoded["obs"].numpy(), arrays["decode/obs"], **TOL)
    np.testing.assert_allclose(decoded["reward"].numpy(), arrays["decode/reward"][:, 0], **TOL)
    np.testing.assert_allclose(decoded["continue"].numpy(), arrays["decode/continue"], **TOL)


def test_dreamer_layers_load_our_export_and_match_the_jax_model():
    _, meta = _fixture("dreamerv3_ci_vector")
    model = create_world_model("dreamerv3:ci", **meta["overrides"])
    model.sampling = "mode"
    tree = DreamerTree(model.config.to_dict())
    tree.load_state_dict(model.state_dict(), strict=True)  # our export is the reference layout
    obs = torch.randn(5, *model.config.obs_shape, generator=torch.Generator().manual_seed(0))
    action = torch.randn(5, model.config.action_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model.encode(obs), tree.encode(obs)
        for key in ("deter", "stoch", "logits"):
            np.testing.assert_allclose(ours.tensors[key].numpy(), theirs.tensors[key].numpy(), **TOL)
        ours_next = model.transition(ours, action, deterministic=True)
        theirs_next = tree.rssm.prior_step(theirs, action, deterministic=True)
        np.testing.assert_allclose(ours_next.tensors["deter"].numpy(), theirs_next.tensors["deter"].numpy(), **TOL)
        decoded = model.decode(ours_next).predictions
        mine = tree.decode(theirs_next)
    np.testing.assert_allclose(decoded["reward"][:, 0].numpy(), mine["reward"].numpy(), **TOL)
    np.testing.assert_allclose(decoded["obs"].numpy(), mine["obs"].numpy(), **TOL)


def test_dreamer_functions():
    x = torch.tensor([-3.0, -0.5, 0.0, 2.0])
    assert torch.allclose(wd.symexp(wd.symlog(x)), x, atol=1e-6)
    assert torch.allclose(wd.symlog(torch.tensor([np.e - 1.0])), torch.tensor([1.0]))
    assert torch.isfinite(wd.symexp(torch.tensor([1000.0]))).all()
    bins = torch.linspace(-1.0, 1.0, 5)  # -1, -0.5, 0, 0.5, 1
    target = wd.twohot_encode(torch.tensor([0.25, 5.0]), bins)
    assert torch.allclose(target[0], torch.tensor([0.0, 0.0, 0.5, 0.5, 0.0]))
    assert torch.allclose(target[1], torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))  # clamped to the last bin
    logits = torch.log(target[:1] + 1e-12)
    assert torch.allclose(wd.twohot_expected_value(logits, bins), torch.tensor([0.25]), atol=1e-6)


def test_compute_td_lambda_by_hand_and_against_the_jax_core():
    rewards = torch.tensor([[1.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [3.0]])
    continues = torch.tensor([[1.0], [0.0]])
    # R_1 = 2 + 0.5*0*(...) = 2; R_0 = 1 + 0.5*1*((1-0.5)*1.0 + 0.5*2) = 1.75
    out = wd.compute_td_lambda(rewards, values, continues, gamma=0.5, lambda_=0.5)
    assert torch.allclose(out, torch.tensor([[1.75], [2.0]]))
    g = torch.Generator().manual_seed(3)
    r, v, c = torch.randn(7, 4, generator=g), torch.randn(8, 4, generator=g), torch.rand(7, 4, generator=g)
    jax_out = td_lambda(jnp.asarray(r.numpy()), jnp.asarray(v.numpy()), jnp.asarray(c.numpy()), 0.997, 0.95)
    np.testing.assert_allclose(wd.compute_td_lambda(r, v, c).numpy(), np.asarray(jax_out), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="values"):
        wd.compute_td_lambda(r, v[:-1], c)


def test_actor_and_critic_heads():
    torch.manual_seed(0)
    features = torch.randn(6, 10)
    discrete = wd.DiscreteActorHead(10, 3, hidden_dim=8)
    action, log_prob = discrete.sample(features)
    assert torch.allclose(action.detach().sum(-1), torch.ones(6)) and log_prob.shape == (6,)
    probs = torch.softmax(discrete(features), -1)
    assert torch.allclose(log_prob, torch.log((probs * action.detach()).sum(-1)))
    assert (discrete.entropy(features) <= np.log(3) + 1e-6).all()
    continuous = wd.ContinuousActorHead(10, 2, hidden_dim=8)
    action, log_prob = continuous.sample(features)
    assert action.shape == (6, 2) and (action.abs() < 1).all() and log_prob.shape == (6,)
    assert (continuous(features)[1] >= 0.1).all()  # min_std
    critic = wd.CriticHead(10, hidden_dim=8)
    assert critic(features).shape == (6, 255)
    assert torch.allclose(critic.predict(features), wd.symexp(wd.twohot_expected_value(critic(features), critic.bins)))
    assert set(critic.state_dict()) >= {"bins", "mlp.0.weight", "mlp.6.bias"}


# ---------------------------------------------------------------------------------------------- TD-MPC2


class TDMPC2Tree(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        obs_dim, act, lat, hid = int(np.prod(cfg["obs_shape"])), cfg["action_dim"], cfg["latent_dim"], cfg["hidden_dim"]
        self._encoder = wt.MLPEncoder(obs_dim, hid, lat)
        self._dynamics = wt.Dynamics(lat, act, hid, cfg["num_tasks"], cfg["task_dim"])
        self._reward_head = wt.RewardHead(lat, act, hid)
        self._q_ensemble = wt.QEnsemble(lat, act, hid, cfg["num_q_networks"])
        self._policy = wt.PolicyHead(lat, act, hid)
        self.simnorm = SimNormLatentSpace(lat, cfg["simnorm_dim"])

    def encode(self, obs):
        return self.simnorm.sample(self._encoder(obs))

    def transition(self, z, action):
        return self.simnorm.sample(z + self._dynamics(z, action))


_CANONICAL = ("_encoder.", "_dynamics.", "_reward_head.", "_q_ensemble.", "_policy.")


def _canonical(state_dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state_dict.items() if k.startswith(_CANONICAL)}


def test_tdmpc2_layers_reproduce_the_reference_fixture():
    arrays, meta = _fixture("tdmpc2_ci")
    tree = TDMPC2Tree(meta["config"])
    tree.load_state_dict(_canonical(_params(arrays)), strict=True)
    obs, actions = torch.from_numpy(arrays["input/obs"]), torch.from_numpy(arrays["input/actions"])
    with torch.no_grad():
        z = tree.encode(obs[:, 0])
        np.testing.assert_allclose(z.numpy(), arrays["encode/latent"], **TOL)
        z_next = tree.transition(z, actions[:, 0])
        np.testing.assert_allclose(z_next.numpy(), arrays["transition/latent"], **TOL)
        policy = tree._policy(z_next)
        np.testing.assert_allclose(policy.numpy(), arrays["decode/action"], **TOL)
        np.testing.assert_allclose(tree._reward_head(z_next, policy).numpy(), arrays["decode/reward"], **TOL)
        np.testing.assert_allclose(tree._q_ensemble(z_next, policy).numpy(), arrays["decode/q_values"], **TOL)


def test_tdmpc2_layers_load_our_export_and_match_the_jax_model():
    model = create_world_model("tdmpc2:ci", obs_shape=(7,), action_dim=2)
    tree = TDMPC2Tree(model.config.to_dict())
    tree.load_state_dict(_canonical(model.state_dict()), strict=True)
    obs = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    action = torch.rand(5, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        state = model.encode(obs)
        np.testing.assert_allclose(state.tensors["latent"].numpy(), tree.encode(obs).numpy(), **TOL)
        z = state.tensors["latent"]
        np.testing.assert_allclose(model.transition(state, action).tensors["latent"].numpy(),
                                   tree.transition(z, action).numpy(), **TOL)


def test_tdmpc2_dynamics_task_embedding_and_guards():
    dynamics = wt.Dynamics(8, 2, 16, num_tasks=3, task_dim=4)
    assert "task_embedding.weight" in dynamics.state_dict()
    z, a = torch.randn(5, 8), torch.randn(5, 2)
    assert not torch.equal(dynamics(z, a, torch.tensor([0, 1, 2, 2, 9])), dynamics(z, a))
    with torch.no_grad():
        dynamics.mlp[-1].weight.mul_(1e4)
    big = dynamics(z, a)
    assert (big.norm(dim=-1) <= 10.0 + 1e-4).all()
    assert torch.isfinite(dynamics(torch.full((1, 8), float("nan")), torch.zeros(1, 2))).all()
    assert wt.QEnsemble(8, 2, 16, num_q_networks=4)(z, a).shape == (4, 5, 1)
    with pytest.raises(ValueError, match="num_q_networks"):
        wt.QEnsemble(8, 2, 16, num_q_networks=0)
