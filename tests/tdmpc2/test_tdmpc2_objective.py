"""TD-MPC2's `objective="symlog"`: scale-free regression targets, frozen Q in the policy term, per-head TD."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldflux.core.exceptions import ConfigurationError
from worldflux_jax.config import TDMPC2Config
from worldflux_jax.distributions import symexp
from worldflux_jax.tdmpc2 import TDMPC2, Batch


def _model(objective: str) -> tuple[TDMPC2, dict, dict]:
    config = TDMPC2Config.from_size("ci", obs_shape=(5,), action_dim=2, objective=objective)
    model = TDMPC2(config)
    params = model.init(jax.random.key(0))
    return model, params, model.init_target(params)


def _batch(reward_scale: float = 1.0) -> Batch:
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    return Batch(
        jax.random.normal(k1, (4, 3, 5)),
        jax.random.uniform(k2, (4, 3, 2), minval=-1.0, maxval=1.0),
        reward_scale * jax.random.uniform(k3, (4, 3), minval=-16.0, maxval=0.0),
    )


def test_unknown_objective_is_a_named_error() -> None:
    with pytest.raises((ConfigurationError, ValueError), match="objective must be one of"):
        TDMPC2Config.from_size("ci", obs_shape=(5,), action_dim=2, objective="paper")


def test_symlog_heads_predict_in_return_units() -> None:
    model, params, _ = _model("symlog")
    z = model.encode(params, jnp.ones((3, 5)))
    a = jnp.zeros((3, 2))
    np.testing.assert_allclose(model.predict_reward(params, z, a), symexp(model._reward_head(params, z, a)), rtol=1e-6)
    np.testing.assert_allclose(
        model.predict_q(params, z, a), symexp(model._q_heads(params["_q_ensemble"], z, a)), rtol=1e-6
    )
    ref, ref_params, _ = _model("reference")
    np.testing.assert_allclose(ref.predict_reward(ref_params, z, a), ref._reward_head(ref_params, z, a))


@pytest.mark.parametrize("objective, reaches_q", [("reference", True), ("symlog", False)])
def test_the_policy_term_reaches_q_only_in_the_reference_objective(objective: str, reaches_q: bool) -> None:
    model, params, target = _model(objective)

    def policy_term(p):
        return model.loss(p, target, _batch())[1]["policy"]

    grads = jax.grad(policy_term)(params)
    q_norm = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["_q_ensemble"]))
    assert (q_norm > 0) is reaches_q
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["_policy"])) > 0


def test_symlog_losses_do_not_grow_with_the_reward_scale() -> None:
    """x1000 rewards: the reference's reward / TD terms grow ~1e6-fold, the symlog ones less than 100-fold."""
    for objective, bound in (("reference", 1e4), ("symlog", 100.0)):
        model, params, target = _model(objective)
        small = model.loss(params, target, _batch(1.0))[1]
        large = model.loss(params, target, _batch(1000.0))[1]
        for key in ("reward", "td"):
            ratio = float(large[key] / small[key])
            assert (ratio > bound) if objective == "reference" else (ratio < bound), (objective, key, ratio)


def test_every_q_head_regresses_the_target_under_symlog() -> None:
    """Per-head TD: a head that drifts from the target raises the loss even when the heads' mean is right."""
    model, params, target = _model("symlog")
    batch = _batch()
    base = float(model.loss(params, target, batch)[1]["td"])
    shift = jnp.asarray([3.0, -3.0])  # the mean over the K=2 heads is unchanged
    q = params["_q_ensemble"]
    moved = jax.tree_util.tree_map_with_path(
        lambda path, x: x + shift.reshape((2,) + (1,) * (x.ndim - 1))
        if "bias" in jax.tree_util.keystr(path) and x.shape[-1] == 1
        else x,
        q,
    )
    spread = float(model.loss({**params, "_q_ensemble": moved}, target, batch)[1]["td"])
    assert spread > base + 5.0
