"""The layers in `worldflux_jax.nn` whose gradients are written by hand: values and gradients equal plain
autodiff of the same math (Flax's LayerNorm, `x @ w`)."""

from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldflux_jax.nn import LN_EPS, GRUCell, LayerNorm, linear_nt


@pytest.mark.parametrize("shape, axes", [((6, 5), 1), ((3, 4, 4, 4, 2), 3)])
def test_layer_norm_matches_flax_values_and_gradients(shape, axes):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape) * 3 + 1, jnp.float32)
    features = shape[-axes:]
    params = {"scale": jnp.asarray(rng.standard_normal(features), jnp.float32),
              "bias": jnp.asarray(rng.standard_normal(features), jnp.float32)}
    axes_tuple = tuple(range(-axes, 0))
    ours = LayerNorm(axes=axes)
    ref = fnn.LayerNorm(epsilon=LN_EPS, use_fast_variance=False, reduction_axes=axes_tuple, feature_axes=axes_tuple)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)["params"]) == jax.tree.map(jnp.shape, params)
    weights = jnp.asarray(rng.standard_normal(shape), jnp.float32)  # a loss that weighs every output differently

    def loss(module, p, x):
        return jnp.sum(module.apply({"params": p}, x) * weights)

    np.testing.assert_allclose(ours.apply({"params": params}, x), ref.apply({"params": params}, x), atol=1e-5)
    ours_grads = jax.grad(loss, argnums=(1, 2))(ours, params, x)
    ref_grads = jax.grad(loss, argnums=(1, 2))(ref, params, x)
    for a, b in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_layer_norm_computes_stats_in_float32_and_outputs_its_dtype():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 8)) + 100.0, jnp.bfloat16)
    module = LayerNorm(dtype=jnp.bfloat16)
    out = module.apply(module.init(jax.random.key(0), x), x)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(jnp.std(out.astype(jnp.float32), axis=-1), 1.0, atol=0.05)


def test_linear_nt_equals_matmul_with_its_gradients():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((4, 6)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((6, 5)), jnp.float32)
    np.testing.assert_allclose(linear_nt(x, w, w.T), x @ w, rtol=1e-6, atol=1e-6)
    ours = jax.grad(lambda x, w: jnp.sum(jnp.sin(linear_nt(x, w, w.T))), argnums=(0, 1))(x, w)
    ref = jax.grad(lambda x, w: jnp.sum(jnp.sin(x @ w)), argnums=(0, 1))(x, w)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_gru_cell_equals_torch_gru_cell_with_the_same_torch_layout_weights():
    import torch

    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 7)).astype(np.float32)
    h = rng.standard_normal((4, 5)).astype(np.float32)
    cell = GRUCell(5)
    params = cell.init(jax.random.key(0), jnp.asarray(x), jnp.asarray(h))["params"]
    assert params["weight_ih"].shape == (15, 7) and params["weight_hh"].shape == (15, 5)
    ref = torch.nn.GRUCell(7, 5)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, name).copy_(torch.from_numpy(np.array(params[name])))
        expected = ref(torch.from_numpy(x), torch.from_numpy(h)).numpy()
    np.testing.assert_allclose(cell.apply({"params": params}, x, h), expected, rtol=1e-5, atol=1e-6)


def test_gru_cell_without_a_hidden_state_is_exactly_the_zero_hidden_state():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((3, 6)), jnp.float32)
    cell = GRUCell(4)
    params = cell.init(jax.random.key(0), x, jnp.zeros((3, 4)))
    np.testing.assert_array_equal(cell.apply(params, x, None), cell.apply(params, x, jnp.zeros((3, 4))))
