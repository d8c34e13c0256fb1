"""The open ``WorldModel`` base class: a user's own torch world model (only ``loss``, ``encode``,
``transition``, ``decode``) instantiates, rolls out, plans with CEM, trains through ``Trainer`` (torch engine)
with callbacks, checkpoints and resumes exactly, and round-trips ``save_pretrained`` / ``from_pretrained``;
the async wrappers; capability errors; the bundled JAX models are ``nn.Module``s too."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import torch
from torch import nn

import worldflux
from worldflux import AutoConfig, AutoWorldModel, Batch, State, WorldModel
from worldflux.core import CapabilityError, LossOutput, ModelOutput, TrainingError, ValidationError
from worldflux.core.config import WorldModelConfig
from worldflux.core.spec import Capability
from worldflux.planners import CEMPlanner
from worldflux.training import Callback, ReplayBuffer, Trainer, TrainingConfig, train
from worldflux.training.torch_engine import TorchTrainer

OBS, ACT = 4, 2


class TinyWorldModel(WorldModel):
    """What a researcher writes first: encode, transition, decode and loss."""

    model_type = "tiny_user_model"

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        self.capabilities = {Capability.REWARD_PRED, Capability.LATENT_DYNAMICS}
        obs, act = config.obs_shape[0], config.action_dim
        self.enc = nn.Linear(obs, 8)
        self.dyn = nn.Linear(8 + act, 8)
        self.rew = nn.Linear(8, 1)
        self.dec = nn.Linear(8, obs)

    def encode(self, obs, deterministic=False):
        x = obs["obs"] if isinstance(obs, dict) else obs
        return State(tensors={"latent": torch.tanh(self.enc(x))})

    def transition(self, state, action, conditions=None, deterministic=False):
        z = state.tensors["latent"]
        a = action if action is not None else torch.zeros(z.shape[0], self.config.action_dim)
        return State(tensors={"latent": torch.tanh(self.dyn(torch.cat([z, a], -1)))})

    def decode(self, state, conditions=None):
        z = state.tensors["latent"]
        return ModelOutput(predictions={"obs": self.dec(z), "reward": self.rew(z)}, state=state)

    def loss(self, batch):
        obs, actions, rewards = batch.obs, batch.actions, batch.rewards
        z = torch.tanh(self.enc(obs[:, 0]))
        recon = nn.functional.mse_loss(self.dec(z), obs[:, 0])
        reward_terms = []
        for t in range(obs.shape[1] - 1):
            z = torch.tanh(self.dyn(torch.cat([z, actions[:, t]], -1)))
            reward_terms.append(nn.functional.mse_loss(self.rew(z).squeeze(-1), rewards[:, t]))
        reward = torch.stack(reward_terms).mean()
        return LossOutput(loss=recon + reward, components={"recon": recon, "reward": reward})


def _config() -> WorldModelConfig:
    return WorldModelConfig(model_type="tiny_user_model", obs_shape=(OBS,), action_dim=ACT)


def _buffer() -> ReplayBuffer:
    buffer = ReplayBuffer(capacity=400, obs_shape=(OBS,), action_dim=ACT)
    g = torch.Generator().manual_seed(0)
    for _ in range(8):
        n = 40
        buffer.add_episode(
            torch.randn(n, OBS, generator=g).numpy(), torch.randn(n, ACT, generator=g).numpy(),
            torch.randn(n, generator=g).numpy(),
        )
    return buffer


def _training_config(tmp_path, **kw) -> TrainingConfig:
    base = dict(total_steps=6, batch_size=4, sequence_length=5, output_dir=str(tmp_path), device="cpu",
                log_interval=2, save_interval=3, seed=7)
    base.update(kw)
    return TrainingConfig(**base)


def test_user_model_instantiates_and_is_an_nn_module():
    model = TinyWorldModel(_config())
    assert isinstance(model, nn.Module) and isinstance(model, WorldModel)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert model.supports(Capability.REWARD_PRED) and not model.supports("obs_decoder")
    contract = model.io_contract()
    contract.validate()
    assert contract.required_batch_keys == ("obs",)
    assert len(model.contract_fingerprint()) == 64


def test_only_loss_is_abstract():
    assert WorldModel.__abstractmethods__ == frozenset({"loss"})
    with pytest.raises(TypeError, match="loss"):
        WorldModel()


def test_bundled_jax_models_are_nn_modules():
    model = worldflux.create_world_model("tdmpc2:ci", obs_shape=(5,), action_dim=2)
    assert isinstance(model, nn.Module) and isinstance(model, WorldModel)
    assert len(model.state_dict()) > 0


def test_rollout_plan_sample_and_teacher_forcing_defaults():
    model = TinyWorldModel(_config())
    state = model.encode(torch.randn(3, OBS))
    trajectory = model.rollout(state, torch.randn(5, 3, ACT))
    assert len(trajectory.states) == 6 and trajectory.rewards.shape == (5, 3) and trajectory.continues is None
    assert model.rollout(state, None).horizon == 0
    assert model.plan_step(state, torch.randn(3, ACT)).tensors["latent"].shape == (3, 8)
    assert set(model.sample_step(state, torch.randn(3, ACT)).predictions) == {"obs", "reward"}
    with pytest.warns(DeprecationWarning, match="re-encodes"):
        posterior = model.teacher_forcing_step(state, torch.randn(3, ACT), torch.randn(3, OBS))
    assert posterior.tensors["latent"].shape == (3, 8)
    with pytest.raises(ValidationError):
        model.action_tensor_or_none(torch.randn(3, ACT + 1))  # action width checked against the contract


def test_cem_planner_plans_the_user_model():
    torch.manual_seed(0)
    model = TinyWorldModel(_config())
    planner = CEMPlanner(horizon=3, action_dim=ACT, num_samples=16, num_elites=4, iterations=2)
    payload = planner.plan(model, model.encode(torch.randn(1, OBS)))
    assert payload.tensor.shape == (3, ACT) and payload.extras["wf.planner.horizon"] == 3


def test_capability_errors():
    class EncoderOnly(WorldModel):
        def loss(self, batch):
            return LossOutput(loss=torch.zeros(()))

    model = EncoderOnly()
    with pytest.raises(CapabilityError, match="decoder"):
        model.decode(State(tensors={"latent": torch.zeros(1, 2)}))
    with pytest.raises(CapabilityError, match="observation_encoder"):
        model.encode(torch.zeros(1, 1))
    with pytest.raises(NotImplementedError):  # the reference raised NotImplementedError here
        model.transition(State(tensors={"latent": torch.zeros(1, 2)}), None)
    with pytest.raises(CapabilityError, match="Model lacks capability: obs_decoder"):
        model.require(Capability.OBS_DECODER)


def test_async_wrappers_run_off_the_loop_and_prefer_native_components():
    model = TinyWorldModel(_config())
    loop_thread = threading.get_ident()
    seen = []
    original = model.encode

    def encode(obs, deterministic=False):
        seen.append(threading.get_ident())
        return original(obs, deterministic)

    model.encode = encode

    async def run():
        state = await model.async_encode(torch.randn(2, OBS))
        nxt = await model.async_transition(state, torch.randn(2, ACT))
        out = await model.async_decode(nxt)
        traj = await model.async_rollout(state, torch.randn(3, 2, ACT))
        return out, traj

    out, traj = asyncio.run(run())
    assert seen and seen[0] != loop_thread
    assert out.predictions["reward"].shape == (2, 1) and len(traj.states) == 4

    class NativeDecoder:
        def __init__(self):
            self.calls = 0

        def decode(self, state, conditions=None):
            raise AssertionError("the sync method must not be used when decode_async exists")

        async def decode_async(self, state, conditions=None):
            self.calls += 1
            return {"value": state.tensors["latent"].sum(-1)}

    class Composed(WorldModel):
        def loss(self, batch):
            return LossOutput(loss=torch.zeros(()))

    composed = Composed()
    composed.decoder_module = NativeDecoder()
    result = asyncio.run(composed.async_decode(State(tensors={"latent": torch.ones(2, 3)})))
    assert composed.decoder_module.calls == 1 and result.predictions["value"].tolist() == [3.0, 3.0]


class _Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, trainer):
        self.events.append("begin")

    def on_step_end(self, trainer):
        self.events.append(trainer.state.global_step)

    def on_train_end(self, trainer):
        self.events.append("end")


def test_trainer_trains_a_user_model_with_callbacks_checkpoints_and_manifest(tmp_path):
    torch.manual_seed(0)
    model = TinyWorldModel(_config())
    recorder = _Recorder()
    trainer = Trainer(model, _training_config(tmp_path), callbacks=[recorder])
    assert isinstance(trainer, Trainer) and isinstance(trainer, TorchTrainer)
    before = [p.detach().clone() for p in model.parameters()]
    assert trainer.train(_buffer()) is model
    assert recorder.events == ["begin", 1, 2, 3, 4, 5, 6, "end"]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert {"loss", "recon", "reward"} <= set(trainer.state.metrics)
    for name in ("checkpoint_3.pt", "checkpoint_6.pt", "checkpoint_final.pt", "checkpoint_best.pt"):
        assert (tmp_path / name).is_file(), name
    ckpt = torch.load(tmp_path / "checkpoint_final.pt", weights_only=True)
    assert ckpt["checkpoint_schema_version"] == 1 and ckpt["global_step"] == 6
    manifest = json.loads((tmp_path / "run_manifest.json").read_text())
    assert manifest["schema"] == "worldflux.training.run_manifest.v1"
    assert manifest["support_surface"] == "advanced" and manifest["run_classification"] == "advanced_evidence"
    assert manifest["ttfi_sec"] > 0 and manifest["checkpoint_schema_version"] == 1
    assert set(trainer.evaluate(_buffer(), num_batches=2)) == {"loss", "recon", "reward"}


def test_resume_is_exact(tmp_path):
    def run(steps, out, resume=None, sched="cosine"):
        torch.manual_seed(1)
        model = TinyWorldModel(_config())
        trainer = Trainer(model, _training_config(out, total_steps=8, scheduler=sched, warmup_steps=2,
                                                  gradient_accumulation_steps=2))
        trainer.train(_buffer(), num_steps=steps, resume_from=resume)
        return model

    straight = run(8, tmp_path / "a")
    run(5, tmp_path / "b")
    resumed = run(8, tmp_path / "c", resume=str(tmp_path / "b" / "checkpoint_final.pt"))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_train_one_liner_and_nan_message(tmp_path):
    model = TinyWorldModel(_config())
    assert train(model, _buffer(), total_steps=2, batch_size=2, sequence_length=3, output_dir=str(tmp_path),
                 device="cpu") is model

    class Broken(TinyWorldModel):
        def loss(self, batch):
            out = super().loss(batch)
            return LossOutput(loss=out.loss * float("nan"), components=out.components)

    trainer = Trainer(Broken(_config()), _training_config(tmp_path / "nan"))
    with pytest.raises(TrainingError, match=r"Numerical instability at step 0: NaN in losses: \['loss'\]"):
        trainer.train(_buffer())


def test_plain_nn_module_with_loss_trains(tmp_path):
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(OBS))

        def loss(self, batch: Batch):
            return ((batch.obs * self.w).sum(-1) - batch.rewards).pow(2).mean()

    model = Plain()
    Trainer(model, _training_config(tmp_path, total_steps=3)).train(_buffer())
    assert not torch.equal(model.w.detach(), torch.ones(OBS))


def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    model = TinyWorldModel(_config())
    model.save_pretrained(str(tmp_path / "m"))
    meta = json.loads((tmp_path / "m" / "worldflux_meta.json").read_text())
    assert meta["model_type"] == "tiny_user_model"
    for loader in (TinyWorldModel.from_pretrained, WorldModel.from_pretrained, AutoWorldModel.from_pretrained):
        loaded = loader(str(tmp_path / "m"))
        assert type(loaded) is TinyWorldModel
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert AutoConfig.from_pretrained(str(tmp_path / "m")).model_type == "tiny_user_model"


def test_local_backend_and_local_submit_errors(tmp_path):
    from worldflux.core import ConfigurationError
    from worldflux.training import JobStatus, LocalBackend

    backend = LocalBackend()
    model = TinyWorldModel(_config())
    handle = backend.submit({"model": model, "data": _buffer(), "training_config": _training_config(tmp_path)})
    assert backend.status(handle) is JobStatus.COMPLETED
    failed = backend.submit({"model": model, "data": [{"obs": None}], "training_config": _training_config(tmp_path)})
    assert backend.status(failed) is JobStatus.FAILED and "TrainingError" in list(backend.logs(failed))[-1]
    trainer = Trainer(model, _training_config(tmp_path / "local"))
    with pytest.raises(ConfigurationError, match="delegated"):
        trainer.submit()


def test_documented_import_surface():
    from worldflux.core import (  # noqa: F401
        AsyncDecoderAdapter,
        CategoricalLatentSpace,
        ComponentSpec,
        GaussianLatentSpace,
        SimNormLatentSpace,
        ensure_async_decoder,
    )
    from worldflux.training import (  # noqa: F401
        ExecutionDelegatingBackend,
        JobHandle,
        MemoryReplayBackend,
        ParquetReplayBackend,
        ReplayBackend,
        TrainingBackend,
    )

    for name in ("OfficialBackendHandle", "JobStatus", "AutoWorldModel", "AutoConfig", "WorldModelRegistry",
                 "LatentSpace", "DynamicsModel", "AsyncDecoder"):
        assert name in worldflux.__all__ and getattr(worldflux, name) is not None
    space = CategoricalLatentSpace(num_categoricals=2, num_classes=3)
    logits = torch.randn(4, 6)
    assert space.sample(logits, deterministic=True).shape == (4, 2, 3)
    assert torch.allclose(space.kl_divergence(logits, logits), torch.zeros(4), atol=1e-6)
    gauss = GaussianLatentSpace(dim=3)
    assert gauss.kl_divergence(torch.zeros(2, 6), torch.zeros(2, 6)).abs().max() < 1e-6
    assert torch.allclose(SimNormLatentSpace(dim=8, simnorm_dim=4).sample(torch.randn(2, 8)).view(2, 2, 4).sum(-1),
                          torch.ones(2, 2))
    backend = MemoryReplayBackend(_buffer())
    assert isinstance(backend, ReplayBackend) and backend.sample(2, 3).obs.shape == (2, 3, OBS)


def test_torch_engine_shares_the_run_directory_guards(tmp_path):
    """One writer per output_dir and the step-count checks hold for the torch engine too (issue 16)."""
    from worldflux.core.exceptions import CheckpointError, ConfigurationError

    first = Trainer(TinyWorldModel(_config()), _training_config(tmp_path))
    with pytest.raises(CheckpointError, match="output_dir|already"):
        Trainer(TinyWorldModel(_config()), _training_config(tmp_path))
    for bad in (0, -3, 2.5):
        with pytest.raises(ConfigurationError, match="num_steps"):
            first.train(_buffer(), num_steps=bad)
    assert not (tmp_path / "checkpoint_final.pt").exists()
