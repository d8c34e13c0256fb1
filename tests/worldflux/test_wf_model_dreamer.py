"""`DreamerV3WorldModel`: the reference DreamerV3 API (§4.1, §4.3) over the JAX core, on the tiny ci preset."""

from __future__ import annotations

import asyncio
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from worldflux.core import (
    ActionPayload,
    ActionSequence,
    Batch,
    CapabilityError,
    ConditionPayload,
    LossOutput,
    ModelOutput,
    ShapeMismatchError,
    State,
    Trajectory,
    ValidationError,
    WorldModelInput,
)
from worldflux.core.config import DreamerV3Config
from worldflux.core.model import WorldModel
from worldflux.core.spec import Capability
from worldflux.interop import jax_origin
from worldflux.models import DreamerV3WorldModel

OBS, A, B, T = 8, 2, 4, 5
STATE_KEYS = ["deter", "stoch", "logits", "prior_logits", "posterior_logits"]
LOSS_KEYS = ["kl_dynamics", "kl_representation", "kl", "reconstruction", "reward", "continue"]


@pytest.fixture(scope="module")
def model() -> DreamerV3WorldModel:
    return DreamerV3WorldModel(DreamerV3Config.from_size("ci", obs_shape=(OBS,), action_dim=A), seed=0)


def _obs(seed: int = 0, batch: int = B) -> torch.Tensor:
    return torch.randn(batch, OBS, generator=torch.Generator().manual_seed(seed))


def _batch(kind: str = "torch") -> Batch:
    gen = np.random.default_rng(0)
    arrays = {
        "obs": gen.standard_normal((B, T, OBS)).astype(np.float32),
        "actions": gen.uniform(-1, 1, (B, T, A)).astype(np.float32),
        "rewards": gen.standard_normal((B, T)).astype(np.float32),
        "terminations": np.zeros((B, T), np.float32),
    }
    convert = {"torch": torch.from_numpy, "numpy": lambda x: x, "jax": jnp.asarray}[kind]
    return Batch(**{k: convert(v) for k, v in arrays.items()})


def _one_hot_argmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()


# ----------------------------------------------------------------------------------------- encode / steps


def test_encode_returns_the_reference_state(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs())
    assert list(state.tensors) == STATE_KEYS
    assert state.tensors["deter"].shape == (B, 64)
    for key in STATE_KEYS[1:]:
        assert state.tensors[key].shape == (B, 4, 4)
    assert state.meta == {"latent_type": "categorical"}
    stoch = state.tensors["stoch"]  # straight-through one-hot: exact up to float rounding
    assert torch.allclose(stoch, stoch.round(), atol=1e-6) and torch.allclose(stoch.sum(-1), torch.ones(B, 4))


def test_encode_accepts_a_dict_and_a_world_model_input(model: DreamerV3WorldModel) -> None:
    obs = _obs()
    with model.sampling_mode("mode"):
        direct = model.encode(obs).tensors["deter"]
        assert torch.equal(model.encode({"obs": obs}).tensors["deter"], direct)
        assert torch.equal(model.encode(WorldModelInput(observations={"obs": obs})).tensors["deter"], direct)
    with pytest.raises(ValueError, match="'obs'"):
        model.encode({"image": obs})
    with pytest.raises(ShapeMismatchError):
        model.encode(torch.zeros(B, OBS + 1))


def test_transition_samples_one_hot_latents_and_deterministic_takes_the_argmax(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs())
    action = torch.full((B, A), 0.5)
    prior = model.transition(state, action, deterministic=True)
    assert list(prior.tensors) == ["deter", "stoch", "logits", "prior_logits"]
    assert torch.equal(prior.tensors["stoch"], _one_hot_argmax(prior.tensors["prior_logits"]))
    draws = torch.stack([model.transition(state, action).tensors["stoch"] for _ in range(40)]).round()
    assert torch.all(draws.sum(-1) == 1)
    assert not torch.all(draws == draws[0]), "Gumbel draws must vary along the key stream"


def test_sampling_mode_switches_stochastic_draws_to_the_straight_through_mode(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs())
    action = torch.zeros(B, A)
    with model.sampling_mode("mode") as same:
        assert same is model and model.sampling == "mode"
        a = model.transition(state, action)
        b = model.transition(state, action)
    assert model.sampling == "sample"
    assert torch.equal(a.tensors["stoch"], b.tensors["stoch"])
    assert torch.allclose(a.tensors["stoch"], _one_hot_argmax(a.tensors["logits"]), atol=1e-6)
    with pytest.raises(ValueError, match="sampling must be one of"):
        model.sampling = "gumbel"


def test_reseed_replays_the_key_stream(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs())
    model.reseed(123)
    first = [model.transition(state, None).tensors["stoch"] for _ in range(3)]
    model.reseed(123)
    again = [model.transition(state, None).tensors["stoch"] for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))


def test_update_is_a_posterior_step(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs(0))
    post = model.update(state, torch.zeros(B, A), _obs(1))
    assert list(post.tensors) == STATE_KEYS
    assert torch.equal(post.tensors["logits"], post.tensors["posterior_logits"])


def test_decode_predicts_obs_reward_and_a_continue_logit(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs())
    out = model.decode(state)
    assert isinstance(out, ModelOutput) and out.state is state
    assert list(out.predictions) == ["obs", "reward", "continue"]
    assert out.predictions["obs"].shape == (B, OBS)
    assert out.predictions["reward"].shape == (B, 1) and out.predictions["continue"].shape == (B, 1)


def test_initial_state_is_zero_deter_and_class_zero(model: DreamerV3WorldModel) -> None:
    state = model.initial_state(3)
    assert torch.equal(state.tensors["deter"], torch.zeros(3, 64))
    expected = torch.zeros(3, 4, 4)
    expected[..., 0] = 1.0
    assert torch.equal(state.tensors["stoch"], expected)
    assert isinstance(model.initial_state(2, array_kind="numpy").tensors["deter"], np.ndarray)
    nxt = model.transition(state, torch.zeros(3, A), deterministic=True)
    assert nxt.tensors["deter"].shape == (3, 64)


def test_discrete_integer_actions_equal_their_one_hot_vectors() -> None:
    config = DreamerV3Config.from_size("ci", obs_shape=(OBS,), action_dim=3, action_type="discrete")
    model = DreamerV3WorldModel(config, seed=1)
    state = model.encode(_obs())
    index = torch.tensor([0, 2, 1, 2])
    by_index = model.transition(state, index, deterministic=True)
    by_one_hot = model.transition(state, torch.nn.functional.one_hot(index, 3).float(), deterministic=True)
    assert torch.allclose(by_index.tensors["deter"], by_one_hot.tensors["deter"])


# ----------------------------------------------------------------------------------------- rollout


def test_rollout_returns_a_trajectory_of_t_plus_one_states(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs())
    actions = torch.rand(T, B, A)
    traj = model.rollout(state, actions)
    assert isinstance(traj, Trajectory) and len(traj.states) == T + 1 and traj.states[0] is state
    assert traj.actions is actions
    assert traj.rewards.shape == (T, B) and traj.continues.shape == (T, B)
    assert traj.to_tensor("deter").shape == (T + 1, B, 64)


def test_rollout_deterministic_matches_stepwise_transitions(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs())
    actions = torch.rand(3, B, A)
    traj = model.rollout(state, actions, deterministic=True)
    step = state
    for t in range(3):
        step = model.transition(step, actions[t], deterministic=True)
        assert torch.allclose(traj.states[t + 1].tensors["deter"], step.tensors["deter"], atol=1e-6)
        reward = model.decode(step).predictions["reward"][:, 0]
        assert torch.allclose(traj.rewards[t], reward, atol=1e-5)


def test_rollout_accepts_sequences_payloads_and_none(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs(batch=1))
    plan = ActionPayload(kind="continuous", tensor=torch.zeros(3, A), extras={"wf.planner.horizon": 3})
    assert model.rollout(state, plan).horizon == 3
    assert model.rollout(state, ActionSequence(tensor=torch.zeros(2, 1, A))).horizon == 2
    steps = ActionSequence(payloads=[ActionPayload(kind="continuous", tensor=torch.zeros(1, A))] * 2)
    traj = model.rollout(state, steps)
    assert traj.horizon == 2 and traj.actions.shape == (2, 1, 0)
    empty = model.rollout(state, None)
    assert len(empty) == 1 and empty.rewards is None and empty.actions.shape == (0, 1, 0)


def test_rollout_mode_is_deprecated_in_v02_and_rejected_in_v3() -> None:
    model = DreamerV3WorldModel(DreamerV3Config.from_size("ci", obs_shape=(OBS,), action_dim=A), seed=0)
    state = model.encode(_obs())
    with pytest.warns(DeprecationWarning, match="rollout"):
        model.rollout(state, torch.zeros(2, B, A), mode="tree")
    model._wf_api_version = "v3"
    with pytest.raises(ValueError, match=r"rollout\(\.\.\., mode=\.\.\.\) is deprecated in v0.2"):
        model.rollout(state, torch.zeros(2, B, A), mode="tree")
    plan = ActionPayload(kind="continuous", tensor=torch.zeros(2, A))  # no horizon key: required in v3
    with pytest.raises(ValueError, match="wf.planner.horizon"):
        model.rollout(model.encode(_obs(batch=1)), plan)


def test_steps_check_the_action_batch(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs())
    with pytest.raises(ShapeMismatchError):
        model.rollout(state, torch.zeros(3, B + 1, A))
    with pytest.raises(ShapeMismatchError, match="leading batch axis of size 4"):
        model.transition(state, torch.zeros(B + 1, A))
    with pytest.raises(ShapeMismatchError):
        model.update(state, torch.zeros(1, A), _obs())


# ----------------------------------------------------------------------------------------- validation


def test_actions_and_conditions_are_validated_against_the_contract() -> None:
    model = DreamerV3WorldModel(DreamerV3Config.from_size("ci", obs_shape=(OBS,), action_dim=A), seed=0)
    state = model.encode(_obs())
    with pytest.raises(ValidationError, match="dim mismatch"):
        model.transition(state, torch.zeros(B, A + 1))
    with pytest.raises(ValidationError):
        model.transition(state, ActionPayload(kind="discrete", tensor=torch.zeros(B, A)))
    extras = ConditionPayload(extras={"wf.goal.xy": torch.zeros(B, 2)})
    with pytest.warns(DeprecationWarning, match="undeclared"):
        model.transition(state, torch.zeros(B, A), conditions=extras)
    model._wf_api_version = "v3"
    with pytest.raises(ValidationError, match="undeclared"):
        model.transition(state, torch.zeros(B, A), conditions=extras)
    with pytest.raises(ValidationError, match="missing required state tensors"):
        model.decode(State(tensors={"deter": torch.zeros(B, 64)}))
    with pytest.raises(ValidationError, match="shape"):
        model.decode(State(tensors={"deter": torch.zeros(B, 65), "stoch": torch.zeros(B, 4, 4)}))


def test_capabilities_and_contract(model: DreamerV3WorldModel) -> None:
    assert model.supports_reward and model.supports_continue and not model.supports_planning
    assert model.supports(Capability.OBS_DECODER) and model.supports("representation")
    with pytest.raises(CapabilityError, match="Model lacks capability: planning"):
        model.require(Capability.PLANNING)
    contract = model.io_contract()
    assert contract.required_batch_keys == ("obs", "actions", "rewards", "terminations")
    assert contract.state_spec.tensors["stoch"].shape == (4, 4)
    assert model.validate().valid
    model.validate_batch_contract(_batch())
    with pytest.raises(ValidationError, match="missing required batch keys"):
        model.validate_batch_contract(Batch(obs=torch.zeros(B, T, OBS)))


def test_size12m_fingerprint_is_the_reference_hash_and_needs_no_parameters(monkeypatch) -> None:
    import worldflux_jax.dreamer as core

    def no_init(*args, **kwargs):
        raise AssertionError("the fingerprint must not build parameters")

    monkeypatch.setattr(core.DreamerV3, "init", no_init)
    config = DreamerV3Config.from_size("size12m", obs_shape=(3, 64, 64), action_dim=6)
    assert (
        DreamerV3WorldModel.fingerprint_for_config(config)
        == "0398b927a17507c549f428f7b28c67b1ed70771a7f6c1fa04a350f74da3e0bf0"
    )


# ----------------------------------------------------------------------------------------- loss


def test_loss_has_the_reference_components_and_float_metrics(model: DreamerV3WorldModel) -> None:
    out = model.loss(_batch())
    assert isinstance(out, LossOutput) and out.loss.shape == ()
    assert list(out.components) == LOSS_KEYS and list(out.metrics) == LOSS_KEYS
    assert all(isinstance(v, float) for v in out.metrics.values())
    for key, value in out.components.items():
        assert out.metrics[key] == pytest.approx(float(value))
    scales = model.config.loss_scales
    total = sum(scales[k] * out.metrics[k] for k in LOSS_KEYS if k != "kl")
    assert float(out.loss) == pytest.approx(total, rel=1e-5)
    assert torch.allclose(out.components["kl"], out.components["kl_dynamics"] + out.components["kl_representation"])


def test_loss_accepts_dicts_and_names_missing_fields(model: DreamerV3WorldModel) -> None:
    batch = _batch()
    with model.sampling_mode("mode"):
        from_dict = model.loss({"obs": {"obs": batch.obs}, "actions": batch.actions, "rewards": batch.rewards,
                                "terminations": batch.terminations})
        direct = model.loss(batch)
    assert float(from_dict.loss) == pytest.approx(float(direct.loss))
    with pytest.raises(ValueError, match="terminations"):
        model.loss(Batch(obs=batch.obs, actions=batch.actions, rewards=batch.rewards))
    with pytest.raises(ShapeMismatchError):
        model.loss(Batch(obs=batch.obs, actions=batch.actions, rewards=batch.rewards[:, :2],
                         terminations=batch.terminations))


# ----------------------------------------------------------------------------------------- array kinds


@pytest.mark.parametrize("kind, cls", [("torch", torch.Tensor), ("numpy", np.ndarray), ("jax", jax.Array)])
def test_outputs_come_back_in_the_input_array_kind(model: DreamerV3WorldModel, kind: str, cls: type) -> None:
    convert = {"torch": lambda x: x, "numpy": lambda x: x.numpy(), "jax": lambda x: jnp.asarray(x.numpy())}[kind]
    state = model.encode(convert(_obs()))
    assert all(isinstance(v, cls) for v in state.tensors.values())
    nxt = model.transition(state, convert(torch.zeros(B, A)))
    assert all(isinstance(v, cls) for v in nxt.tensors.values())
    assert all(isinstance(v, cls) for v in model.decode(nxt).predictions.values())
    traj = model.rollout(state, convert(torch.zeros(3, B, A)))
    assert isinstance(traj.rewards, cls) and isinstance(traj.states[2].tensors["deter"], cls)
    assert len(traj) == 4
    out = model.loss(_batch(kind))
    assert isinstance(out.loss, cls) and all(isinstance(v, cls) for v in out.components.values())


def test_torch_outputs_are_zero_copy_views_of_the_jax_results(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs())
    for tensor in state.tensors.values():
        origin = jax_origin(tensor)
        assert isinstance(origin, jax.Array) and tensor.data_ptr() == origin.unsafe_buffer_pointer()


# ----------------------------------------------------------------------------------------- jit caching


def test_second_call_with_the_same_shapes_does_not_retrace() -> None:
    # A config no other test uses, so this test sees the first traces of its jitted functions.
    config = DreamerV3Config.from_size("ci", obs_shape=(OBS,), action_dim=A, hidden_dim=24)
    model = DreamerV3WorldModel(config, seed=0)
    state = model.encode(_obs())
    model.transition(state, torch.zeros(B, A))
    model.decode(state)
    model.loss(_batch())
    counts = dict(model._trace_counts)
    assert counts == {"init": 1, "encode": 1, "transition": 1, "decode": 1, "loss": 1}
    sizes = {key: fn._cache_size() for key, fn in model._jit_cache.items()}
    state2 = model.encode(_obs(1))
    model.transition(state2, torch.ones(B, A))
    model.decode(state2)
    model.loss(_batch())
    assert dict(model._trace_counts) == counts
    assert {key: fn._cache_size() for key, fn in model._jit_cache.items()} == sizes
    # Another model with the same config reuses the compiled functions: nothing is traced again.
    other = DreamerV3WorldModel(config, seed=1)
    other.transition(other.encode(_obs()), torch.zeros(B, A))
    assert dict(other._trace_counts) == counts
    # A new flag combination is a new function, traced once.
    model.transition(state, torch.zeros(B, A), deterministic=True)
    model.transition(state2, torch.zeros(B, A), deterministic=True)
    assert model._trace_counts["transition"] == 2


# ----------------------------------------------------------------------------------------- parameters


def test_parameters_are_views_of_the_jax_leaves(model: DreamerV3WorldModel) -> None:
    leaves = jax.tree.leaves(model.params)
    named = dict(model.named_parameters())
    assert len(named) == len(leaves) and "rssm.gru.weight_ih" in named and "rssm.prior_net.0.kernel" in named
    for tensor, leaf in zip(model.parameters(), leaves, strict=True):
        assert tensor.data_ptr() == leaf.unsafe_buffer_pointer()
    assert model.num_parameters() == sum(t.numel() for t in model.parameters())
    assert model.train() is model and model.eval() is model and model.training is False


def test_same_seed_gives_the_same_parameters() -> None:
    config = DreamerV3Config.from_size("ci", obs_shape=(OBS,), action_dim=A)
    def same(a: DreamerV3WorldModel, b: DreamerV3WorldModel) -> bool:
        pairs = zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True)
        return all(np.array_equal(x, y) for x, y in pairs)

    assert same(DreamerV3WorldModel(config, seed=7), DreamerV3WorldModel(config, seed=7))
    assert not same(DreamerV3WorldModel(config, seed=7), DreamerV3WorldModel(config, seed=8))
    torch.manual_seed(3)
    third = DreamerV3WorldModel(config)
    torch.manual_seed(3)
    assert same(third, DreamerV3WorldModel(config))


def test_state_dict_round_trip_and_strictness(model: DreamerV3WorldModel) -> None:
    state_dict = model.state_dict()
    assert "rssm.gru.weight_ih" in state_dict and "reward_head.bins" in state_dict and "_device_tracker" in state_dict
    assert state_dict["rssm.gru.weight_ih"].shape == (3 * 64, 16 + A)  # torch layout [3H, in]
    other = DreamerV3WorldModel(model.config, seed=99)
    assert other.load_state_dict(state_dict) == ([], [])
    assert all(torch.equal(other.state_dict()[k], v) for k, v in state_dict.items())
    partial = {k: v for k, v in state_dict.items() if not k.startswith("decoder.")}
    from worldflux.core import CheckpointError

    with pytest.raises(CheckpointError, match="missing keys"):
        other.load_state_dict(partial)
    result = other.load_state_dict({**partial, "bogus": torch.zeros(1)}, strict=False)
    assert result.unexpected_keys == ["bogus"] and all(k.startswith("decoder.") for k in result.missing_keys)
    with pytest.raises(CheckpointError, match="expected shape"):
        other.load_state_dict({**state_dict, "rssm.gru.bias_ih": torch.zeros(5)})


def test_to_moves_to_known_devices_and_explains_missing_ones(model: DreamerV3WorldModel) -> None:
    assert model.to("cpu") is model and model.to(torch.device("cpu")) is model
    assert model.device == torch.device("cpu")
    if not any(d.platform == "gpu" for d in jax.devices()):
        with pytest.raises(ValueError, match=r"cuda:0.*JAX sees 0 GPU"):
            model.to("cuda:0")
    with pytest.raises(ValueError, match="Unsupported device"):
        model.to("mps")


# ----------------------------------------------------------------------------------------- hooks


def test_plan_sample_teacher_forcing_and_async_hooks(model: DreamerV3WorldModel) -> None:
    state = model.encode(_obs())
    action = torch.zeros(B, A)
    with model.sampling_mode("argmax"):
        planned = model.plan_step(state, action)
        assert torch.equal(planned.tensors["deter"], model.transition(state, action).tensors["deter"])
        assert list(model.sample_step(state).predictions) == ["obs", "reward", "continue"]
        assert model.sample_step(state, action).state.tensors["deter"].shape == (B, 64)
        forced = model.teacher_forcing_step(state, action, _obs(1))
        assert torch.equal(forced.tensors["deter"], model.update(state, action, _obs(1)).tensors["deter"])

        async def run() -> tuple:
            encoded = await model.async_encode(_obs())
            nxt = await model.async_transition(encoded, action, None, True)
            decoded = await model.async_decode(nxt)
            traj = await model.async_rollout(encoded, torch.zeros(2, B, A))
            return encoded, nxt, decoded, traj

        encoded, nxt, decoded, traj = asyncio.run(run())
    assert torch.equal(encoded.tensors["deter"], state.tensors["deter"])
    assert decoded.predictions["obs"].shape == (B, OBS) and traj.horizon == 2


def test_payload_helpers() -> None:
    payload = WorldModel.coerce_action_payload(torch.zeros(2, 3), kind="continuous")
    assert payload.kind == "continuous" and payload.tensor.shape == (2, 3)
    assert WorldModel.coerce_action_payload(None).kind == "none"
    assert WorldModel.coerce_condition_payload({"wf.a.b": 1}).extras == {"wf.a.b": 1}
    assert WorldModel.coerce_condition_payload(None) == ConditionPayload()
    with pytest.raises(TypeError):
        WorldModel.coerce_action_payload("left")
    batch = _batch()
    assert WorldModel.has_batch_key(batch, "obs") and WorldModel.has_batch_key(batch, "targets.rewards")
    assert not WorldModel.has_batch_key(batch, "next_obs")


def test_no_warnings_on_the_default_v02_path(model: DreamerV3WorldModel) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = model.encode(_obs())
        model.rollout(state, torch.zeros(2, B, A))
        model.loss(_batch())
