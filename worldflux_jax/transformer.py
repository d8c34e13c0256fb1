"""Small transformer pieces shared by the experimental families (JEPA, V-JEPA 2, token model).

* `token_layout(obs_shape) -> (N, P)` and `to_tokens(obs, obs_shape) -> [B, N, P]`: an observation as N
  tokens of P values (a 4 x 4 grid of patches for `[C, H, W]` images, else chunks of the flattened vector).
* `Block`: a pre-LayerNorm transformer block (multi-head self-attention + GELU MLP), optional causal mask
  and dropout; `Stack`: `depth` blocks and a final LayerNorm.

Parameter names follow torch conventions (`blocks_0.attn.qkv.weight`, `norm.weight`) so the families'
`torch_state_dict` is the mechanical `worldflux_jax.torch_layout` mapping.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

MAX_VECTOR_TOKENS = 16
GRID = 4


def token_layout(obs_shape: tuple[int, ...]) -> tuple[int, int]:
    """`(N tokens, P values per token)` of one observation of `obs_shape`."""
    if len(obs_shape) == 3 and obs_shape[1] % GRID == 0 and obs_shape[2] % GRID == 0:
        c, h, w = obs_shape
        return GRID * GRID, c * (h // GRID) * (w // GRID)
    size = math.prod(obs_shape)
    n = min(size, MAX_VECTOR_TOKENS)
    return n, -(-size // n)


def to_tokens(obs: jax.Array, obs_shape: tuple[int, ...]) -> jax.Array:
    """`obs [B, *obs_shape]` -> tokens `[B, N, P]` float32 (zero padding closes the last vector chunk)."""
    b = obs.shape[0]
    n, p = token_layout(obs_shape)
    x = obs.astype(jnp.float32)
    if len(obs_shape) == 3 and n == GRID * GRID and obs_shape[1] % GRID == 0 and obs_shape[2] % GRID == 0:
        c, h, w = obs_shape
        x = x.reshape(b, c, GRID, h // GRID, GRID, w // GRID).transpose(0, 2, 4, 1, 3, 5)
        return x.reshape(b, n, p)
    flat = x.reshape(b, -1)
    flat = jnp.pad(flat, ((0, 0), (0, n * p - flat.shape[1])))
    return flat.reshape(b, n, p)


class Attention(nn.Module):
    """Multi-head self-attention `[B, L, D] -> [B, L, D]` (`qkv` and `proj` linear layers)."""

    dim: int
    heads: int
    causal: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, length, _ = x.shape
        hd = self.dim // self.heads
        qkv = nn.Dense(3 * self.dim, name="qkv")(x).reshape(b, length, 3, self.heads, hd)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(hd)
        if self.causal:
            mask = jnp.tril(jnp.ones((length, length), bool))
            logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhlm,bmhd->blhd", weights, v).reshape(b, length, self.dim)
        return nn.Dense(self.dim, name="proj")(out)


class Block(nn.Module):
    """Pre-LN block: `x + drop(attn(ln1(x)))`, then `x + drop(mlp(ln2(x)))` (GELU, hidden 4 * dim)."""

    dim: int
    heads: int
    dropout: float = 0.0
    causal: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        drop = nn.Dropout(self.dropout, deterministic=deterministic or self.dropout == 0.0)
        x = x + drop(Attention(self.dim, self.heads, self.causal, name="attn")(nn.LayerNorm(1e-5, name="ln1")(x)))
        h = nn.Dense(4 * self.dim, name="fc1")(nn.LayerNorm(1e-5, name="ln2")(x))
        return x + drop(nn.Dense(self.dim, name="fc2")(jax.nn.gelu(h)))


class Stack(nn.Module):
    """`depth` blocks (`blocks_{i}`) and a final LayerNorm (`norm`): `[B, L, D] -> [B, L, D]`."""

    dim: int
    heads: int
    depth: int
    dropout: float = 0.0
    causal: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        for i in range(self.depth):
            x = Block(self.dim, self.heads, self.dropout, self.causal, name=f"blocks_{i}")(x, deterministic)
        return nn.LayerNorm(1e-5, name="norm")(x)
