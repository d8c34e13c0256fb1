"""Torch optimizers / LR schedulers passed to ``Trainer`` for a JAX model are translated to optax: the
translated update sequence equals torch's own, step for step; unsupported ones are refused with the list."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import worldflux
from worldflux.interop import to_torch
from worldflux.training import ReplayBuffer, Trainer, TrainingConfig
from worldflux.training.torch_to_optax import translate_torch_optimization

S = torch.optim.lr_scheduler
GRADS = [np.array([0.5, -1.0, 2.0], np.float32) * (k + 1) for k in range(6)]
CASES = {
    "sgd-steplr": (lambda p: torch.optim.SGD(p, lr=0.1), lambda o: S.StepLR(o, step_size=2, gamma=0.5)),
    "sgd-nesterov-multistep": (
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda o: S.MultiStepLR(o, milestones=[1, 3], gamma=0.3),
    ),
    "adam-exponential": (lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1), lambda o: S.ExponentialLR(o, 0.9)),
    "adamw-cosine": (
        lambda p: torch.optim.AdamW(p, lr=3e-2, betas=(0.8, 0.95), weight_decay=0.05),
        lambda o: S.CosineAnnealingLR(o, T_max=4, eta_min=1e-3),
    ),
    "adam-linear": (lambda p: torch.optim.Adam(p, lr=1e-2), lambda o: S.LinearLR(o, 0.2, 1.0, total_iters=3)),
    "adamw-lambda": (lambda p: torch.optim.AdamW(p, lr=1e-2), lambda o: S.LambdaLR(o, lambda k: 1 / (k + 1))),
    "adam-none": (lambda p: torch.optim.Adam(p, lr=1e-2), None),
}


class _Config:
    total_steps = 10


@pytest.mark.parametrize("case", list(CASES))
def test_translation_matches_torch_step_for_step(case: str) -> None:
    make_opt, make_sched = CASES[case]
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = make_opt([param])
    sched = make_sched(opt) if make_sched else None
    transform, schedule = translate_torch_optimization(None, _Config(), opt, sched)
    assert schedule is None
    params = jnp.asarray(param.detach().numpy())
    state = transform.init(params)
    for grad in GRADS:
        param.grad = torch.from_numpy(grad.copy())
        opt.step()
        if sched is not None:
            sched.step()
        updates, state = transform.update(jnp.asarray(grad), state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(np.asarray(params), param.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_scheduler_alone_becomes_an_optax_schedule() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
    _, schedule = translate_torch_optimization(None, _Config(), None, S.StepLR(opt, step_size=2, gamma=0.5))
    assert [float(schedule(k)) for k in range(5)] == pytest.approx([0.4, 0.4, 0.2, 0.2, 0.1])


def test_unsupported_ones_are_refused_with_the_supported_list() -> None:
    param = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(TypeError, match="RMSprop.*supported: Adam, AdamW, SGD"):
        translate_torch_optimization(None, _Config(), torch.optim.RMSprop([param]), None)
    opt = torch.optim.SGD([param], lr=0.1)
    with pytest.raises(TypeError, match="OneCycleLR.*StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR"):
        translate_torch_optimization(None, _Config(), opt, S.OneCycleLR(opt, max_lr=1.0, total_steps=10))
    with pytest.raises(TypeError, match="amsgrad"):
        translate_torch_optimization(None, _Config(), torch.optim.Adam([param], amsgrad=True), None)
    passthrough = optax.adam(1e-3)
    assert translate_torch_optimization(None, _Config(), passthrough, None) == (passthrough, None)


class _FakeJaxModel:
    """``params`` plus read-only torch views of them, as ``JaxWorldModel`` offers."""

    def __init__(self) -> None:
        self.params = {"a": jnp.ones(2), "b": jnp.ones(3), "c": jnp.ones(4)}

    def named_parameters(self):
        for name in ("a", "b", "c"):
            yield name, to_torch(self.params[name])

    def parameters(self):
        return (t for _, t in self.named_parameters())


def test_param_groups_map_to_leaves_and_ungrouped_leaves_stay_frozen() -> None:
    model = _FakeJaxModel()
    views = dict(model.named_parameters())
    opt = torch.optim.SGD([{"params": [views["a"]], "lr": 0.1}, {"params": [views["b"]], "lr": 1.0}], lr=0.5)
    transform, _ = translate_torch_optimization(model, _Config(), opt, None)
    grads = {k: jnp.ones_like(v) for k, v in model.params.items()}
    updates, _ = transform.update(grads, transform.init(model.params), model.params)
    assert np.allclose(updates["a"], -0.1) and np.allclose(updates["b"], -1.0) and np.allclose(updates["c"], 0.0)


def test_trainer_accepts_a_torch_optimizer_for_a_jax_model(tmp_path) -> None:
    model = worldflux.create_world_model("tdmpc2:ci", obs_shape=(3,), action_dim=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    config = TrainingConfig(total_steps=2, batch_size=2, sequence_length=3, output_dir=str(tmp_path), device="cpu")
    trainer = Trainer(model, config, optimizer=opt, scheduler=S.ExponentialLR(opt, 0.5))
    buffer = ReplayBuffer(capacity=50, obs_shape=(3,), action_dim=2)
    buffer.add_episode(np.random.randn(20, 3).astype(np.float32), np.random.randn(20, 2).astype(np.float32),
                       np.random.randn(20).astype(np.float32))
    before = np.asarray(next(iter(model.parameters()))).copy()
    trainer.train(buffer)
    assert trainer.state.global_step == 2
    assert not np.array_equal(before, np.asarray(next(iter(model.parameters()))))
