"""The experimental families (JEPA, V-JEPA 2, token, diffusion) through the user API, and the skeleton families.

Tiny ``ci`` presets with vector observations; one model per family for the whole module (compiled functions
are shared by models of one config).
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
import torch

import worldflux
from worldflux import Batch, create_world_model
from worldflux.core.exceptions import ConfigurationError
from worldflux.training import Trainer, TrainingConfig
from worldflux.training.data import create_random_buffer

OBS = (5,)
A = 2
FAMILIES = {
    "jepa": ("JEPABaseWorldModel", {"latent": (32,)}, {"reward": (1,), "continue": (1,)}, {"prediction", "reward"}),
    "vjepa2": (
        "VJEPA2WorldModel",
        {"latent": (32,)},
        {"reward": (1,), "continue": (1,)},
        {"prediction", "mask", "reward"},
    ),
    "token": ("TokenWorldModel", {"tokens": (5,)}, {"obs": OBS, "reward": (1,), "continue": (1,)}, {"token", "reward"}),
    "diffusion": (
        "DiffusionWorldModel",
        {"obs": OBS},
        {"obs": OBS, "reward": (1,), "continue": (1,)},
        {"denoise", "reward"},
    ),
}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: create_world_model(f"{name}:ci", obs_shape=OBS, action_dim=A) for name in FAMILIES}


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return Batch(
        obs=torch.randn(4, 4, *OBS, generator=g),
        actions=torch.rand(4, 4, A, generator=g) * 2 - 1,
        rewards=torch.randn(4, 4, generator=g),
        terminations=torch.zeros(4, 4),
    )


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_builds_and_every_output_has_its_shape(models, batch, name):
    cls_name, state_shapes, prediction_shapes, loss_keys = FAMILIES[name]
    model = models[name]
    assert type(model).__name__ == cls_name and type(model) is getattr(worldflux, cls_name)
    assert isinstance(model, worldflux.WorldModel) and isinstance(model, torch.nn.Module)
    assert model.io_contract().required_state_keys == tuple(state_shapes)
    state = model.encode(torch.randn(3, *OBS))
    initial = model.initial_state(3)
    assert {k: tuple(v.shape[1:]) for k, v in initial.tensors.items()} == state_shapes
    assert {k: tuple(v.shape[1:]) for k, v in state.tensors.items()} == state_shapes
    assert all(isinstance(v, torch.Tensor) and v.shape[0] == 3 for v in state.tensors.values())
    nxt = model.transition(state, torch.zeros(3, A))
    assert {k: tuple(v.shape) for k, v in nxt.tensors.items()} == {k: (3, *s) for k, s in state_shapes.items()}
    assert model.update(state, torch.zeros(3, A), torch.randn(3, *OBS)).tensors.keys() == state.tensors.keys()
    predictions = model.decode(nxt).predictions
    assert {k: tuple(v.shape) for k, v in predictions.items()} == {k: (3, *s) for k, s in prediction_shapes.items()}
    trajectory = model.rollout(state, torch.zeros(6, 3, A))
    assert len(trajectory.states) == 7 and tuple(trajectory.rewards.shape) == (6, 3)
    assert torch.equal(trajectory.continues, torch.ones(6, 3))
    out = model.loss(batch)
    assert set(out.components) == loss_keys and set(out.metrics) == loss_keys
    assert out.loss.shape == () and torch.isfinite(out.loss)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_trains_through_trainer_and_round_trips(models, name, tmp_path):
    torch.manual_seed(1)
    fresh = create_world_model(f"{name}:ci", obs_shape=OBS, action_dim=A)
    assert fresh.params is not models[name].params
    data = create_random_buffer(capacity=400, obs_shape=OBS, action_dim=A, num_episodes=8, episode_length=25, seed=0)
    train_batch = data.sample(4, seq_len=4)  # the shape `batch` compiled
    fresh.reseed(0)  # the same loss randomness (masks, noise) before and after
    before = float(fresh.loss(train_batch).loss)
    config = TrainingConfig(
        total_steps=20,
        batch_size=8,
        sequence_length=4,
        learning_rate=3e-3,
        log_interval=10,
        save_interval=1000,
        output_dir=str(tmp_path / "run"),
    )
    Trainer(fresh, config).train(data)
    fresh.reseed(0)
    assert float(fresh.loss(train_batch).loss) < before
    # save_pretrained / from_pretrained: the same tensors and the same (deterministic) outputs.
    fresh.save_pretrained(str(tmp_path / "saved"))
    loaded = type(fresh).from_pretrained(str(tmp_path / "saved"))
    assert type(create_world_model(str(tmp_path / "saved"))) is type(fresh)
    left, right = fresh.state_dict(), loaded.state_dict()
    assert list(left) == list(right) and all(torch.equal(left[k], right[k]) for k in left)
    obs = torch.randn(3, *OBS)
    a, b = fresh.encode(obs), loaded.encode(obs)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    pa, pb = fresh.decode(a).predictions, loaded.decode(b).predictions
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


@pytest.mark.parametrize("name", ["jepa", "vjepa2"])
def test_jepa_target_encoder_is_an_ema_of_the_online_encoder(models, batch, name):
    model = models[name]
    online, target = model.params["encoder"], model.extras
    assert jax.tree.structure(online) == jax.tree.structure(target)
    model.loss(batch)  # the loss never moves the target
    pairs = zip(jax.tree.leaves(target), jax.tree.leaves(model.extras), strict=True)
    assert all(np.array_equal(x, y) for x, y in pairs)
    model.extras = jax.tree.map(lambda x: x * 0.0, target)
    model.on_after_optimizer_step()
    decay = model.core.ema_decay
    for new, o in zip(jax.tree.leaves(model.extras), jax.tree.leaves(online), strict=True):
        np.testing.assert_allclose(np.asarray(new), (1 - decay) * np.asarray(o), rtol=1e-5, atol=1e-7)
    model.extras = target
    names = list(model.state_dict())
    assert any(n.startswith("_target_encoder.") for n in names)
    assert model.target_params is model.extras


def test_token_and_diffusion_sampling_follows_the_key_stream(models):
    for name in ("token", "diffusion"):
        model = models[name]
        state = model.encode(torch.randn(4, *OBS))
        model.reseed(3)
        first = model.transition(state, torch.zeros(4, A))
        model.reseed(3)
        again = model.transition(state, torch.zeros(4, A))
        other = model.transition(state, torch.zeros(4, A))
        key = next(iter(first.tensors))
        assert torch.equal(first.tensors[key], again.tensors[key])
        assert not torch.equal(first.tensors[key], other.tensors[key])
        det = [model.transition(state, torch.zeros(4, A), deterministic=True).tensors[key] for _ in range(2)]
        assert torch.equal(det[0], det[1])


@pytest.mark.parametrize(
    ("model_id", "kwargs", "message"),
    [
        ("diffusion:ci", {"prediction_target": "eps"}, r"prediction_target must be one of \['noise', 'x0', 'v'\]"),
        ("diffusion:ci", {"diffusion_steps": 0}, "diffusion_steps must be a positive int"),
        ("vjepa2:ci", {"mask_ratio": 1.5}, r"mask_ratio must be in \[0, 1\)"),
        ("jepa:ci", {"encoder_dim": 30, "num_heads": 4}, r"encoder_dim \(30\) must be divisible by num_heads \(4\)"),
        ("token:ci", {"vocab_size": 1}, "vocab_size must be >= 2"),
    ],
)
def test_bad_config_values_name_the_field(model_id, kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        create_world_model(model_id, obs_shape=OBS, action_dim=A, **kwargs)


def test_skeleton_families_refuse_to_build_and_name_the_alternatives():
    for name, closest in (
        ("dit", "diffusion"),
        ("ssm", "dreamer"),
        ("renderer3d", "dreamer"),
        ("physics", "tdmpc2"),
        ("gan", "diffusion"),
    ):
        with pytest.raises(ConfigurationError, match=rf"'{name}' is a skeleton family.*'{closest}'"):
            create_world_model(f"{name}:base", obs_shape=OBS, action_dim=A)
        cls_name = {"dit": "DiT", "ssm": "SSM", "renderer3d": "Renderer3D", "physics": "Physics", "gan": "GAN"}[name]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cls = getattr(worldflux, f"{cls_name}SkeletonWorldModel")
            config_cls = getattr(worldflux, f"{cls_name}SkeletonConfig")
        assert [str(w.message) for w in caught] == [
            f"Importing '{cls_name}SkeletonWorldModel' from 'worldflux' is deprecated. Use "
            f"'worldflux.models.skeletons.{cls_name}SkeletonWorldModel' instead. Will be removed in v0.2.0.",
            f"Importing '{cls_name}SkeletonConfig' from 'worldflux' is deprecated. Use "
            f"'worldflux.core.config.{cls_name}SkeletonConfig' instead. Will be removed in v0.2.0.",
        ]
        assert f"{cls_name}SkeletonWorldModel" not in worldflux.__all__
        with pytest.raises(ConfigurationError, match=f"'{name}' is a skeleton family"):
            cls(config_cls())


def test_experimental_models_are_exported_and_catalogued():
    for name, (cls_name, *_rest) in FAMILIES.items():
        assert cls_name in worldflux.__all__
        info = worldflux.get_model_info(f"{name}:base")
        assert info["maturity"] == "experimental" and info["support_tier"] == "experimental"
        assert "configuration only" not in info["description"]
    assert "configuration only" in worldflux.get_model_info("gan:base")["description"]


def test_cem_plans_with_an_experimental_model(models):
    from worldflux.planners import CEMPlanner

    model = models["jepa"]
    planner = CEMPlanner(horizon=3, action_dim=A, num_samples=8, num_elites=2)
    one = planner.plan(model, model.encode(torch.zeros(1, *OBS)))  # the compiled core path
    many = planner.plan(model, model.encode(torch.zeros(8, *OBS)))  # the generic plan_step / decode path
    assert tuple(one.tensor.shape) == tuple(many.tensor.shape) == (3, A)
    assert torch.isfinite(one.tensor).all() and torch.isfinite(many.tensor).all()
