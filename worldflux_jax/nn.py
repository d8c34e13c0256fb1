"""Layers shared by the models, named so that Flax parameter paths mirror the reference torch names.

A torch `nn.Sequential` numbers its children (`mlp.0`, `mlp.1`, `mlp.3`, ...); the modules here give
their Flax children the same numbers, so `reward_head.mlp.3.weight` lives at
`params["reward_head"]["mlp"]["3"]["kernel"]` and the torch-layout converter is a mechanical mapping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Torch's defaults: LayerNorm eps 1e-5, and two-pass variance (E[(x - mean)^2]) for accuracy.
LN_EPS = 1e-5
# The reference clamps hidden activations and logits to keep a diverging run finite.
ACT_CLAMP = 1e4
LOGIT_CLAMP = 30.0


def mish(x: jax.Array) -> jax.Array:
    return x * jnp.tanh(jax.nn.softplus(x))


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": jax.nn.silu,
    "mish": mish,
    "tanh": jnp.tanh,
    "none": lambda x: x,
}


def sanitize(x: jax.Array, limit: float = ACT_CLAMP) -> jax.Array:
    """`nan_to_num` then clamp to `[-limit, limit]`, as the reference guards do."""
    return jnp.clip(jnp.nan_to_num(x, nan=0.0, posinf=limit, neginf=-limit), -limit, limit)


@jax.custom_vjp
def _normalize_affine(centered: jax.Array, inv: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """`centered * (inv * scale) + bias`: `centered [*lead, *F]`, `inv [*lead, 1...]`, `scale`/`bias` `[*F]`.

    Autodiff would form the parameter gradients as reductions over the leading (batch) axes, which
    XLA:CPU runs far below memory speed when `F` is a whole feature map (`[H, W, C]`, the reference's
    conv LayerNorms): about 1 s per step for the 64x64 decoder. The custom gradient forms them as
    `ones [R] @ [R, prod(F)]` products instead, and the per-row sum for `inv` likewise as a product.
    """
    return centered * (inv * scale) + bias


def _normalize_affine_fwd(centered: jax.Array, inv: jax.Array, scale: jax.Array, bias: jax.Array) -> Any:
    return _normalize_affine(centered, inv, scale, bias), (centered, inv, scale)


def _normalize_affine_bwd(residuals: Any, g: jax.Array) -> tuple[jax.Array, ...]:
    centered, inv, scale = residuals
    rows = math.prod(g.shape[: g.ndim - scale.ndim])
    ones = jnp.ones((rows,), g.dtype)
    d_scale = (ones @ (g * centered * inv).reshape(rows, -1)).reshape(scale.shape)
    d_bias = (ones @ g.reshape(rows, -1)).reshape(scale.shape)
    d_centered = g * (inv * scale)
    d_inv = ((g * centered * scale).reshape(rows, -1) @ jnp.ones((math.prod(scale.shape),), g.dtype)).reshape(inv.shape)
    return d_centered, d_inv, d_scale.astype(scale.dtype), d_bias.astype(scale.dtype)


_normalize_affine.defvjp(_normalize_affine_fwd, _normalize_affine_bwd)


class LayerNorm(nn.Module):
    """`torch.nn.LayerNorm` over the trailing `axes` axes (3 for a conv feature map `[..., H, W, C]`).

    Parameters `scale` and `bias` have the shape of those axes (torch's elementwise affine). Statistics
    are computed in at least float32 with the two-pass variance `E[(x - mean)^2]` (torch's), as Flax's
    `LayerNorm(use_fast_variance=False)`; the output is in `dtype` (None: the input's). Input and output
    `[..., *x.shape[-axes:]]`.
    """

    axes: int = 1
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-self.axes :]
        scale = self.param("scale", nn.initializers.ones, features)
        bias = self.param("bias", nn.initializers.zeros, features)
        reduce = tuple(range(-self.axes, 0))
        stats_dtype = jnp.promote_types(x.dtype, jnp.float32)
        x32 = x.astype(stats_dtype)
        mean = jnp.mean(x32, axis=reduce, keepdims=True)
        centered = x32 - mean
        var = jnp.mean(jnp.square(centered), axis=reduce, keepdims=True)
        inv = jax.lax.rsqrt(var + LN_EPS)
        y = _normalize_affine(centered, inv, scale.astype(stats_dtype), bias.astype(stats_dtype))
        return y.astype(self.dtype or jnp.result_type(x, scale, bias))


def layer_norm(name: str, axes: int = 1) -> LayerNorm:
    """The `LayerNorm` over the trailing `axes` axes, named `name` (its torch child number)."""
    return LayerNorm(axes=axes, name=name)


class MLP(nn.Module):
    """`[Linear -> LayerNorm -> act] * len(hidden) -> Linear [-> out_act]`, torch-numbered children.

    Input `[..., in]`, output `[..., out]`.
    """

    hidden: Sequence[int]
    out: int
    act: str = "silu"
    out_act: str = "none"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.act]
        index = 0
        for width in self.hidden:
            x = nn.Dense(width, dtype=self.dtype, name=str(index))(x)
            x = act(layer_norm(str(index + 1))(x))
            index += 3
        x = nn.Dense(self.out, dtype=self.dtype, name=str(index))(x)
        return ACTIVATIONS[self.out_act](x)


class GRUCell(nn.Module):
    """`torch.nn.GRUCell` (gate order r, z, n): inputs `[B, in]`, hidden `[B, H]` -> `[B, H]`.

    Parameters in torch's own layout: `weight_ih [3H, in]`, `weight_hh [3H, H]`, `bias_ih [3H]`,
    `bias_hh [3H]`. The projections contract both operands over their last axis (`dot_nt`), the form in
    which XLA:CPU streams a weight fastest for the few-row products of a recurrent step (about 1.7x the
    `x @ w.T` of an `[in, 3H]` kernel at batch 16), with no transpose per call.
    """

    features: int
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, h: jax.Array | None) -> jax.Array:
        """`h=None` is a zero hidden state: its projection is exactly `bias_hh`, so the `[B, H] x [H, 3H]`
        product (the cell's largest) is skipped."""
        in_dim = x.shape[-1]
        size = 3 * self.features
        bound = 1.0 / jnp.sqrt(self.features)
        init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)
        w_ih = self.param("weight_ih", init, (size, in_dim))
        w_hh = self.param("weight_hh", init, (size, self.features))
        b_ih = self.param("bias_ih", init, (size,))
        b_hh = self.param("bias_hh", init, (size,))
        dtype = self.dtype or x.dtype
        gi = dot_nt(x.astype(dtype), w_ih.astype(dtype)) + b_ih.astype(dtype)
        if h is None:
            h = jnp.zeros((*x.shape[:-1], self.features), x.dtype)
            gh = jnp.broadcast_to(b_hh.astype(dtype), gi.shape)
        else:
            gh = dot_nt(h.astype(dtype), w_hh.astype(dtype)) + b_hh.astype(dtype)
        return gru_gates(gi, gh, h)


def dot_nt(x: jax.Array, w_t: jax.Array) -> jax.Array:
    """`x @ w_t.T` for `x [..., K]` and a torch-layout weight `w_t [N, K]` -> `[..., N]`."""
    return jax.lax.dot_general(x, w_t, (((x.ndim - 1,), (1,)), ((), ())))


@jax.custom_vjp
def linear_nt(x: jax.Array, w: jax.Array, w_t: jax.Array) -> jax.Array:
    """`x @ w` for a small batch, `x [B, K]`, `w [K, N]`, computed from `w_t = w.T` `[N, K]`.

    Inside time loops the recurrent matmul has only B rows and streams the whole weight from memory
    each step. XLA:CPU's kernels do that about 1.5x faster when both operands are contracted over their
    last (contiguous) axis, so the forward reads `w_t` (transposed once, outside the loop) and the input
    gradient `g @ w.T` reads `w`, both in that form. The weight gradient goes to `w` (`x.T @ g`); `w_t`
    must equal `w.T` and receives none.
    """
    return dot_nt(x, w_t)


def _linear_nt_fwd(x: jax.Array, w: jax.Array, w_t: jax.Array) -> tuple[jax.Array, Any]:
    return dot_nt(x, w_t), (x, w)


def _linear_nt_bwd(residuals: Any, g: jax.Array) -> tuple[jax.Array, jax.Array, None]:
    x, w = residuals
    return dot_nt(g, w), x.T @ g, None


linear_nt.defvjp(_linear_nt_fwd, _linear_nt_bwd)


def gru_gates(gi: jax.Array, gh: jax.Array, h: jax.Array) -> jax.Array:
    """GRU update from the input and hidden projections `[B, 3H]` (r, z, n order, torch semantics)."""
    i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(i_r + h_r)
    z = jax.nn.sigmoid(i_z + h_z)
    n = jnp.tanh(i_n + r * h_n)
    return ((1.0 - z) * n + z * h.astype(n.dtype)).astype(h.dtype)


# -- 4x4 stride-2 convolutions as matmuls ----------------------------------------------------------
# XLA:CPU runs strided and (especially) transposed convolutions far below matmul speed. A 4x4 kernel
# with stride 2 and padding 1 covers exactly 2x2 cells of the space-to-depth (block 2) view of the
# padded input, so the convolution is four shifted slices and one `[N*Ho*Wo, 16C] @ [16C, O]` matmul.
# The transposed convolution is its exact adjoint (matmul, then the four slices added back), so both
# directions and all their gradients are dense matmuls plus cheap data movement.


def _conv_kernel_matrix(kernel: jax.Array) -> jax.Array:
    """`[4, 4, C, O]` (ky = 2*ay + dy, kx = 2*ax + dx) -> `[16C, O]` ordered (ay, ax, dy, dx, c)."""
    c, o = kernel.shape[2:]
    k = kernel.reshape(2, 2, 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
    return k.reshape(16 * c, o)


def conv4x4s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Conv2d(k=4, s=2, p=1) channels-last: `[N, H, W, C]`, kernel `[4, 4, C, O]` -> `[N, H/2, W/2, O]`."""
    n, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cells = xp.reshape(n, h // 2 + 1, 2, w // 2 + 1, 2, c).transpose(0, 1, 3, 2, 4, 5)
    cells = cells.reshape(n, h // 2 + 1, w // 2 + 1, 4 * c)
    ho, wo = h // 2, w // 2
    patches = jnp.concatenate([cells[:, ay : ay + ho, ax : ax + wo] for ay in (0, 1) for ax in (0, 1)], axis=-1)
    return patches @ _conv_kernel_matrix(kernel).astype(x.dtype)


def conv_transpose4x4s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """ConvTranspose2d(k=4, s=2, p=1) channels-last: `[N, h, w, C]` -> `[N, 2h, 2w, O]`.

    `kernel [4, 4, C, O]` is in Flax's `ConvTranspose` convention (spatially flipped relative to the
    torch weight); it is the adjoint of `conv4x4s2` with kernel `flip(kernel)` viewed as `[4, 4, O, C]`.
    """
    n, h, w, _ = x.shape
    o = kernel.shape[3]
    conv_view = kernel[::-1, ::-1].transpose(0, 1, 3, 2)  # [4, 4, O, C] of the forward convolution
    z = x @ _conv_kernel_matrix(conv_view).T.astype(x.dtype)  # [N, h, w, 16 * O]
    parts = jnp.split(z, 4, axis=-1)
    cells = jnp.zeros((n, h + 1, w + 1, 4 * o), z.dtype)
    for part, (ay, ax) in zip(parts, [(0, 0), (0, 1), (1, 0), (1, 1)], strict=True):
        cells = cells.at[:, ay : ay + h, ax : ax + w].add(part)
    full = cells.reshape(n, h + 1, w + 1, 2, 2, o).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h + 2, 2 * w + 2, o)
    return full[:, 1:-1, 1:-1]


class Conv4x4S2(nn.Module):
    """Conv2d(k=4, s=2, p=1) with params `kernel [4, 4, C, O]`, `bias [O]` (Flax `nn.Conv` layout)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (4, 4, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return conv4x4s2(x, kernel) + bias.astype(x.dtype)


class ConvTranspose4x4S2(nn.Module):
    """ConvTranspose2d(k=4, s=2, p=1) with params `kernel [4, 4, C, O]`, `bias [O]` (Flax layout)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (4, 4, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return conv_transpose4x4s2(x, kernel) + bias.astype(x.dtype)
