"""Trainer: the training loop, outputs, optimizers/schedulers, accumulation, mixed precision, NaN checks."""

from __future__ import annotations

import json
import math
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from wf_training_helpers import ACTION_DIM, BATCH, OBS_SHAPE, SEQ, buffer, config, fresh_model, host_tree, trees_equal

from worldflux.core.batch import Batch
from worldflux.core.exceptions import ConfigurationError, TrainingError
from worldflux.training import Trainer, TrainingConfig, train
from worldflux.training.checkpoint import read_checkpoint_metadata
from worldflux.training.trainer import LazyMetrics, NonFiniteParametersError, build_optimizer, build_schedule

MANIFEST_KEYS = {
    "schema", "backend", "device", "global_step", "best_loss", "checkpoint_schema_version", "training_config",
    "runtime_profile", "train_start_time", "train_end_time", "ttfi_sec", "support_surface", "data_mode",
    "degraded_modes", "run_classification",
}


def _fixed_batches(n: int, batch: int = BATCH, seed: int = 0, nan_at: int | None = None) -> list[Batch]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        obs = rng.standard_normal((batch, SEQ, *OBS_SHAPE)).astype(np.float32)
        if nan_at is not None and i == nan_at:
            obs[0, 0, 0] = np.nan
        out.append(
            Batch(
                obs=torch.from_numpy(obs),
                actions=torch.from_numpy(rng.uniform(-1, 1, (batch, SEQ, ACTION_DIM)).astype(np.float32)),
                rewards=torch.from_numpy(rng.standard_normal((batch, SEQ)).astype(np.float32)),
                terminations=torch.zeros(batch, SEQ),
            )
        )
    return out


def test_dreamer_training_end_to_end(tmp_path):
    model = fresh_model("dreamer:ci")
    before = host_tree(model.params)
    obs = torch.zeros(2, *OBS_SHAPE)
    encoded_before = model.encode(obs).tensors["deter"].clone()
    data = buffer()
    trainer = Trainer(model, config(tmp_path, total_steps=4, log_interval=2, save_interval=2))
    returned = trainer.train(data)
    assert returned is model
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["checkpoint_2.pt", "checkpoint_4.pt", "checkpoint_best.pt", "checkpoint_final.pt",
                     "run_manifest.json"]
    state = trainer.state
    assert state.global_step == 4 and state.num_batches == 4
    assert math.isfinite(state.best_loss) and math.isfinite(state.total_loss)
    assert read_checkpoint_metadata(out / "checkpoint_best.pt")["best_loss"] == state.best_loss  # the best is on disk
    assert set(state.metrics) >= {"loss", "reconstruction", "kl_dynamics", "reward", "continue", "grad_norm"}
    assert state.train_start_time < state.train_end_time and state.ttfi_sec > 0
    profile = trainer.runtime_profile()
    assert set(profile) == {"ttfi_sec", "elapsed_sec", "throughput_steps_per_sec"}
    assert profile["throughput_steps_per_sec"] > 0
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert MANIFEST_KEYS <= set(manifest)
    assert manifest["schema"] == "worldflux.training.run_manifest.v1"
    assert manifest["global_step"] == 4 and manifest["support_surface"] == "supported"
    assert manifest["run_classification"] == "contract_smoke" and manifest["data_mode"] == "unknown"
    assert trainer.quality_report["passed"]
    # The model holds the trained weights; its methods use them.
    after = host_tree(model.params)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(a.dtype == np.float32 for a in after)
    assert not torch.equal(model.encode(obs).tensors["deter"], encoded_before)
    # Continuing to 6 steps reuses the compiled step (compiled once per batch shape).
    traces = trainer.trace_count
    trainer.train(data, num_steps=6)
    assert trainer.state.global_step == 6 and trainer.trace_count == traces


def test_tdmpc2_training_updates_params_and_target(tmp_path):
    model = fresh_model("tdmpc2:ci")
    params0, target0 = host_tree(model.params), host_tree(model.extras)
    trainer = Trainer(model, config(tmp_path, total_steps=3, log_interval=3))
    trainer.train(buffer())
    assert set(trainer.state.metrics) == {"loss", "consistency", "reward", "td", "policy", "grad_norm", "skipped_steps"}
    assert not trees_equal(params0, model.params)
    target1 = host_tree(model.extras)
    assert any(not np.array_equal(a, b) for a, b in zip(target0, target1, strict=True))
    # target = EMA of the online Q ensemble: tau=0.01 per step keeps it close to its start.
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(target0, target1, strict=True)) < 1e-2
    evaluation = trainer.evaluate(buffer(), num_batches=2)
    assert set(evaluation) == {"loss", "consistency", "reward", "td", "policy"}
    assert all(math.isfinite(v) for v in evaluation.values())
    with pytest.raises(TrainingError, match="num_batches must be positive"):
        trainer.evaluate(buffer(), num_batches=0)


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    """2 micro-batches of 2 with accumulation == one batch of 4 (same data) -> same parameters."""
    big = _fixed_batches(1, batch=4, seed=3)[0]
    halves = [
        Batch(obs=big.obs[:2], actions=big.actions[:2], rewards=big.rewards[:2], terminations=big.terminations[:2]),
        Batch(obs=big.obs[2:], actions=big.actions[2:], rewards=big.rewards[2:], terminations=big.terminations[2:]),
    ]
    accumulated = fresh_model("tdmpc2:ci")
    trainer_a = Trainer(accumulated, config(tmp_path / "a", batch_size=2, gradient_accumulation_steps=2,
                                            log_interval=1))
    trainer_a.train(halves, num_steps=2)
    single = fresh_model("tdmpc2:ci")
    trainer_b = Trainer(single, config(tmp_path / "b", log_interval=1))
    trainer_b.train([big], num_steps=1)
    a_leaves, b_leaves = host_tree(accumulated.params), host_tree(single.params)
    initial = host_tree(fresh_model("tdmpc2:ci").params)
    assert any(not np.array_equal(a, i) for a, i in zip(a_leaves, initial, strict=True))
    for a, b in zip(a_leaves, b_leaves, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # TD-MPC2's target EMA ran once (on the update step) in both runs.
    for a, b in zip(host_tree(accumulated.extras), host_tree(single.extras), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # After the first micro-step nothing had been applied yet.
    assert trainer_a.state.global_step == 2 and trainer_b.state.global_step == 1


def test_schedules_match_reference_lambda_factors():
    def reference(kind, step, warmup, total):
        warmup = min(warmup, total - 1)
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = min(max((step - warmup) / max(1, total - warmup), 0.0), 1.0)
        return max(0.0, 1.0 - progress) if kind == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    assert build_schedule(TrainingConfig(scheduler="none", warmup_steps=5)) is None
    for kind in ("constant", "linear", "cosine"):
        for warmup in (0, 3):
            factor = build_schedule(TrainingConfig(scheduler=kind, warmup_steps=warmup, total_steps=10))
            for step in range(12):
                assert float(factor(step)) == pytest.approx(reference(kind, step, warmup, 10), abs=1e-6)


def _updates(optimizer, params, grads, steps=1):
    state = optimizer.init(params)
    for _ in range(steps):
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_builtin_optimizers_follow_torch_semantics():
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    grads = {"w": jnp.array([0.5, 0.1, -0.2])}
    # Adam with weight decay: L2 added to the gradient before Adam (torch.optim.Adam), not decoupled.
    cfg = TrainingConfig(optimizer="adam", learning_rate=0.1, weight_decay=0.5, grad_clip=0.0)
    opt, multi = build_optimizer(cfg)
    assert multi is None
    torch_param = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    torch_opt = torch.optim.Adam([torch_param], lr=0.1, weight_decay=0.5)
    for _ in range(3):
        torch_opt.zero_grad()
        torch_param.grad = torch.tensor([0.5, 0.1, -0.2])
        torch_opt.step()
    np.testing.assert_allclose(_updates(opt, params, grads, steps=3)["w"], torch_param.detach().numpy(), rtol=1e-5)
    # AdamW and SGD(momentum 0.9) likewise.
    for name, factory in (
        ("adamw", lambda p: torch.optim.AdamW([p], lr=0.1, weight_decay=0.5)),
        ("sgd", lambda p: torch.optim.SGD([p], lr=0.1, weight_decay=0.5, momentum=0.9)),
    ):
        opt, _ = build_optimizer(TrainingConfig(optimizer=name, learning_rate=0.1, weight_decay=0.5, grad_clip=0.0))
        torch_param = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
        torch_opt = factory(torch_param)
        for _ in range(3):
            torch_param.grad = torch.tensor([0.5, 0.1, -0.2])
            torch_opt.step()
        np.testing.assert_allclose(_updates(opt, params, grads, steps=3)["w"], torch_param.detach().numpy(),
                                   rtol=1e-5)
    # Clipping by global norm, disabled by 0.
    big = {"w": jnp.array([300.0, 400.0, 0.0])}  # norm 500
    sgd_clip, _ = build_optimizer(TrainingConfig(optimizer="sgd", learning_rate=1.0, grad_clip=5.0))
    np.testing.assert_allclose(_updates(sgd_clip, params, big)["w"], [1.0 - 3.0, -2.0 - 4.0, 3.0], rtol=1e-6)
    sgd_free, _ = build_optimizer(TrainingConfig(optimizer="sgd", learning_rate=1.0, grad_clip=0.0))
    np.testing.assert_allclose(_updates(sgd_free, params, big)["w"], [1.0 - 300.0, -2.0 - 400.0, 3.0], rtol=1e-6)


def test_custom_optimizer_and_schedule_semantics():
    params = {"w": jnp.ones(2)}
    grads = {"w": jnp.ones(2)}
    # A user schedule replaces the config's learning rate for built-in optimizers.
    opt, _ = build_optimizer(TrainingConfig(optimizer="sgd", grad_clip=0.0), scheduler=lambda step: 0.5)
    np.testing.assert_allclose(_updates(opt, params, grads)["w"], [0.5, 0.5])
    # A custom optimizer is used as given, its updates scaled by the config schedule's factor.
    custom = optax.sgd(0.1)
    opt, _ = build_optimizer(TrainingConfig(scheduler="constant", warmup_steps=4, total_steps=10, grad_clip=0.0),
                             optimizer=custom)
    np.testing.assert_allclose(_updates(opt, params, grads)["w"], [1 - 0.1 * 0.25, 1 - 0.1 * 0.25], rtol=1e-6)
    with pytest.raises(TypeError, match="optax.GradientTransformation"):
        build_optimizer(TrainingConfig(), optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    with pytest.raises(TypeError, match="optax schedule"):
        build_optimizer(TrainingConfig(), scheduler=3)


def _dot_operand_dtypes(jaxpr) -> list[tuple[str, ...]]:
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
        for param in eqn.params.values():
            for sub in param if isinstance(param, list | tuple) else [param]:
                if hasattr(sub, "eqns"):
                    found += _dot_operand_dtypes(sub)
                elif hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    found += _dot_operand_dtypes(sub.jaxpr)
    return found


def test_mixed_precision_with_custom_optax_optimizer_and_schedule(tmp_path):
    model = fresh_model("tdmpc2:ci")
    # A user optax optimizer and schedule (one compiled step covers both features of this test).
    trainer = Trainer(model, config(tmp_path, total_steps=2, mixed_precision=True, log_interval=1),
                      optimizer=optax.adam(1e-3), scheduler=optax.linear_schedule(1e-3, 0.0, 10))
    trainer.train(buffer())
    assert trainer.state.global_step == 2 and trainer.custom_optimizer and trainer.custom_scheduler
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(model.params))
    assert all(isinstance(v, float) and math.isfinite(v) for v in trainer.state.metrics.values())
    # The loss really computes in bfloat16: every matmul takes bfloat16 operands; losses come out float32.
    state = trainer._train_state
    batch = trainer._convert(buffer().sample(BATCH, SEQ), "test", {})
    jaxpr = jax.make_jaxpr(trainer._program.loss_fn)(state.params, state.extras, batch, jax.random.key(0))
    dots = _dot_operand_dtypes(jaxpr.jaxpr)
    assert dots and all(dtypes == ("bfloat16", "bfloat16") for dtypes in dots), dots
    total, components = jax.eval_shape(trainer._program.loss_fn, state.params, state.extras, batch,
                                       jax.random.key(0))
    assert total.dtype == jnp.float32 and all(c.dtype == jnp.float32 for c in components.values())


@pytest.mark.parametrize("preset", ["tdmpc2:ci", "dreamer:ci"])
def test_nan_step_is_skipped_in_the_step_and_the_first_one_raises(tmp_path, preset):
    # Default max_nonfinite_steps=1 (the reference): the first non-finite step raises; trainer and model hold
    # the state of the last finite step; a later train() continues from there.
    model = fresh_model(preset)
    trainer = Trainer(model, config(tmp_path, total_steps=8, log_interval=3))
    batches = _fixed_batches(8, nan_at=4)
    reference = Trainer(fresh_model(preset), config(tmp_path / "ref", total_steps=4, log_interval=3))
    reference.train(batches[:4])
    with pytest.raises(TrainingError, match=r"Numerical instability at step 5: NaN in losses: \[") as info:
        trainer.train(batches)
    assert "'loss'" in str(info.value)
    assert trainer.state.global_step == 4
    assert trees_equal(reference.model.params, model.params)  # bitwise the state after step 4
    assert trees_equal(reference._train_state.opt_state, trainer._train_state.opt_state)
    if preset == "tdmpc2:ci":
        assert trees_equal(reference.model.extras, model.extras)  # target network untouched too
    trainer.save_checkpoint(tmp_path / "after_nan")  # finite parameters save fine
    clean = [b for i, b in enumerate(batches) if i != 4]
    trainer.train(clean[4:] * 2, num_steps=6)  # usable afterwards, continues from step 4
    assert trainer.state.global_step == 6
    assert all(math.isfinite(v) for v in trainer.state.metrics.values())


def test_nan_steps_below_the_limit_are_skipped_counted_and_reported(tmp_path, caplog):
    model = fresh_model("tdmpc2:ci")
    trainer = Trainer(model, config(tmp_path, total_steps=6, log_interval=3, max_nonfinite_steps=3))
    batches = _fixed_batches(6, nan_at=4)
    expected = Trainer(fresh_model("tdmpc2:ci"), config(tmp_path / "ref", total_steps=5, log_interval=3))
    expected.train([b for i, b in enumerate(batches) if i != 4])
    with caplog.at_level("WARNING", logger="worldflux.training"):
        trainer.train(batches)
    assert trainer.state.global_step == 6 and trainer.state.metrics["skipped_steps"] == 1.0
    assert any("Skipped 1 non-finite step(s) between steps 4 and 6 (latest at step 5" in r.message
               for r in caplog.records)
    # The skipped step changed nothing: same parameters as training on the 5 finite batches.
    np.testing.assert_allclose(host_tree(expected.model.params)[0], host_tree(model.params)[0], rtol=1e-5)


def test_checkpoint_save_refuses_non_finite_parameters(tmp_path):
    model = fresh_model("tdmpc2:ci")
    trainer = Trainer(model, config(tmp_path, total_steps=1))
    model.params = jax.tree.map(lambda x: x * jnp.nan, model.params)
    with pytest.raises(NonFiniteParametersError, match="NaN/Inf"):
        trainer.save_checkpoint(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_metrics_are_fetched_only_at_log_intervals_and_batches_come_from_a_thread(tmp_path, monkeypatch):
    fetches = []
    original = LazyMetrics._values

    def counting(self):
        if self._host is None:
            fetches.append(1)
        return original(self)

    monkeypatch.setattr(LazyMetrics, "_values", counting)
    threads = set()

    class Provider:
        def __init__(self):
            self.inner = buffer()

        def sample(self, request):  # the BatchRequest form
            threads.add(threading.current_thread().name)
            return self.inner.sample(request.batch_size, request.seq_len)

    model = fresh_model("tdmpc2:ci")
    trainer = Trainer(model, config(tmp_path, total_steps=8, log_interval=4))
    trainer.train(Provider())
    assert threads == {"worldflux-trainer-prefetch"}
    assert fetches == []  # the trainer's own syncs fetch metrics together with the monitor
    assert trainer.state.metrics.ready and trainer.metrics_synced


def test_iterable_of_dicts_and_train_one_liner(tmp_path):
    batches = [b.to_dict() for b in _fixed_batches(2)]
    model = fresh_model("tdmpc2:ci")
    returned = train(model, batches, total_steps=3, batch_size=BATCH, sequence_length=SEQ,
                     output_dir=str(tmp_path / "one"), log_interval=1, device="cpu")
    assert returned is model
    assert (tmp_path / "one" / "checkpoint_final.pt").is_dir()
    with pytest.raises(TypeError):
        train(model, batches, total_steps=1, output_dir=str(tmp_path / "x"), not_a_field=1)


def test_invalid_configuration_and_data_errors(tmp_path):
    model = fresh_model("tdmpc2:ci")
    with pytest.raises(ConfigurationError, match="model_overrides"):
        Trainer(model, config(tmp_path, model_overrides={"hidden_dim": 4}))
    with pytest.raises(ConfigurationError, match="ema_decay"):
        Trainer(model, config(tmp_path, ema_decay=0.5))
    with pytest.raises(ConfigurationError, match="backend"):
        Trainer(model, config(tmp_path, backend="official_tdmpc2_torch_subprocess"))
    with pytest.raises(ValueError, match="log_interval must be positive"):
        Trainer(model, config(tmp_path, log_interval=0))
    if jax.default_backend() == "cpu":
        with pytest.raises(ConfigurationError, match=r"TrainingConfig.device='cuda'.*not available"):
            Trainer(model, config(tmp_path, device="cuda"))
    with pytest.raises(ConfigurationError, match="Trainer needs a worldflux world model"):
        Trainer(torch.nn.Linear(2, 2), config(tmp_path))
    trainer = Trainer(model, config(tmp_path))
    with pytest.raises(ConfigurationError, match="submit"):
        trainer.submit()
    single = _fixed_batches(1)[0]
    with pytest.raises(TrainingError, match="got a single Batch"):
        trainer.train(single)
    with pytest.raises(TrainingError, match="must return Batch or dict, got int"):
        trainer.train([1, 2])
    wrong = Batch(obs=torch.zeros(BATCH, SEQ, 5), actions=torch.zeros(BATCH, SEQ, ACTION_DIM),
                  rewards=torch.zeros(BATCH, SEQ))
    with pytest.raises(TrainingError, match="obs_shape"):
        trainer.train([wrong])
    missing = {"obs": torch.zeros(BATCH, SEQ, *OBS_SHAPE), "actions": torch.zeros(BATCH, SEQ, ACTION_DIM)}
    with pytest.raises(TrainingError, match=r"missing required keys.*rewards"):
        trainer.train([missing])
    assert trainer.state.global_step == 0
