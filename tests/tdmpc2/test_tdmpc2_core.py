"""TD-MPC2 core: fixture parity, parity with a torch replica at other dims, converter, train step."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn as tnn

from tests.helpers import FIXTURES
from worldflux_jax import parity
from worldflux_jax.config import TDMPC2Config
from worldflux_jax.envs import PointMass
from worldflux_jax.simnorm import simnorm
from worldflux_jax.tdmpc2 import LOSS_KEYS, TDMPC2, Batch
from worldflux_jax.torch_layout import StateDictError
from worldflux_jax.train import make_optimizer, make_train_step

CASE = FIXTURES / "tdmpc2_ci.npz"


def tiny(**overrides) -> TDMPC2Config:
    base = dict(obs_shape=(6,), action_dim=2)
    return TDMPC2Config.from_size("ci", **{**base, **overrides})


def _load_case() -> tuple[TDMPC2Config, dict[str, np.ndarray]]:
    meta = json.loads(CASE.with_suffix(".json").read_text())
    with np.load(CASE) as data:
        arrays = {k: data[k] for k in data.files}
    return TDMPC2Config.from_dict(meta["config"]), arrays


def _perturbed(tree, key, scale=0.05):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, noisy)


# -- fixture parity ----------------------------------------------------------------------------------
def test_every_fixture_key_matches_the_reference() -> None:
    config, arrays = _load_case()
    got = parity.RECOMPUTE[config.model_type](config, arrays)  # the parity tool's registry entry
    groups = ("encode", "transition", "decode", "rollout", "loss", "grad")
    compared = [k for k in arrays if k.split("/")[0] in groups]
    names = TDMPC2(config).parameter_names()
    assert {k for k in compared if k.startswith("grad/")} == {f"grad/{n}" for n in names}
    for key in compared:
        rtol, atol = (1e-3, 1e-5) if key.startswith("grad/") else (1e-4, 1e-5)
        np.testing.assert_allclose(np.asarray(got[key]), arrays[key], rtol=rtol, atol=atol, err_msg=key)


def test_exported_state_dict_has_the_reference_key_set() -> None:
    config, arrays = _load_case()
    model = TDMPC2(config)
    ref = {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")}
    params, target = model.from_torch_state_dict(ref)
    out = model.to_torch_state_dict(params, target)
    assert set(out) == set(ref) | {"_device_tracker"}
    assert out["_device_tracker"].shape == (0,) and out["_device_tracker"].dtype == np.float32
    for k, v in ref.items():
        np.testing.assert_array_equal(out[k], v, err_msg=k)


# -- a torch replica of the reference architecture, at other dims -----------------------------------
def _seq(d_in: int, hidden: int, d_out: int, layers: int, tanh: bool = False) -> tnn.Sequential:
    mods: list[tnn.Module] = []
    for _ in range(layers):
        mods += [tnn.Linear(d_in, hidden), tnn.LayerNorm(hidden), tnn.Mish()]
        d_in = hidden
    mods.append(tnn.Linear(d_in, d_out))
    if tanh:
        mods.append(tnn.Tanh())
    return tnn.Sequential(*mods)


class _Holder(tnn.Module):
    def __init__(self, mlp: tnn.Sequential) -> None:
        super().__init__()
        self.mlp = mlp


class _TorchDynamics(tnn.Module):
    def __init__(self, cfg: TDMPC2Config) -> None:
        super().__init__()
        extra = cfg.task_dim if cfg.num_tasks > 1 else 0
        self.task_embedding = tnn.Embedding(cfg.num_tasks, cfg.task_dim) if cfg.num_tasks > 1 else None
        self.mlp = _seq(cfg.latent_dim + cfg.action_dim + extra, cfg.hidden_dim, cfg.latent_dim, 2)


class _TorchQEnsemble(tnn.Module):
    def __init__(self, cfg: TDMPC2Config) -> None:
        super().__init__()
        d = cfg.latent_dim + cfg.action_dim
        self.q_networks = tnn.ModuleList(
            [_Holder(_seq(d, cfg.hidden_dim, 1, 2)) for _ in range(cfg.num_q_networks)])

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        za = torch.cat([z, a], -1)
        return torch.stack([q.mlp(za) for q in self.q_networks], 0)[..., 0]  # [K, B]


class TorchTDMPC2(tnn.Module):
    """Reference module names, aliases and guards (worldflux-api.md §4.4, §5.2), written independently."""

    def __init__(self, cfg: TDMPC2Config) -> None:
        super().__init__()
        self.cfg = cfg
        h, lat, a = cfg.hidden_dim, cfg.latent_dim, cfg.action_dim
        self._encoder = _Holder(_seq(int(np.prod(cfg.obs_shape)), h, lat, 2))
        self._dynamics = _TorchDynamics(cfg)
        self._reward_head = _Holder(_seq(lat + a, h, 1, 1))
        self._q_ensemble = _TorchQEnsemble(cfg)
        self._target_q_ensemble = _TorchQEnsemble(cfg)
        self._policy = _Holder(_seq(lat, h, a, 1, tanh=True))
        self.encoder = self._encoder.mlp
        self.dynamics = self._dynamics.mlp
        self.task_embedding = self._dynamics.task_embedding
        self.reward_head = self._reward_head.mlp
        self.q_networks = tnn.ModuleList([q.mlp for q in self._q_ensemble.q_networks])
        self.policy = self._policy.mlp
        self.register_buffer("_device_tracker", torch.empty(0))

    def simnorm(self, x: torch.Tensor) -> torch.Tensor:
        g = self.cfg.simnorm_dim
        return F.softmax(x.view(*x.shape[:-1], -1, g), -1).view(x.shape)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.simnorm(self.encoder(obs.flatten(1)))

    def transition(self, z: torch.Tensor, a: torch.Tensor, task_id: torch.Tensor | None = None):
        guard = lambda x: torch.nan_to_num(x, 0.0, 1e4, -1e4).clamp(-1e4, 1e4)  # noqa: E731
        parts = [guard(z), guard(a)]
        if self.task_embedding is not None:
            emb = (torch.zeros(z.shape[0], self.cfg.task_dim) if task_id is None
                   else self.task_embedding(task_id.long().clamp(0, self.cfg.num_tasks - 1)))
            parts.append(emb)
        delta = torch.nan_to_num(self.dynamics(guard(torch.cat(parts, -1))), 0.0, 1e4, -1e4)
        scale = torch.clamp(10.0 / (delta.norm(dim=-1, keepdim=True) + 1e-6), max=1.0)
        return self.simnorm(z + delta * scale)

    def reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.reward_head(torch.cat([z, a], -1))[:, 0]

    def loss(self, obs, actions, rewards, terms) -> dict[str, torch.Tensor]:
        b, t = obs.shape[:2]
        z_all = self.encode(obs.reshape(b * t, -1)).view(b, t, -1)
        out = dict.fromkeys(LOSS_KEYS, torch.zeros(()))
        for i in range(t - 1):
            z, a, tgt = z_all[:, i], actions[:, i], z_all[:, i + 1].detach()
            out["consistency"] = out["consistency"] + F.mse_loss(self.transition(z, a), tgt)
            out["reward"] = out["reward"] + F.mse_loss(self.reward(z, a), rewards[:, i + 1])
            with torch.no_grad():
                q_next = self._target_q_ensemble(tgt, self.policy(tgt)).min(0)[0]
                y = rewards[:, i + 1] + self.cfg.gamma * (1 - terms[:, i + 1]) * q_next
            out["td"] = out["td"] + F.mse_loss(self._q_ensemble(z, a).mean(0), y)
            zs = z.detach()
            out["policy"] = out["policy"] - self._q_ensemble(zs, self.policy(zs)).min(0)[0].mean()
        out = {k: v / max(t - 1, 1) for k, v in out.items()}
        out["total"] = sum(out[k] for k in LOSS_KEYS)
        return out


OTHER_DIMS = [
    dict(obs_shape=(2, 3, 4), action_dim=2, latent_dim=16, hidden_dim=24, num_q_networks=3, simnorm_dim=4),
    dict(obs_shape=(7,), action_dim=4, latent_dim=24, hidden_dim=16, num_q_networks=1, num_tasks=3,
         task_dim=5),
]


@pytest.mark.parametrize("overrides", OTHER_DIMS, ids=["multi_dim_obs", "multi_task"])
def test_other_dims_match_a_torch_replica(overrides) -> None:
    cfg = TDMPC2Config.from_size("ci", **overrides)
    model = TDMPC2(cfg)
    k = jax.random.split(jax.random.key(1), 6)
    params = jax.jit(model.init)(k[0])
    target = jax.jit(_perturbed)(model.init_target(params), k[1])  # the target differs from the online Q
    ref = TorchTDMPC2(cfg)
    exported = model.to_torch_state_dict(params, target)
    ref.load_state_dict({n: torch.tensor(v) for n, v in exported.items()}, strict=True)
    back, back_target = model.from_torch_state_dict(ref.state_dict())  # torch tensors load too
    _assert_trees_equal(params, back)
    _assert_trees_equal(target, back_target)
    b, t = 3, 4
    obs = jax.random.normal(k[2], (b, t, *cfg.obs_shape))
    actions = jnp.tanh(jax.random.normal(k[3], (b, t, cfg.action_dim)))
    rewards = jax.random.normal(k[4], (b, t))
    terms = (jax.random.uniform(k[5], (b, t)) < 0.3).astype(jnp.float32)
    tt = lambda x: torch.tensor(np.asarray(x))  # noqa: E731
    close = lambda a, r, **kw: np.testing.assert_allclose(  # noqa: E731
        np.asarray(a), r.detach().numpy(), **({"rtol": 1e-4, "atol": 1e-5} | kw))

    ids = jnp.array([0, 2, 7])  # out-of-range ids are clamped, as the reference does

    @jax.jit
    def ours(params):
        z = model.encode(params, obs[:, 0])["latent"]
        pi = model.policy(params, z)
        loss = jax.value_and_grad(lambda p: model.loss(p, target, Batch(obs, actions, rewards, terms)),
                                  has_aux=True)(params)
        return loss, dict(
            z=z, next=model.transition(params, z, actions[:, 0])["latent"],
            next_task=model.transition(params, z, actions[:, 0], ids)["latent"], pi=pi,
            q=model.predict_q(params, z, pi), q_target=model.predict_q(params, z, pi, target),
            r=model.predict_reward(params, z, actions[:, 0]))

    ((loss, comps), grads), out = ours(params)
    z_ref = ref.encode(tt(obs[:, 0]))
    close(out["z"], z_ref)
    close(out["next"], ref.transition(z_ref, tt(actions[:, 0])))
    if cfg.num_tasks > 1:
        close(out["next_task"], ref.transition(z_ref, tt(actions[:, 0]), tt(ids)))
    close(out["pi"], ref.policy(z_ref))
    close(out["q"], ref._q_ensemble(z_ref, ref.policy(z_ref)))
    close(out["q_target"], ref._target_q_ensemble(z_ref, ref.policy(z_ref)))
    close(out["r"], ref.reward(z_ref, tt(actions[:, 0])))
    ref_losses = ref.loss(tt(obs), tt(actions), tt(rewards), tt(terms))
    ref_losses["total"].backward()
    close(loss, ref_losses["total"])
    for name in LOSS_KEYS:
        close(comps[name], ref_losses[name], err_msg=name)
    # The task embedding gets no gradient from the loss (it runs with task_id None): torch leaves None.
    ref_grads = {n: torch.zeros_like(p) if p.grad is None else p.grad
                 for n, p in ref.named_parameters() if not n.startswith("_target")}
    ours = model.named_parameters(grads)
    assert set(ours) == set(ref_grads)
    for name, g in ours.items():
        close(g, ref_grads[name], rtol=1e-3, atol=1e-5, err_msg=name)


# -- converter --------------------------------------------------------------------------------------
@functools.cache
def _cached_setup(overrides: tuple) -> tuple:
    model = TDMPC2(tiny(**dict(overrides)))
    params = jax.jit(model.init)(jax.random.key(0))
    return model, params, jax.jit(_perturbed)(model.init_target(params), jax.random.key(5))


def _setup(**overrides):
    """A tiny model, its params and a target that differs from the online Q (cached per overrides)."""
    return _cached_setup(tuple(sorted(overrides.items())))


def _assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("overrides", [{}, {"num_tasks": 4, "task_dim": 3}], ids=["single", "multi_task"])
def test_round_trip_is_bitwise_exact(overrides) -> None:
    model, params, target = _setup(**overrides)
    sd = model.to_torch_state_dict(params, target)
    back, back_target = model.from_torch_state_dict(sd)
    _assert_trees_equal(params, back)
    _assert_trees_equal(target, back_target)
    if overrides:
        assert sd["task_embedding.weight"].shape == (4, 3)
        np.testing.assert_array_equal(sd["task_embedding.weight"], sd["_dynamics.task_embedding.weight"])


def test_either_name_loads_and_a_conflict_is_an_error() -> None:
    model, params, target = _setup()
    sd = model.to_torch_state_dict(params, target)
    aliases = ("encoder.", "dynamics.", "reward_head.", "q_networks.", "policy.", "task_embedding.")
    only_alias = {k: v for k, v in sd.items() if k.startswith(aliases) or k.startswith("_target")}
    only_canonical = {k: v for k, v in sd.items() if not k.startswith(aliases)}
    assert any(k.startswith("q_networks.1.") for k in only_alias)
    for subset in (only_alias, only_canonical):
        p, tgt = model.from_torch_state_dict(subset)
        _assert_trees_equal(params, p)
        _assert_trees_equal(target, tgt)
    bad = dict(sd)
    bad["q_networks.1.3.weight"] = bad["q_networks.1.3.weight"] + 1.0
    with pytest.raises(StateDictError, match=r"_q_ensemble\.q_networks\.1\.mlp\.3\.weight and its alias"):
        model.from_torch_state_dict(bad)


def test_missing_target_copies_online_q_and_other_problems_are_named() -> None:
    model, params, target = _setup()
    sd = model.to_torch_state_dict(params, target)
    no_target = {k: v for k, v in sd.items() if not k.startswith("_target_q_ensemble.")}
    p, tgt = model.from_torch_state_dict(no_target)
    _assert_trees_equal(p["_q_ensemble"], tgt)
    with pytest.raises(StateDictError, match="missing key _policy.mlp.3.bias"):
        model.from_torch_state_dict({k: v for k, v in sd.items() if not k.endswith("3.bias")})
    with pytest.raises(StateDictError, match="unexpected keys.*bogus"):
        model.from_torch_state_dict({**sd, "bogus.weight": np.zeros(1)})
    wrong = {**sd, "_policy.mlp.3.weight": np.zeros((5, 32), np.float32)}
    del wrong["policy.3.weight"]
    with pytest.raises(StateDictError, match=r"_policy.mlp.3.weight: expected shape \(2, 32\)"):
        model.from_torch_state_dict(wrong)


# -- model structure --------------------------------------------------------------------------------
def test_q_ensemble_is_stacked_and_vmapped() -> None:
    model, params, _ = _setup(num_q_networks=3)
    for leaf in jax.tree.leaves(params["_q_ensemble"]):
        assert leaf.shape[0] == 3
    k0 = params["_q_ensemble"]["q_networks"]["mlp"]["0"]["kernel"]
    assert not np.allclose(k0[0], k0[1])  # independent initialisations
    q_fn = lambda p: model.predict_q(p, jnp.zeros((4, 32)), jnp.zeros((4, 2)))  # noqa: E731
    jaxpr = str(jax.make_jaxpr(q_fn)(params))
    assert jaxpr.count("dot_general") == 3  # one batched matmul per layer for the whole ensemble
    assert jax.eval_shape(q_fn, params).shape == (3, 4)


def test_multi_task_embedding() -> None:
    model, params, _ = _setup(num_tasks=4, task_dim=3)
    assert params["_dynamics"]["task_embedding"]["embedding"].shape == (4, 3)
    assert params["_dynamics"]["mlp"]["0"]["kernel"].shape == (32 + 2 + 3, 32)
    assert "task_embedding" not in _setup()[1]["_dynamics"]
    z = model.initial_state(2)
    a = jnp.ones((2, 2)) * 0.3
    transition = jax.jit(lambda p, ids: model.transition(p, z, a, ids)["latent"])
    none = jax.jit(lambda p: model.transition(p, z, a)["latent"])(params)
    zero_emb = jax.tree.map(lambda x: x, params)
    zero_emb["_dynamics"]["task_embedding"]["embedding"] = jnp.zeros((4, 3))
    np.testing.assert_allclose(none, transition(zero_emb, jnp.array([1, 3])), atol=1e-7)
    assert not np.allclose(transition(params, jnp.array([1, 1])), transition(params, jnp.array([3, 3])))


def test_states_predictions_and_rollout_shapes() -> None:
    model, params, _ = _setup(num_q_networks=3)
    s0 = model.initial_state(4)
    np.testing.assert_allclose(s0["latent"], np.full((4, 32), 0.125))
    decode = jax.jit(model.decode)
    out = decode(params, s0)
    assert {k: v.shape for k, v in out.items()} == {
        "reward": (4, 1), "continue": (4, 1), "q_values": (3, 4, 1), "action": (4, 2)}
    np.testing.assert_array_equal(out["continue"], 1.0)
    actions = jnp.tanh(jax.random.normal(jax.random.key(2), (5, 4, 2)))
    states, rewards, continues = jax.jit(model.rollout)(params, s0, actions)
    assert states["latent"].shape == (5, 4, 32) and rewards.shape == continues.shape == (5, 4)
    np.testing.assert_allclose(states["latent"].reshape(5, 4, 4, 8).sum(-1), 1.0, rtol=1e-5)
    decoded = decode(params, {"latent": states["latent"][2]})
    np.testing.assert_allclose(rewards[2], decoded["reward"][:, 0], rtol=1e-5, atol=1e-6)


def test_simnorm_and_dynamics_guards() -> None:
    x = jax.random.normal(jax.random.key(0), (3, 16)) * 5
    np.testing.assert_allclose(simnorm(x, 8).reshape(3, 2, 8).sum(-1), 1.0, rtol=1e-6)
    model, params, _ = _setup()
    big = jax.tree.map(lambda v: v * 50.0, params)  # a huge delta is rescaled to norm 10
    z = model.initial_state(2)["latent"]
    delta = model.modules["_dynamics"].apply({"params": big["_dynamics"]}, z, jnp.ones((2, 2)))
    np.testing.assert_array_less(np.linalg.norm(delta, axis=-1), 10.0 + 1e-3)
    # Inputs are sanitised before the MLP (the residual z itself is not, as in the reference).
    nan_z = z.at[0, 0].set(jnp.nan)
    dynamics = model.modules["_dynamics"]
    delta = dynamics.apply({"params": params["_dynamics"]}, nan_z, jnp.full((2, 2), jnp.inf))
    assert np.isfinite(np.asarray(delta)).all()
    assert np.isfinite(np.asarray(model.transition(params, z, jnp.full((2, 2), jnp.nan))["latent"])).all()


def test_termination_mask_and_short_sequences() -> None:
    model, params, target = _setup()
    ep = PointMass().generate(jax.random.key(3), 4, 5)
    no_terms = Batch(ep.obs, ep.actions, ep.rewards, None)
    zeros = Batch(ep.obs, ep.actions, ep.rewards, jnp.zeros_like(ep.rewards))
    ones = Batch(ep.obs, ep.actions, ep.rewards, jnp.ones_like(ep.rewards))
    loss = jax.jit(model.loss)
    td = lambda b: float(loss(params, target, b)[1]["td"])  # noqa: E731
    assert td(no_terms) == pytest.approx(td(zeros), rel=1e-6)
    assert td(ones) != pytest.approx(td(zeros), rel=1e-3)
    total, comps = loss(params, target, Batch(ep.obs[:, :1], ep.actions[:, :1], ep.rewards[:, :1]))
    assert float(total) == 0.0 and set(comps) == set(LOSS_KEYS)


# -- training ---------------------------------------------------------------------------------------
TAU = 0.3
TRACES: list[int] = []  # one entry per trace of the shared train step's loss


@functools.cache
def _trainer():
    """Model, optimizer and jitted train step shared by the training tests (one compilation)."""
    model = TDMPC2(tiny(target_q_tau=TAU))
    optimizer = make_optimizer(3e-3, grad_clip=model.config.grad_clip)

    def loss_fn(params, extras, batch, key):
        TRACES.append(1)
        return model.train_loss(params, extras, batch, key)

    return model, optimizer, make_train_step(loss_fn, optimizer, post_update=model.target_update)


def _data(seed: int) -> Batch:
    return Batch(*PointMass().generate(jax.random.key(seed), 16, 6))


def test_train_step_applies_the_target_ema_compiles_once_and_donates() -> None:
    model, optimizer, train_step = _trainer()
    state = model.make_train_state(jax.random.key(0), optimizer)
    for i in range(3):
        old_target = jax.tree.map(np.asarray, state.extras)
        old_leaf = jax.tree.leaves(state.params)[0]
        state, metrics = train_step(state, _data(i), jax.random.key(i))
        assert old_leaf.is_deleted()
        online = state.params["_q_ensemble"]
        expected = jax.tree.map(lambda t, o: (1 - TAU) * t + TAU * np.asarray(o), old_target, online)
        for got, want, old in zip(jax.tree.leaves(state.extras), jax.tree.leaves(expected),
                                  jax.tree.leaves(old_target), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
            assert not np.array_equal(got, old)
    assert len(TRACES) == 1 and int(state.step) == 3  # (the learning test reuses this compilation)
    assert set(metrics) >= {"loss", *LOSS_KEYS, "grad_norm"}


def test_loss_falls_on_a_tiny_dataset() -> None:
    model, optimizer, train_step = _trainer()
    state = model.make_train_state(jax.random.key(1), optimizer)
    data = [_data(10 + i) for i in range(4)]
    history = []
    for i in range(100):
        state, metrics = train_step(state, data[i % 4], jax.random.key(i))
        history.append(metrics)
    history = jax.device_get(history)
    # The reference's policy term trains the (unfrozen) Q ensemble upwards, so the total falls steadily
    # and the TD error stays noisy; the model terms (reward, consistency) must be learnt.
    for name, factor in (("loss", None), ("reward", 0.5), ("consistency", 0.5)):
        start = np.mean([h[name] for h in history[:4]])
        end = np.mean([h[name] for h in history[-10:]])
        assert end < (start - 1.0 if factor is None else factor * start), (name, start, end)
    assert len(TRACES) == 1


def test_planning_model_callables() -> None:
    pytest.importorskip("worldflux_jax.planners.base")
    model, params, _ = _setup(num_q_networks=3)
    pm = model.planning_model()
    s = model.encode(params, jnp.ones((4, 6)))
    nxt, reward = pm.step(params, s, jnp.zeros((4, 2)))
    np.testing.assert_allclose(nxt["latent"], model.transition(params, s, jnp.zeros((4, 2)))["latent"])
    np.testing.assert_allclose(reward, model.predict_reward(params, s, jnp.zeros((4, 2))))
    value = pm.value(params, s)
    assert value.shape == (4,)
    np.testing.assert_allclose(value, model.decode(params, s)["q_values"][..., 0].mean(0), rtol=1e-6)
    np.testing.assert_allclose(pm.policy(params, s, jax.random.key(0)), model.policy(params, s))
