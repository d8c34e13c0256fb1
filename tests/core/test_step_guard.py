"""The core step builder on a toy family: the non-finite guard, EMA gating under accumulation, parameter groups,
the precision policy, and the family interface check (fast: tiny programs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from worldflux_jax.errors import ConfigurationError
from worldflux_jax.family import as_family
from worldflux_jax.optim import OptimizerSpec, build_optimizer
from worldflux_jax.precision import with_precision
from worldflux_jax.step import create_train_state, init_guard, make_eval_step, make_train_step


class Toy:
    """Linear regression `y = x @ w`, with an EMA'd copy of `w` as extras (like TD-MPC2's target)."""

    family = "toy"
    config = None

    def init(self, key):
        return {"w": jax.random.normal(key, (3,))}

    def init_extras(self, params):
        return {"w": jnp.array(params["w"])}

    def train_loss(self, params, extras, batch, key):
        err = batch["x"] @ params["w"] - batch["y"]
        return jnp.mean(err**2), {"mse": jnp.mean(err**2), "target_gap": jnp.sum((extras["w"] - params["w"]) ** 2)}

    def post_update(self, state, components):
        return state.replace(extras=jax.tree.map(lambda t, p: 0.5 * t + 0.5 * p, state.extras, state.params))

    def make_batch(self, obs, actions, rewards, terminations=None):
        return {"x": jnp.asarray(obs, jnp.float32), "y": jnp.asarray(rewards, jnp.float32)}

    def planning_model(self):
        return None

    def torch_state_dict(self, params, extras=None):
        return {"w": np.asarray(params["w"])}


def _raw(seed, nan=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = rng.standard_normal(4).astype(np.float32)
    if nan:
        y[0] = np.nan
    return {"obs": x, "actions": np.zeros((4, 1), np.float32), "rewards": y, "terminations": None}


def _state(toy, optimizer, limit):
    params = toy.init(jax.random.key(0))
    return create_train_state(params, optimizer, toy.init_extras(params), init_guard(limit))


def _host(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_non_finite_step_keeps_state_bitwise_and_the_limit_halts():
    toy = Toy()
    opt = build_optimizer(OptimizerSpec(name="adam", learning_rate=0.1))
    step = make_train_step(toy, opt, donate=False)
    key = jax.random.key(1)
    state, _ = step(_state(toy, opt, limit=2), _raw(0), key)
    before = _host((state.params, state.opt_state, state.extras))
    state, metrics = step(state, _raw(1, nan=True), key)
    after = _host((state.params, state.opt_state, state.extras))
    assert all(np.array_equal(a, b) for a, b in zip(after, before, strict=True))  # bitwise unchanged
    assert float(metrics["skipped_steps"]) == 1 and int(state.step) == 2 and int(state.guard.halted_at) == 0
    state, _ = step(state, _raw(2), key)  # a finite step resets the run of non-finite ones
    assert int(state.guard.consecutive) == 0 and int(state.step) == 3
    state, _ = step(state, _raw(3, nan=True), key)
    held = _host((state.params, state.step))
    state, metrics = step(state, _raw(4, nan=True), key)  # 2nd consecutive: halts at step 5
    assert int(state.guard.halted_at) == 5 and int(metrics["_halted_at"]) == 5 and int(state.step) == 4
    state, _ = step(state, _raw(5), key)  # halted: even finite steps change nothing
    assert all(np.array_equal(a, b) for a, b in zip(_host((state.params, state.step)), held, strict=False))
    assert step.trace_count == 1


def test_post_update_runs_only_on_applied_updates_under_accumulation():
    toy = Toy()
    opt = build_optimizer(OptimizerSpec(name="sgd", learning_rate=0.1, accumulation_steps=2))
    step = make_train_step(toy, opt, donate=False)
    state = _state(toy, opt, limit=1)
    extras0 = _host(state.extras)
    state, _ = step(state, _raw(0), jax.random.key(0))
    assert all(np.array_equal(a, b) for a, b in zip(_host(state.extras), extras0, strict=False))  # micro-step: no EMA
    state, _ = step(state, _raw(1), jax.random.key(0))
    assert not all(np.array_equal(a, b) for a, b in zip(_host(state.extras), extras0, strict=False))  # update: EMA ran


def test_parameter_groups_get_their_own_learning_rates():
    params = {"a": jnp.ones(2), "b": jnp.ones(2)}
    grads = {"a": jnp.ones(2), "b": jnp.ones(2)}
    opt = build_optimizer(
        OptimizerSpec(name="sgd", learning_rate=0.1),
        groups=({"a": "actor", "b": "model"}, {"actor": 0.5, "model": None}),
    )
    updates, _ = opt.tx.update(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["a"], 0.5)
    np.testing.assert_allclose(new["b"], 0.9)
    with pytest.raises(ConfigurationError, match="group 'x'"):
        build_optimizer(OptimizerSpec(), groups=({"a": "x"}, {"x": -1.0}))


def test_precision_policy_casts_at_the_boundary_and_leaves_modules_alone():
    import flax.linen as nn

    dense = nn.Dense(2)
    params = dense.init(jax.random.key(0), jnp.ones((1, 3)))["params"]

    def loss(p, extras, batch, key):
        out = dense.apply({"params": p}, batch)
        return jnp.sum(out), {"mean": jnp.mean(out)}

    low = with_precision(loss, "bf16")
    jaxpr = jax.make_jaxpr(low)(params, None, jnp.ones((4, 3)), None)
    text = str(jaxpr)
    assert "bf16[4,3]" in text and "bf16[3,2]" in text and dense.dtype is None  # inputs cast, module untouched
    total, comps = low(params, None, jnp.ones((4, 3)), None)
    assert total.dtype == jnp.float32 and comps["mean"].dtype == jnp.float32
    grads = jax.grad(lambda p: low(p, None, jnp.ones((4, 3)), None)[0])(params)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


def test_eval_step_and_family_check():
    toy = Toy()
    params = toy.init(jax.random.key(0))
    evaluate = make_eval_step(toy)
    out = evaluate(params, toy.init_extras(params), _raw(0), jax.random.key_data(jax.random.key(0)), np.int32(0))
    assert set(out) == {"loss", "mse", "target_gap"}
    assert as_family(toy) is toy
    with pytest.raises(ConfigurationError, match="missing: \\['post_update'"):
        as_family(
            type(
                "Broken",
                (),
                {
                    "family": "x",
                    **{
                        k: getattr(Toy, k)
                        for k in (
                            "init",
                            "init_extras",
                            "train_loss",
                            "make_batch",
                            "planning_model",
                            "torch_state_dict",
                        )
                    },
                },
            )()
        )
