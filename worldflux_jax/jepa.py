"""JEPA and V-JEPA 2 world models: prediction in embedding space, never in observation space.

Shapes: B batch, T time, A action_dim, N tokens per observation (`transformer.token_layout`), E encoder_dim,
Z projection_dim. A state is `{"latent": [B, Z]}`.

JEPA (`family = "jepa"`):
* `encoder`: observation tokens -> linear embedding + token and time position tables -> `num_layers`
  transformer blocks (`num_heads`, `dropout`) -> mean over tokens -> linear projection `[B, Z]`;
* `predictor`: residual MLP (width `predictor_dim`): `z' = z + f([z, a])`;
* `reward_head`: MLP (width `hidden_dim`) `z -> r` (the reward of arriving in z);
* target encoder (`extras`): an EMA of `encoder` (decay `ema_decay` = 0.996, updated in `post_update`).

Loss over t = 0..T-2: `prediction` = MSE(predictor(z_t, a_t), sg(target_encoder(o_{t+1}))),
`reward` = MSE(reward_head(predicted z_{t+1}), r_{t+1}); total = prediction + reward.

V-JEPA 2 (`family = "vjepa2"`) adds the masked objective over a temporal window of W = min(temporal_window, T)
frames (W x N tokens, time positions 0..W-1): a random `mask_ratio` share of each window's tokens is replaced
by a learned mask token for the online encoder; `mask_predictor` (a transformer of width `predictor_dim`,
conditioned on each frame's action) predicts the target encoder's features of the full window at the masked
positions. `mask` = MSE over masked tokens; total = prediction + mask + reward.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from worldflux_jax.family_base import Batch, ExperimentalFamily
from worldflux_jax.nn import MLP
from worldflux_jax.transformer import Stack, to_tokens, token_layout

Params = Any
State = dict[str, jax.Array]

JEPA_LOSS_KEYS = ("prediction", "reward")
VJEPA2_LOSS_KEYS = ("prediction", "mask", "reward")


class Encoder(nn.Module):
    """`tokens [B, L, P]`, `time_ids [L]`, `mask [B, L]` bool or None -> `(pooled [B, out], features [B, L, dim])`."""

    dim: int
    heads: int
    depth: int
    out: int
    num_tokens: int
    window: int = 1
    dropout: float = 0.0
    use_mask: bool = False

    @nn.compact
    def __call__(
        self, tokens: jax.Array, time_ids: jax.Array, mask: jax.Array | None = None, deterministic: bool = True
    ) -> tuple[jax.Array, jax.Array]:
        length = tokens.shape[1]
        x = nn.Dense(self.dim, name="embed")(tokens)
        x = x + nn.Embed(self.num_tokens, self.dim, name="pos_embed")(jnp.arange(length) % self.num_tokens)
        x = x + nn.Embed(self.window, self.dim, name="time_embed")(time_ids)
        if self.use_mask:
            mask_token = nn.Embed(1, self.dim, name="mask_token")(jnp.zeros((1,), jnp.int32))[0]
            if mask is not None:
                x = jnp.where(mask[..., None], mask_token, x)
        feats = Stack(self.dim, self.heads, self.depth, self.dropout, name="blocks")(x, deterministic)
        return nn.Dense(self.out, name="proj")(feats.mean(axis=1)), feats


class Predictor(nn.Module):
    """Residual latent dynamics `z [B, Z], a [B, A] -> z + f([z, a])`."""

    hidden: int
    out: int

    @nn.compact
    def __call__(self, z: jax.Array, action: jax.Array) -> jax.Array:
        return z + MLP((self.hidden, self.hidden), self.out, name="mlp")(jnp.concatenate([z, action], -1))


class MaskPredictor(nn.Module):
    """`features [B, L, E]`, per-token actions `[B, L, A]` -> predicted target features `[B, L, E]`."""

    dim: int
    heads: int
    depth: int
    out: int

    @nn.compact
    def __call__(self, feats: jax.Array, actions: jax.Array) -> jax.Array:
        x = nn.Dense(self.dim, name="embed")(feats) + nn.Dense(self.dim, name="action_embed")(actions)
        return nn.Dense(self.out, name="out")(Stack(self.dim, self.heads, self.depth, name="blocks")(x))


class JEPA(ExperimentalFamily):
    """Pure functions of the JEPA world model for one `JEPABaseConfig`."""

    family = "jepa"
    target_module = "encoder"
    loss_keys = JEPA_LOSS_KEYS
    window = 1

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        c = config
        self.num_tokens, self.token_size = token_layout(tuple(c.obs_shape))
        self.modules = {
            "encoder": Encoder(
                c.encoder_dim,
                c.num_heads,
                c.num_layers,
                c.projection_dim,
                self.num_tokens,
                self.window,
                float(c.dropout),
                use_mask=self.window > 1,
            ),
            "predictor": Predictor(c.predictor_dim, c.projection_dim),
            "reward_head": MLP((c.hidden_dim,), 1),
        }

    def init_inputs(self) -> dict[str, tuple[Any, ...]]:
        c = self.config
        z = jnp.zeros((1, c.projection_dim))
        return {
            "encoder": (jnp.zeros((1, self.num_tokens, self.token_size)), jnp.zeros((self.num_tokens,), jnp.int32)),
            "predictor": (z, jnp.zeros((1, c.action_dim))),
            "reward_head": (z,),
        }

    # -- model functions -----------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> State:
        return {"latent": jnp.zeros((batch_size, self.config.projection_dim), jnp.float32)}

    def _embed(self, enc_params: Params, obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """`obs [B, *obs_shape]` -> pooled embedding `[B, Z]` with `enc_params` (online or target)."""
        tokens = to_tokens(obs, tuple(self.config.obs_shape))
        time_ids = jnp.zeros((self.num_tokens,), jnp.int32)
        train = key is not None and self.config.dropout > 0
        rngs = {"dropout": key} if train else None
        pooled, _ = self.modules["encoder"].apply({"params": enc_params}, tokens, time_ids, None, not train, rngs=rngs)
        return pooled

    def encode(self, params: Params, obs: jax.Array) -> State:
        """`obs [B, *obs_shape]` -> `{"latent": [B, Z]}` (online encoder, no dropout)."""
        return {"latent": self._embed(params["encoder"], obs)}

    def transition(
        self, params: Params, state: State, action: jax.Array, key: jax.Array | None = None, deterministic: bool = True
    ) -> State:
        """`z' = z + predictor([z, a])` (deterministic; `key` is unused)."""
        del key, deterministic
        return {"latent": self._apply("predictor", params, state["latent"], action)}

    def predict_reward(self, params: Params, state: State) -> jax.Array:
        return self._apply("reward_head", params, state["latent"])[..., 0]

    def decode(self, params: Params, state: State) -> dict[str, jax.Array]:
        """`reward [B, 1]` (of arriving in the state) and `continue` (ones) `[B, 1]`."""
        reward = self.predict_reward(params, state)[:, None]
        return {"reward": reward, "continue": jnp.ones_like(reward)}

    # -- loss ----------------------------------------------------------------------------------
    def _latent_terms(
        self, params: Params, target: Params, batch: Batch, key: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        """`(prediction, reward)` MSEs over the T - 1 transitions of `batch`."""
        b, t = batch.obs.shape[:2]
        flat = batch.obs.reshape(b * t, *batch.obs.shape[2:])
        z = self._embed(params["encoder"], flat, key).reshape(b, t, -1)
        z_target = jax.lax.stop_gradient(self._embed(target, flat).reshape(b, t, -1))
        n = b * (t - 1)
        pred = self._apply("predictor", params, z[:, :-1].reshape(n, -1), batch.actions[:, :-1].reshape(n, -1))
        prediction = jnp.mean((pred - z_target[:, 1:].reshape(n, -1)) ** 2)
        reward = jnp.mean((self.predict_reward(params, {"latent": pred}) - batch.rewards[:, 1:].reshape(n)) ** 2)
        return prediction, reward

    def loss(
        self, params: Params, extras: Params, batch: Batch, key: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """`(prediction + reward, {prediction, reward})`; `extras` is the target encoder."""
        if batch.obs.shape[1] < 2:
            zero = jnp.zeros((), jnp.float32)
            return zero, dict.fromkeys(self.loss_keys, zero)
        prediction, reward = self._latent_terms(params, extras, batch, key)
        return prediction + reward, {"prediction": prediction, "reward": reward}


class VJEPA2(JEPA):
    """JEPA plus the masked-token objective over temporal windows, for one `VJEPA2Config`."""

    family = "vjepa2"
    loss_keys = VJEPA2_LOSS_KEYS

    def __init__(self, config: Any) -> None:
        self.window = int(config.temporal_window)
        super().__init__(config)
        c = config
        heads = c.num_heads if c.predictor_dim % c.num_heads == 0 else 1
        depth = max(1, c.num_layers // 2)
        self.modules["mask_predictor"] = MaskPredictor(c.predictor_dim, heads, depth, c.encoder_dim)

    def init_inputs(self) -> dict[str, tuple[Any, ...]]:
        inputs = super().init_inputs()
        c = self.config
        inputs["mask_predictor"] = (jnp.zeros((1, self.num_tokens, c.encoder_dim)), jnp.zeros((1, 1, c.action_dim)))
        return inputs

    def num_masked(self, window: int) -> int:
        """Masked tokens per window of `window` frames: `round(mask_ratio * window * N)`, at least 1 when
        `mask_ratio > 0`."""
        total = window * self.num_tokens
        if self.config.mask_ratio <= 0:
            return 0
        return min(total - 1, max(1, int(round(self.config.mask_ratio * total)))) if total > 1 else 0

    def _mask_term(self, params: Params, target: Params, batch: Batch, key: jax.Array) -> jax.Array:
        b, t = batch.obs.shape[:2]
        w = min(self.window, t)
        k = self.num_masked(w)
        if k == 0:
            return jnp.zeros((), jnp.float32)
        n = self.num_tokens
        frames = batch.obs[:, :w].reshape(b * w, *batch.obs.shape[2:])
        tokens = to_tokens(frames, tuple(self.config.obs_shape)).reshape(b, w * n, -1)
        time_ids = jnp.repeat(jnp.arange(w), n)
        mask_key, drop_key = jax.random.split(key)
        order = jnp.argsort(jax.random.uniform(mask_key, (b, w * n)), axis=1)
        mask = jnp.zeros((b, w * n), bool).at[jnp.arange(b)[:, None], order[:, :k]].set(True)
        enc = self.modules["encoder"]
        train = self.config.dropout > 0
        rngs = {"dropout": drop_key} if train else None
        _, context = enc.apply({"params": params["encoder"]}, tokens, time_ids, mask, not train, rngs=rngs)
        _, full = enc.apply({"params": target}, tokens, time_ids, None, True)
        actions = jnp.repeat(batch.actions[:, :w], n, axis=1)
        pred = self._apply("mask_predictor", params, context, actions)
        err = jnp.mean((pred - jax.lax.stop_gradient(full)) ** 2, axis=-1)
        return jnp.sum(err * mask) / (b * k)

    def loss(
        self, params: Params, extras: Params, batch: Batch, key: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """`(prediction + mask + reward, {prediction, mask, reward})`; `extras` is the target encoder."""
        if batch.obs.shape[1] < 2:
            zero = jnp.zeros((), jnp.float32)
            return zero, dict.fromkeys(self.loss_keys, zero)
        key = jax.random.key(0) if key is None else key
        latent_key, mask_key = jax.random.split(key)
        prediction, reward = self._latent_terms(params, extras, batch, latent_key)
        mask = self._mask_term(params, extras, batch, mask_key)
        return prediction + mask + reward, {"prediction": prediction, "mask": mask, "reward": reward}


__all__ = ["JEPA", "JEPA_LOSS_KEYS", "VJEPA2", "VJEPA2_LOSS_KEYS"]
