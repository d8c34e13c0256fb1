"""Token world model: observations as discrete tokens, dynamics as a causal transformer over them.

Shapes: B batch, T time, A action_dim, N tokens per observation, V vocab_size, d token_dim.

Tokenizer (fixed, no parameters): an observation is reduced to N values (every element when it has at
most 64; a 4 x 4 grid of means per channel for `[C, H, W]` images; else means of equal chunks), each
squashed by symlog and quantized uniformly over [-5, 5] into V bins. `detokenize` inverts it (bin centres,
symexp, the grid / chunk means broadcast back), so `decode` gives an observation.

Dynamics (`transformer`): the causal sequence `[tokens(o_t) (N), action (1), tokens(o_{t+1})[:N-1]]` with
learned token, action and position embeddings, `num_layers` causal blocks (`num_heads`, `dropout`) and a
linear head to V logits; the outputs at positions N-1+1 .. 2N-1 predict the N tokens of o_{t+1}
(next-token prediction). `transition` samples them one at a time (argmax when deterministic).
`reward_head`: MLP (width `hidden_dim`) on the N dequantized values of a state.

Loss over t = 0..T-2: `token` = next-token cross-entropy of o_{t+1} given o_t and a_t, `reward` = MSE of
the reward of o_{t+1}; total = token + reward. A state is `{"tokens": [B, N]}` (integer ids as float32).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from worldflux_jax.family_base import Batch, ExperimentalFamily
from worldflux_jax.nn import MLP
from worldflux_jax.transformer import GRID, Stack

Params = Any
State = dict[str, jax.Array]

LOSS_KEYS = ("token", "reward")
MAX_ELEMENT_TOKENS = 64
SYMLOG_RANGE = 5.0


def _symlog(x: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def _symexp(x: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


class Tokenizer:
    """The fixed observation <-> tokens mapping for one `obs_shape` and `vocab_size`."""

    def __init__(self, obs_shape: tuple[int, ...], vocab_size: int) -> None:
        self.obs_shape = tuple(obs_shape)
        self.vocab = int(vocab_size)
        size = math.prod(self.obs_shape)
        if size <= MAX_ELEMENT_TOKENS:
            self.mode, self.num_tokens, self.chunk = "elements", size, 1
        elif len(self.obs_shape) == 3 and self.obs_shape[1] % GRID == 0 and self.obs_shape[2] % GRID == 0:
            self.mode, self.num_tokens, self.chunk = "grid", self.obs_shape[0] * GRID * GRID, 1
        else:
            self.chunk = -(-size // MAX_ELEMENT_TOKENS)
            self.mode, self.num_tokens = "chunks", -(-size // self.chunk)

    def values(self, obs: jax.Array) -> jax.Array:
        """`obs [B, *obs_shape]` -> `[B, N]` float32 values."""
        b = obs.shape[0]
        x = obs.astype(jnp.float32)
        if self.mode == "grid":
            c, h, w = self.obs_shape
            return x.reshape(b, c, GRID, h // GRID, GRID, w // GRID).mean(axis=(3, 5)).reshape(b, -1)
        flat = x.reshape(b, -1)
        if self.mode == "elements":
            return flat
        pad = self.num_tokens * self.chunk - flat.shape[1]
        total = jnp.pad(flat, ((0, 0), (0, pad))).reshape(b, self.num_tokens, self.chunk).sum(-1)
        counts = jnp.full((self.num_tokens,), float(self.chunk)).at[-1].add(-pad)
        return total / counts

    def quantize(self, values: jax.Array) -> jax.Array:
        """`[B, N]` values -> int32 token ids in [0, V)."""
        s = jnp.clip(_symlog(values), -SYMLOG_RANGE, SYMLOG_RANGE)
        return jnp.round((s + SYMLOG_RANGE) / (2 * SYMLOG_RANGE) * (self.vocab - 1)).astype(jnp.int32)

    def dequantize(self, tokens: jax.Array) -> jax.Array:
        """Token ids `[B, N]` -> values `[B, N]` (bin centres, symexp)."""
        s = tokens.astype(jnp.float32) / (self.vocab - 1) * (2 * SYMLOG_RANGE) - SYMLOG_RANGE
        return _symexp(s)

    def tokenize(self, obs: jax.Array) -> jax.Array:
        return self.quantize(self.values(obs))

    def detokenize(self, tokens: jax.Array) -> jax.Array:
        """Token ids `[B, N]` -> observations `[B, *obs_shape]`."""
        v = self.dequantize(tokens)
        b = v.shape[0]
        if self.mode == "grid":
            c, h, w = self.obs_shape
            cells = v.reshape(b, c, GRID, 1, GRID, 1)
            return jnp.broadcast_to(cells, (b, c, GRID, h // GRID, GRID, w // GRID)).reshape(b, *self.obs_shape)
        if self.mode == "chunks":
            v = jnp.repeat(v, self.chunk, axis=1)[:, : math.prod(self.obs_shape)]
        return v.reshape(b, *self.obs_shape)


class TokenTransformer(nn.Module):
    """`prev [B, N]` ids, `action [B, A]`, `next_in [B, N-1]` ids -> logits `[B, N, V]` of the next tokens."""

    vocab: int
    dim: int
    heads: int
    depth: int
    num_tokens: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, prev: jax.Array, action: jax.Array, next_in: jax.Array, deterministic: bool = True) -> jax.Array:
        n = self.num_tokens
        embed = nn.Embed(self.vocab, self.dim, name="token_embed")
        act = nn.Dense(self.dim, name="action_embed")(action)[:, None]
        x = jnp.concatenate([embed(prev), act, embed(next_in)], axis=1)
        x = x + nn.Embed(2 * n, self.dim, name="pos_embed")(jnp.arange(2 * n))
        h = Stack(self.dim, self.heads, self.depth, self.dropout, causal=True, name="blocks")(x, deterministic)
        return nn.Dense(self.vocab, name="head")(h[:, n:])


class TokenModel(ExperimentalFamily):
    """Pure functions of the token world model for one `TokenWorldModelConfig`."""

    family = "token"
    loss_keys = LOSS_KEYS

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        c = config
        self.tokenizer = Tokenizer(tuple(c.obs_shape), c.vocab_size)
        self.num_tokens = self.tokenizer.num_tokens
        self.modules = {
            "transformer": TokenTransformer(
                c.vocab_size, c.token_dim, c.num_heads, c.num_layers, self.num_tokens, float(c.dropout)
            ),
            "reward_head": MLP((c.hidden_dim,), 1),
        }

    def init_inputs(self) -> dict[str, tuple[Any, ...]]:
        n = self.num_tokens
        ids = jnp.zeros((1, n), jnp.int32)
        return {
            "transformer": (ids, jnp.zeros((1, self.config.action_dim)), ids[:, : n - 1]),
            "reward_head": (jnp.zeros((1, n)),),
        }

    # -- model functions -----------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> State:
        """The tokens of an all-zero observation."""
        zeros = jnp.zeros((batch_size, *self.config.obs_shape), jnp.float32)
        return {"tokens": self.tokenizer.tokenize(zeros).astype(jnp.float32)}

    def encode(self, params: Params, obs: jax.Array) -> State:
        """`obs [B, *obs_shape]` -> `{"tokens": [B, N]}`."""
        del params
        return {"tokens": self.tokenizer.tokenize(obs).astype(jnp.float32)}

    def _ids(self, state: State) -> jax.Array:
        return jnp.clip(jnp.round(state["tokens"]), 0, self.config.vocab_size - 1).astype(jnp.int32)

    def transition(
        self, params: Params, state: State, action: jax.Array, key: jax.Array | None = None, deterministic: bool = False
    ) -> State:
        """Sample the N tokens of the next observation one at a time (argmax when `deterministic` or no key)."""
        prev = self._ids(state)
        b, n = prev.shape
        greedy = deterministic or key is None
        keys = jax.random.split(jax.random.key(0) if key is None else key, n)

        def body(j: int, nxt: jax.Array) -> jax.Array:
            logits = self._apply("transformer", params, prev, action, nxt[:, : n - 1])[:, j]
            pick = jnp.argmax(logits, -1) if greedy else jax.random.categorical(keys[j], logits)
            return nxt.at[:, j].set(pick.astype(jnp.int32))

        nxt = jax.lax.fori_loop(0, n, body, jnp.zeros((b, n), jnp.int32))
        return {"tokens": nxt.astype(jnp.float32)}

    def predict_reward(self, params: Params, state: State) -> jax.Array:
        return self._apply("reward_head", params, self.tokenizer.dequantize(self._ids(state)))[..., 0]

    def decode(self, params: Params, state: State) -> dict[str, jax.Array]:
        """`obs [B, *obs_shape]` (detokenized), `reward [B, 1]`, `continue` (ones) `[B, 1]`."""
        reward = self.predict_reward(params, state)[:, None]
        return {"obs": self.tokenizer.detokenize(self._ids(state)), "reward": reward, "continue": jnp.ones_like(reward)}

    # -- loss ----------------------------------------------------------------------------------
    def loss(
        self, params: Params, extras: Params, batch: Batch, key: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """`(token + reward, {token, reward})`; `extras` is unused (None)."""
        del extras
        b, t = batch.obs.shape[:2]
        if t < 2:
            zero = jnp.zeros((), jnp.float32)
            return zero, dict.fromkeys(LOSS_KEYS, zero)
        tokens = self.tokenizer.tokenize(batch.obs.reshape(b * t, *batch.obs.shape[2:])).reshape(b, t, -1)
        m = b * (t - 1)
        prev = tokens[:, :-1].reshape(m, -1)
        nxt = tokens[:, 1:].reshape(m, -1)
        actions = batch.actions[:, :-1].reshape(m, -1)
        train = key is not None and self.config.dropout > 0
        rngs = {"dropout": key} if train else None
        logits = self.modules["transformer"].apply(
            {"params": params["transformer"]}, prev, actions, nxt[:, :-1], not train, rngs=rngs
        )
        logp = jax.nn.log_softmax(logits, axis=-1)
        token = -jnp.mean(jnp.take_along_axis(logp, nxt[..., None], axis=-1))
        pred_r = self.predict_reward(params, {"tokens": nxt.astype(jnp.float32)})
        reward = jnp.mean((pred_r - batch.rewards[:, 1:].reshape(m)) ** 2)
        return token + reward, {"token": token, "reward": reward}
