"""`TDMPC2WorldModel`: the reference TD-MPC2 API (§4.1, §4.4) over the JAX core, on the tiny ci preset."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from worldflux.core import (
    Batch,
    CapabilityError,
    CheckpointError,
    LossOutput,
    ShapeMismatchError,
    State,
    Trajectory,
    ValidationError,
)
from worldflux.core.config import TDMPC2Config
from worldflux.core.spec import Capability
from worldflux.models import TDMPC2WorldModel

OBS, A, B, T, L, K = 10, 3, 4, 5, 32, 2
LOSS_KEYS = ["consistency", "reward", "td", "policy"]


@pytest.fixture(scope="module")
def model() -> TDMPC2WorldModel:
    return TDMPC2WorldModel(TDMPC2Config.from_size("ci", obs_shape=(OBS,), action_dim=A), seed=0)


def _obs(seed: int = 0, batch: int = B) -> torch.Tensor:
    return torch.randn(batch, OBS, generator=torch.Generator().manual_seed(seed))


def _batch(kind: str = "torch", terminations: bool = True) -> Batch:
    gen = np.random.default_rng(0)
    arrays = {
        "obs": gen.standard_normal((B, T, OBS)).astype(np.float32),
        "actions": gen.uniform(-1, 1, (B, T, A)).astype(np.float32),
        "rewards": gen.standard_normal((B, T)).astype(np.float32),
    }
    if terminations:
        arrays["terminations"] = np.zeros((B, T), np.float32)
    convert = {"torch": torch.from_numpy, "numpy": lambda x: x, "jax": jnp.asarray}[kind]
    return Batch(**{k: convert(v) for k, v in arrays.items()})


def _assert_simnorm(latent: torch.Tensor) -> None:
    groups = latent.reshape(latent.shape[0], -1, 8)
    assert torch.all(groups >= 0) and torch.allclose(groups.sum(-1), torch.ones(groups.shape[:2]), atol=1e-5)


def test_encode_returns_a_simnorm_latent(model: TDMPC2WorldModel) -> None:
    state = model.encode(_obs())
    assert list(state.tensors) == ["latent"] and state.tensors["latent"].shape == (B, L)
    assert state.meta == {"latent_type": "simnorm"}
    _assert_simnorm(state.tensors["latent"])
    assert torch.equal(model.encode({"obs": _obs()}).tensors["latent"], state.tensors["latent"])
    with pytest.raises(ShapeMismatchError):
        model.encode(torch.zeros(B, OBS + 2))


def test_encode_flattens_observations(model: TDMPC2WorldModel) -> None:
    obs = _obs()
    assert torch.equal(model.encode(obs.reshape(B, 2, 5)).tensors["latent"], model.encode(obs).tensors["latent"])


def test_update_is_encode_of_the_observation(model: TDMPC2WorldModel) -> None:
    state = model.encode(_obs(0))
    updated = model.update(state, torch.zeros(B, A), _obs(1))
    assert torch.equal(updated.tensors["latent"], model.encode(_obs(1)).tensors["latent"])


def test_transition_is_a_simnorm_residual_step(model: TDMPC2WorldModel) -> None:
    state = model.encode(_obs())
    nxt = model.transition(state, torch.full((B, A), 0.3))
    _assert_simnorm(nxt.tensors["latent"])
    assert not torch.allclose(nxt.tensors["latent"], state.tensors["latent"])
    zeros = model.transition(state, torch.zeros(B, A))
    assert torch.equal(model.transition(state, None).tensors["latent"], zeros.tensors["latent"])


def test_transition_uses_the_task_embedding_when_there_are_several_tasks() -> None:
    config = TDMPC2Config.from_size("ci", obs_shape=(OBS,), action_dim=A, num_tasks=3, task_dim=4)
    multi = TDMPC2WorldModel(config, seed=0)
    assert "task_embedding.weight" in multi.state_dict()
    state = multi.encode(_obs())
    a = multi.transition(state, torch.zeros(B, A), task_id=torch.tensor([0, 1, 2, 0]))
    b = multi.transition(state, torch.zeros(B, A), task_id=torch.tensor([1, 1, 2, 0]))
    assert not torch.allclose(a.tensors["latent"][0], b.tensors["latent"][0])
    assert torch.equal(a.tensors["latent"][1:], b.tensors["latent"][1:])


def test_initial_state_is_simnorm_of_zeros(model: TDMPC2WorldModel) -> None:
    state = model.initial_state(2)
    assert torch.allclose(state.tensors["latent"], torch.full((2, L), 1 / 8))


def test_decode_predictions_and_heads(model: TDMPC2WorldModel) -> None:
    state = model.encode(_obs())
    out = model.decode(state)
    assert list(out.predictions) == ["reward", "continue", "q_values", "action"]
    assert out.predictions["reward"].shape == (B, 1)
    assert torch.equal(out.predictions["continue"], torch.ones(B, 1))
    assert out.predictions["q_values"].shape == (K, B, 1)  # ensemble axis first, as the reference
    action = out.predictions["action"]
    assert action.shape == (B, A) and torch.all(action.abs() <= 1)
    q = model.predict_q(state, action)
    assert q.shape == (K, B) and torch.allclose(q, out.predictions["q_values"][..., 0])
    reward = model.predict_reward(state, action)
    assert reward.shape == (B,) and torch.allclose(reward, out.predictions["reward"][:, 0])


def test_rollout_matches_transition_then_decode(model: TDMPC2WorldModel) -> None:
    state = model.encode(_obs())
    actions = torch.rand(3, B, A) * 2 - 1
    traj = model.rollout(state, actions)
    assert isinstance(traj, Trajectory) and len(traj) == 4 and traj.states[0] is state
    assert torch.equal(traj.continues, torch.ones(3, B))
    step = state
    for t in range(3):
        step = model.transition(step, actions[t])
        assert torch.allclose(traj.states[t + 1].tensors["latent"], step.tensors["latent"], atol=1e-6)
        assert torch.allclose(traj.rewards[t], model.decode(step).predictions["reward"][:, 0], atol=1e-5)


def test_rollout_builds_only_the_fields_that_are_read(model: TDMPC2WorldModel) -> None:
    state = model.encode(_obs())
    actions = torch.rand(3, B, A) * 2 - 1
    traj = model.rollout(state, actions)
    assert traj.rewards.shape == (3, B) and "states" not in vars(traj) and "continues" not in vars(traj)
    eager = model.rollout(state, actions)
    assert torch.equal(traj.rewards, eager.rewards) and len(eager.states) == 4
    for ours, theirs in zip(traj.states, eager.states, strict=True):
        assert torch.equal(ours.tensors["latent"], theirs.tensors["latent"])
        assert ours.meta == {"latent_type": "simnorm"}
    assert traj.states[1].meta is not traj.states[2].meta  # each state owns its meta dict


def test_loss_components_and_optional_terminations(model: TDMPC2WorldModel) -> None:
    out = model.loss(_batch())
    assert isinstance(out, LossOutput) and list(out.components) == LOSS_KEYS == list(out.metrics)
    assert float(out.loss) == pytest.approx(sum(out.metrics.values()), rel=1e-5)
    without = model.loss(_batch(terminations=False))  # terminations are optional: all-continue mask
    assert float(without.loss) == pytest.approx(float(out.loss), rel=1e-6)
    with pytest.raises(ValueError, match="rewards"):
        model.loss(Batch(obs=torch.zeros(B, T, OBS), actions=torch.zeros(B, T, A)))


def test_loss_terms_are_the_core_loss_terms_by_name(model: TDMPC2WorldModel) -> None:
    batch = _batch()
    out = model.loss(batch)
    arrays = {k: jnp.asarray(getattr(batch, k).numpy()) for k in ("obs", "actions", "rewards", "terminations")}
    total, components = model.core.loss(model.params, model.extras, model.core_batch(arrays))
    assert float(out.loss) == pytest.approx(float(total), rel=1e-6)
    assert sorted(components) == sorted(LOSS_KEYS)
    for key, value in components.items():
        assert out.metrics[key] == pytest.approx(float(value), rel=1e-6, abs=1e-7)
        assert float(out.components[key]) == out.metrics[key] and out.components[key].shape == ()


@pytest.mark.parametrize("kind", ["torch", "numpy", "jax"])
def test_loss_outputs_in_each_array_kind_hold_the_metric_values(model: TDMPC2WorldModel, kind: str) -> None:
    out = model.loss(_batch(kind))
    reference = model.loss(_batch()).metrics
    assert out.metrics == pytest.approx(reference, rel=1e-6)
    for key, value in out.components.items():
        assert float(np.asarray(value)) == pytest.approx(out.metrics[key], rel=1e-6)


def test_action_checks_still_apply_after_a_valid_call_with_the_same_model(model: TDMPC2WorldModel) -> None:
    model.loss(_batch())
    model.rollout(model.encode(_obs()), torch.zeros(3, B, A))
    good = _batch()
    with pytest.raises(ValidationError):
        model.loss(Batch(obs=good.obs, actions=torch.zeros(B, T, A + 1), rewards=good.rewards))
    with pytest.raises(ValidationError):
        model.rollout(model.encode(_obs()), torch.zeros(3, B, A + 1))


def test_target_ensemble_moves_by_tau_after_each_optimizer_step() -> None:
    model = TDMPC2WorldModel(TDMPC2Config.from_size("ci", obs_shape=(OBS,), action_dim=A), seed=0)
    assert all(np.array_equal(t, o) for t, o in zip(
        jax.tree.leaves(model.target_params), jax.tree.leaves(model.params["_q_ensemble"]), strict=True))
    model.params = jax.tree.map(lambda x: x + 1.0, model.params)  # as if an optimizer stepped
    before = jax.tree.leaves(model.target_params)
    loss_before = model.loss(_batch()).metrics
    assert all(np.array_equal(a, b) for a, b in zip(before, jax.tree.leaves(model.extras), strict=True))
    model.on_after_optimizer_step()
    tau = model.config.target_q_tau
    for old, new in zip(before, jax.tree.leaves(model.target_params), strict=True):
        np.testing.assert_allclose(np.asarray(new), np.asarray(old) + tau, rtol=1e-6, atol=1e-6)
    assert model.loss(_batch()).metrics["td"] != loss_before["td"]


@pytest.mark.parametrize("kind, cls", [("torch", torch.Tensor), ("numpy", np.ndarray), ("jax", jax.Array)])
def test_outputs_come_back_in_the_input_array_kind(model: TDMPC2WorldModel, kind: str, cls: type) -> None:
    convert = {"torch": lambda x: x, "numpy": lambda x: x.numpy(), "jax": lambda x: jnp.asarray(x.numpy())}[kind]
    state = model.encode(convert(_obs()))
    assert isinstance(state.tensors["latent"], cls)
    nxt = model.transition(state, convert(torch.zeros(B, A)))
    assert isinstance(nxt.tensors["latent"], cls)
    assert all(isinstance(v, cls) for v in model.decode(nxt).predictions.values())
    assert isinstance(model.predict_q(nxt, convert(torch.zeros(B, A))), cls)
    traj = model.rollout(state, convert(torch.zeros(2, B, A)))
    assert isinstance(traj.rewards, cls) and isinstance(traj.states[1].tensors["latent"], cls)
    out = model.loss(_batch(kind))
    assert isinstance(out.loss, cls) and all(isinstance(v, cls) for v in out.components.values())


def test_second_call_does_not_retrace() -> None:
    config = TDMPC2Config.from_size("ci", obs_shape=(OBS,), action_dim=A, hidden_dim=24)  # unused elsewhere
    model = TDMPC2WorldModel(config, seed=0)
    for seed in range(2):
        state = model.encode(_obs(seed))
        model.transition(state, torch.zeros(B, A))
        model.rollout(state, torch.zeros(3, B, A))
        model.loss(_batch())
        model.on_after_optimizer_step()
    assert dict(model._trace_counts) == {
        "init": 1, "encode": 1, "transition": 1, "rollout": 1, "loss": 1, "target_ema": 1
    }


def test_capabilities_contract_and_reference_fingerprint(model: TDMPC2WorldModel) -> None:
    assert model.supports_reward and model.supports_continue and not model.supports_planning
    assert model.supports(Capability.VALUE) and model.supports(Capability.POLICY)
    assert not model.supports(Capability.OBS_DECODER)
    with pytest.raises(CapabilityError):
        model.require("obs_decoder")
    assert model.io_contract().required_batch_keys == ("obs", "actions", "rewards")
    config = TDMPC2Config.from_size("5m", obs_shape=(39,), action_dim=6)
    assert (
        TDMPC2WorldModel.fingerprint_for_config(config)
        == "d70fcea1d695832819aea017c06a0f032e65f84a8b41b6ff04fcf2aede332b67"
    )
    with pytest.raises(ValidationError):
        model.decode(State(tensors={"latent": torch.zeros(B, L + 1)}))


def test_state_dict_has_aliases_sharing_storage_and_the_target(model: TDMPC2WorldModel) -> None:
    state_dict = model.state_dict()
    assert "_device_tracker" in state_dict
    canonical = state_dict["_encoder.mlp.0.weight"]
    assert canonical.shape == (32, OBS)  # torch layout [out, in]
    assert state_dict["encoder.0.weight"].data_ptr() == canonical.data_ptr()
    q_weight = state_dict["_q_ensemble.q_networks.1.mlp.6.weight"]
    assert state_dict["q_networks.1.6.weight"].data_ptr() == q_weight.data_ptr()
    assert "_target_q_ensemble.q_networks.0.mlp.0.weight" in state_dict
    assert model.num_parameters() == sum(v.numel() for k, v in state_dict.items() if k.startswith(
        ("_encoder.", "_dynamics.", "_reward_head.", "_q_ensemble.", "_policy.")))


def test_load_state_dict_strict_and_partial(model: TDMPC2WorldModel) -> None:
    other = TDMPC2WorldModel(model.config, seed=5)
    state_dict = model.state_dict()
    other.load_state_dict(state_dict)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in state_dict.items())
    canonical_only = {k: v for k, v in state_dict.items() if k.startswith("_")}
    with pytest.raises(CheckpointError, match="missing keys"):
        other.load_state_dict(canonical_only)
    third = TDMPC2WorldModel(model.config, seed=6)
    result = third.load_state_dict({"_policy.mlp.3.bias": torch.full((A,), 0.5)}, strict=False)
    assert "policy.3.bias" in result.missing_keys and result.unexpected_keys == []
    assert torch.equal(third.state_dict()["policy.3.bias"], torch.full((A,), 0.5))  # the alias follows
    with pytest.raises(CheckpointError, match="different values"):
        other.load_state_dict({**state_dict, "policy.3.bias": torch.full((A,), 9.0)})
