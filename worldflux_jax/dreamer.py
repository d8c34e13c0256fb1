"""The DreamerV3 world model: parameters, pure model functions and the loss (reference §4.3, §5.1).

`DreamerV3(config)` is stateless: it builds the Flax module tree and exposes pure functions of
`(params, ...)`. All of them are jit-friendly; loops over time are `lax.scan`s.

Shapes: B batch, T time, A action_dim, D x K = stoch_discrete x stoch_classes, F = deter_dim + D*K.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from worldflux_jax import actor_critic as ac
from worldflux_jax import rssm as rssm_lib
from worldflux_jax.config import DreamerV3Config
from worldflux_jax.distributions import (
    SAMPLINGS,
    categorical_kl,
    reward_bins,
    symexp,
    symlog,
    twohot_cross_entropy,
    twohot_expected_value,
)
from worldflux_jax.family import float_obs, one_hot_actions
from worldflux_jax.networks import CNNDecoder, CNNEncoder, Head, MLPDecoder, MLPEncoder
from worldflux_jax.rssm import RSSM, RSSMState
from worldflux_jax.torch_layout import params_from_torch, params_to_torch

Params = Any

# Non-trainable tensors of the reference state dict; rebuilt from the config, never loaded.
_BUFFERS = ("reward_head.bins", "_device_tracker")

LOSS_KEYS = ("kl_dynamics", "kl_representation", "kl", "reconstruction", "reward", "continue")


class DreamerV3Net(nn.Module):
    """The module tree; child names are the reference's (`encoder`, `rssm`, `decoder`, heads)."""

    config: DreamerV3Config

    def setup(self) -> None:
        cfg = self.config
        stages = len(cfg.cnn_kernels)
        if cfg.encoder_type == "cnn":
            self.encoder = CNNEncoder(cfg.cnn_depth, stages)
        else:
            self.encoder = MLPEncoder(cfg.hidden_dim, cfg.deter_dim)
        self.rssm = RSSM(cfg.deter_dim, cfg.stoch_discrete, cfg.stoch_classes, cfg.hidden_dim)
        if cfg.decoder_type == "cnn":
            self.decoder = CNNDecoder(tuple(cfg.obs_shape), cfg.cnn_depth, stages)
        else:
            self.decoder = MLPDecoder(tuple(cfg.obs_shape), cfg.hidden_dim)
        self.reward_head = Head(cfg.hidden_dim, cfg.reward_num_bins if cfg.use_twohot else 1)
        self.continue_head = Head(cfg.hidden_dim, 1)

    def embed(self, obs: jax.Array) -> jax.Array:
        return self.encoder(obs)

    def decode_obs(self, features: jax.Array) -> jax.Array:
        return self.decoder(features)

    def reward_logits(self, features: jax.Array) -> jax.Array:
        return self.reward_head(features)

    def continue_logit(self, features: jax.Array) -> jax.Array:
        return self.continue_head(features)[..., 0]

    def __call__(self, obs: jax.Array, action: jax.Array) -> Any:
        cfg = self.config
        b = obs.shape[0]
        embed = self.embed(obs)
        stoch = jnp.zeros((b, cfg.stoch_discrete, cfg.stoch_classes))
        self.rssm(stoch, action, jnp.zeros((b, cfg.deter_dim)), embed)
        features = jnp.zeros((b, cfg.feature_dim))
        return self.decode_obs(features), self.reward_logits(features), self.continue_logit(features)


class Batch(NamedTuple):
    """A training batch. `obs [B, T, *obs_shape]`, `actions [B, T, A]`, `rewards [B, T]`,
    `terminations [B, T]` (1.0 where the episode terminated at that step)."""

    obs: jax.Array
    actions: jax.Array
    rewards: jax.Array
    terminations: jax.Array


def _is_shape(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


def _host(value: Any) -> Any:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value


def features_of(state: RSSMState) -> jax.Array:
    """`concat(deter, flatten(stoch))`: `[..., F]`."""
    stoch = state["stoch"]
    return jnp.concatenate([state["deter"], stoch.reshape(*stoch.shape[:-2], -1)], axis=-1)


def planning_state(state: RSSMState) -> RSSMState:
    """The part of a state that a planner carries: `{"deter", "stoch"}`."""
    return {"deter": state["deter"], "stoch": state["stoch"]}


def _check_sampling(sampling: str) -> None:
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {list(SAMPLINGS)}, got {sampling!r}")


class DreamerV3:
    """Pure functions of the DreamerV3 world model for one `DreamerV3Config`."""

    family = "dreamer"

    def __init__(self, config: DreamerV3Config, scan_unroll: int | bool = 1) -> None:
        """`scan_unroll` is passed to the time scans (`True` unrolls fully, e.g. to count FLOPs)."""
        self.config = config
        self.scan_unroll = scan_unroll
        self.net = DreamerV3Net(config)
        self._rssm_apply = rssm_lib.make_apply(
            RSSM(config.deter_dim, config.stoch_discrete, config.stoch_classes, config.hidden_dim)
        )
        self.bins = reward_bins(config.reward_num_bins, config.reward_bin_min, config.reward_bin_max)

    # -- parameters ----------------------------------------------------------------------------
    def init(self, key: jax.Array) -> Params:
        """Fresh parameters (a pytree of float32 arrays)."""
        cfg = self.config
        obs = jnp.zeros((1, *cfg.obs_shape), jnp.float32)
        action = jnp.zeros((1, cfg.action_dim), jnp.float32)
        # Jitted: one compile is far quicker than running the initialiser op by op.
        params = jax.jit(self.net.init)(key, obs, action)["params"]
        if cfg.actor_critic:
            params = {**params, **jax.jit(lambda k: ac.init_heads(cfg, k))(jax.random.fold_in(key, 1))}
        return params

    def param_shapes(self) -> Params:
        """The parameter tree as `ShapeDtypeStruct`s (no computation)."""
        return jax.eval_shape(self.init, jax.random.key(0))

    def to_torch_state_dict(self, params: Params, extras: Any = None) -> dict[str, np.ndarray]:
        """The reference `state_dict()` (torch names and layouts, numpy arrays), buffers included. With
        `actor_critic`: also `actor.*`, `critic.*`, `slow_critic.*` and `_return_low` / `_return_high` from
        `extras` (default: fresh ones, a copy of the critic and 0 / 1)."""
        state = params_to_torch(params)
        state["reward_head.bins"] = np.asarray(self.bins)
        state["_device_tracker"] = np.zeros((0,), np.float32)
        if self.config.actor_critic:
            extras = ac.ac_extras(params) if extras is None else extras
            state.update(params_to_torch({ac.SLOW_CRITIC: extras[ac.SLOW_CRITIC]}))
            state["_return_low"] = np.asarray(extras["return_low"], np.float32).reshape(())
            state["_return_high"] = np.asarray(extras["return_high"], np.float32).reshape(())
        return state

    def from_torch_state_dict(self, state_dict: Mapping[str, Any]) -> Params:
        """Parameters from a reference `state_dict` (numpy arrays or CPU torch tensors)."""
        ignore = _BUFFERS
        if self.config.actor_critic:
            slow = {k for k in state_dict if k.startswith(ac.SLOW_CRITIC + ".")}
            ignore = (*_BUFFERS, *ac.RETURN_BUFFERS, *slow)
        params = params_from_torch(self.param_shapes(), state_dict, ignore=ignore)
        return jax.tree.map(jnp.asarray, params)

    def extras_from_torch_state_dict(self, state_dict: Mapping[str, Any], params: Params) -> Any:
        """The actor-critic extras (slow critic, normaliser) from a state dict; fresh ones for what it lacks.
        None without `actor_critic`."""
        if not self.config.actor_critic:
            return None
        extras = ac.ac_extras(params)
        prefix = ac.SLOW_CRITIC + "."
        if any(k.startswith(prefix) for k in state_dict):
            slow = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
            template = {ac.SLOW_CRITIC: jax.tree.map(jnp.shape, params[ac.CRITIC])}
            template = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32), template, is_leaf=_is_shape)
            extras[ac.SLOW_CRITIC] = jax.tree.map(jnp.asarray, params_from_torch(template, slow)[ac.SLOW_CRITIC])
        for name, key in zip(ac.RETURN_BUFFERS, ("return_low", "return_high"), strict=True):
            if name in state_dict:
                extras[key] = jnp.asarray(np.asarray(_host(state_dict[name]), np.float32).reshape(()))
        return extras

    def _call(self, params: Params, method: Any, *args: Any) -> Any:
        return self.net.apply({"params": params}, *args, method=method)

    # -- model functions -----------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> RSSMState:
        cfg = self.config
        return rssm_lib.initial_state(batch_size, cfg.deter_dim, cfg.stoch_discrete, cfg.stoch_classes)

    def embed(self, params: Params, obs: jax.Array) -> jax.Array:
        """Observation embedding: `[B, *obs_shape] -> [B, E]`."""
        return self._call(params, DreamerV3Net.embed, obs)

    def update(
        self,
        params: Params,
        state: RSSMState,
        action: jax.Array,
        obs: jax.Array,
        key: jax.Array | None = None,
        sampling: str = "sample",
    ) -> RSSMState:
        """Posterior step: state `[B, ...]`, action `[B, A]`, obs `[B, *obs_shape]` -> posterior state. A state
        without `deter` starts from `deter = 0` (see `rssm.posterior_step`)."""
        _check_sampling(sampling)
        embed = self.embed(params, obs)
        return rssm_lib.posterior_step(self._rssm_apply, params["rssm"], state, action, embed, sampling, key)

    def encode(
        self, params: Params, obs: jax.Array, key: jax.Array | None = None, sampling: str = "sample"
    ) -> RSSMState:
        """Posterior step from the initial state with a zero action: `[B, *obs_shape]` -> state."""
        b = obs.shape[0]
        action = jnp.zeros((b, self.config.action_dim), jnp.float32)
        # The initial `deter` is zero: leaving it out skips its recurrent product (exactly `bias_hh`).
        start = {"stoch": self.initial_state(b)["stoch"]}
        return self.update(params, start, action, obs, key, sampling)

    def transition(
        self,
        params: Params,
        state: RSSMState,
        action: jax.Array,
        key: jax.Array | None = None,
        sampling: str = "sample",
    ) -> RSSMState:
        """Prior step: state `[B, ...]`, action `[B, A]` -> prior state."""
        _check_sampling(sampling)
        return rssm_lib.prior_step(self._rssm_apply, params["rssm"], state, action, sampling, key)

    def decode(self, params: Params, state: RSSMState) -> dict[str, jax.Array]:
        """Predictions of a state `[B, ...]`: `obs [B, *obs_shape]` (symlog space for the MLP decoder),
        `reward [B, 1]` (symexp of the two-hot expected value), `continue [B, 1]` (a logit)."""
        features = features_of(state)
        return {
            "obs": self._call(params, DreamerV3Net.decode_obs, features),
            "reward": self.reward(params, features)[:, None],
            "continue": self._call(params, DreamerV3Net.continue_logit, features)[:, None],
        }

    def reward(self, params: Params, features: jax.Array) -> jax.Array:
        """Predicted reward `[...]` in environment units from features `[..., F]`."""
        logits = self._call(params, DreamerV3Net.reward_logits, features)
        if self.config.use_twohot:
            return symexp(twohot_expected_value(logits, self.bins))
        value = logits[..., 0]
        return symexp(value) if self.config.use_symlog else value

    def rollout(
        self,
        params: Params,
        state: RSSMState,
        actions: jax.Array,
        key: jax.Array | None = None,
        sampling: str = "sample",
    ) -> tuple[RSSMState, jax.Array, jax.Array]:
        """Open-loop imagination from `state` with `actions [T, B, A]`.

        Returns the stacked prior states `[T, B, ...]` (the states after each action; the start state
        is not repeated), rewards `[T, B]` and continue logits `[T, B]`.
        """
        _check_sampling(sampling)
        states = rssm_lib.imagine(self._rssm_apply, params["rssm"], state, actions, sampling, key, self.scan_unroll)
        features = features_of(states)
        t, b = features.shape[:2]
        flat = features.reshape(t * b, -1)
        rewards = self.reward(params, flat).reshape(t, b)
        continues = self._call(params, DreamerV3Net.continue_logit, flat).reshape(t, b)
        return states, rewards, continues

    def planning_model(self) -> Any:
        """`PlanningModel` for `worldflux_jax.planners`: a deterministic (argmax) prior step, and the
        reward predicted from the new state (the reference's `plan_step` + `decode`). Planner states are
        `{"deter", "stoch"}` (use `planning_state` to drop the logits of a model state)."""
        from worldflux_jax.planners.base import PlanningModel

        def step(params: Params, state: RSSMState, action: jax.Array) -> tuple[RSSMState, jax.Array]:
            new = rssm_lib.prior_step(self._rssm_apply, params["rssm"], state, action, "argmax", None)
            new = planning_state(new)
            return new, self.reward(params, features_of(new))

        return PlanningModel(step=step)

    def observe(
        self,
        params: Params,
        obs: jax.Array,
        actions: jax.Array,
        key: jax.Array | None = None,
        sampling: str = "sample",
    ) -> RSSMState:
        """Filter a batch of sequences from the initial state (the loss's first stage).

        `obs [B, T, *obs_shape]`, `actions [B, T, A]` (the action taken at t; step t is driven by
        `actions[:, t - 1]` and step 0 by zeros) -> posterior states time-major `[T, B, ...]`.
        """
        _check_sampling(sampling)
        b, t = obs.shape[:2]
        embeds = self.embed(params, obs.reshape(b * t, *obs.shape[2:])).reshape(b, t, -1)
        prev = jnp.concatenate([jnp.zeros_like(actions[:, :1]), actions[:, :-1]], axis=1)
        return rssm_lib.observe(
            self._rssm_apply,
            params["rssm"],
            self.initial_state(b),
            jnp.swapaxes(prev, 0, 1),
            jnp.swapaxes(embeds, 0, 1),
            sampling,
            key,
            self.scan_unroll,
        )

    def loss(
        self,
        params: Params,
        batch: Batch,
        key: jax.Array | None = None,
        sampling: str = "sample",
        extras: Any = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The reference world-model loss. Returns `(total, components)` with the keys of `LOSS_KEYS`.

        KL terms use free nats on the per-sample KL summed over categoricals, with stop-gradients on
        the posterior (dynamics term) and on the prior (representation term). Reconstruction is an MSE
        against `symlog(obs)` for the MLP decoder and raw `obs` for the CNN decoder; reward (two-hot
        cross-entropy in symlog space) and continue (BCE with logits) skip t = 0, as the reference.

        With `actor_critic`, the actor-critic terms (`worldflux_jax.actor_critic.loss`) of an imagination from
        every posterior state are added (keys `actor`, `critic` and the metrics of `AC_METRIC_KEYS`); `extras`
        holds the slow critic and the normaliser (None: fresh ones). With `replay_critic > 0` the `critic` term
        also holds that weight times the critic's loss on the batch's own states and real returns
        (`worldflux_jax.actor_critic.replay_critic_loss`).
        """
        cfg = self.config
        obs = batch.obs.astype(jnp.float32)
        wm_key = ac_key = None
        if key is not None:
            wm_key, ac_key = jax.random.split(key)
        states = self.observe(params, obs, batch.actions, wm_key, sampling)
        post, prior = states["posterior_logits"], states["prior_logits"]
        sg = jax.lax.stop_gradient
        kl_dyn = categorical_kl(sg(post), prior, cfg.kl_free).mean()
        kl_rep = categorical_kl(post, sg(prior), cfg.kl_free).mean()

        features = features_of(states)  # [T, B, F]
        t, b = features.shape[:2]
        flat = features.reshape(t * b, -1)
        recon = self._call(params, DreamerV3Net.decode_obs, flat)
        target = jnp.swapaxes(obs, 0, 1).reshape(t * b, *obs.shape[2:])
        if cfg.use_symlog and cfg.decoder_type != "cnn":
            target = symlog(target)
        reconstruction = jnp.mean((recon - target) ** 2)

        if t < 2:
            # The reference averages the reward/continue terms over max(T - 1, 1) steps: none here.
            reward_loss = continue_loss = jnp.zeros((), jnp.float32)
        else:
            reward_loss, continue_loss = self._head_losses(params, features, batch)
        components = {
            "kl_dynamics": kl_dyn,
            "kl_representation": kl_rep,
            "kl": kl_dyn + kl_rep,
            "reconstruction": reconstruction,
            "reward": reward_loss,
            "continue": continue_loss,
        }
        scales = cfg.loss_scales
        total = (
            scales["reconstruction"] * reconstruction
            + scales["kl_dynamics"] * kl_dyn
            + scales["kl_representation"] * kl_rep
            + scales["reward"] * reward_loss
            + scales["continue"] * continue_loss
        )
        if cfg.actor_critic:
            ac_total, ac_components = self._actor_critic_loss(
                params, extras, states, ac_key, replay=(features, batch) if t >= 2 else None
            )
            total = total + ac_total
            components.update(ac_components)
        return total, components

    def _actor_critic_loss(
        self,
        params: Params,
        extras: Any,
        states: RSSMState,
        key: jax.Array | None,
        replay: tuple[jax.Array, Batch] | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Imagination from every posterior state `[T, B, ...]` (flattened to `N = T * B`, detached; a random
        `imagination_starts` of them when that is set below N) with the world model held fixed, then the
        actor-critic loss. With `actor_gradient="dynamics"` the actor's parameters stay live in the rollout.
        `replay` (posterior features `[T, B, F]` and their batch) feeds the critic's replay loss when
        `replay_critic > 0`."""
        sg = jax.lax.stop_gradient
        extras = ac.ac_extras(params) if extras is None else extras
        replay_loss = None
        if replay is not None and self.config.replay_critic > 0:
            features, batch = replay
            replay_loss, _ = ac.replay_critic_loss(
                self.config, params, extras, features, batch.rewards, batch.terminations, self.bins
            )
        # Deterministic draws when the caller gave no key (e.g. the parity fixtures' "mode" convention).
        key = jax.random.key(0) if key is None else key
        fixed = sg(params)
        start = {k: sg(v.reshape(-1, *v.shape[2:])) for k, v in planning_state(states).items()}
        n, k = start["deter"].shape[0], self.config.imagination_starts
        if 0 < k < n:
            key, start_key = jax.random.split(key)
            # A random subset of the posterior states (without replacement) bounds the imagination's cost.
            index = jax.random.permutation(start_key, n)[:k]
            start = {name: v[index] for name, v in start.items()}
        actor = params[ac.ACTOR] if ac.dynamics_gradient(self.config) else fixed[ac.ACTOR]

        def prior(state: RSSMState, action: jax.Array, step_key: jax.Array) -> RSSMState:
            return rssm_lib.prior_step(self._rssm_apply, fixed["rssm"], state, action, "sample", step_key)

        trajectory = ac.imagine(self.config, prior, features_of, actor, start, key)

        def heads(method: Any) -> Any:
            def apply(features: jax.Array) -> jax.Array:
                h, n = features.shape[:2]
                out = self._call(fixed, method, features.reshape(h * n, -1))
                return out.reshape(h, n, *out.shape[1:])

            return apply

        def reward(features: jax.Array) -> jax.Array:
            h, n = features.shape[:2]
            return self.reward(fixed, features.reshape(h * n, -1)).reshape(h, n)

        return ac.loss(
            self.config,
            params,
            extras,
            trajectory,
            reward,
            heads(DreamerV3Net.continue_logit),
            self.bins,
            replay=replay_loss,
        )

    def train_loss(
        self, params: Params, extras: Any, batch: Batch, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """`make_train_step`'s loss signature: stochastic (Gumbel) latents; `extras` is the actor-critic state
        (None without `actor_critic`)."""
        return self.loss(params, batch, key, "sample", extras)

    def _ac_post_update(self, state: Any, components: Mapping[str, jax.Array]) -> Any:
        """`post_update` of the train step (actor-critic only): slow-critic EMA, normaliser statistics."""
        return state.replace(extras=ac.post_update(self.config, state.extras, state.params, dict(components)))

    def optimizer_groups(self, config: Any, params: Params) -> tuple[Params, dict[str, float | None]]:
        """Learning-rate groups (CONTRACTS §3): see `worldflux_jax.actor_critic.optimizer_groups`."""
        return ac.optimizer_groups(config, params)

    def act(self, params: Params, state: RSSMState, key: jax.Array, explore: bool | jax.Array = True) -> jax.Array:
        """Actor actions `[B, A]` at model states `[B, ...]` (needs `actor_critic`)."""
        return ac.sample_action(self.config, params[ac.ACTOR], features_of(state), key, explore)

    # -- model-family interface (worldflux_jax.family) ------------------------------------------
    def init_extras(self, params: Params) -> Any:
        """The actor-critic state (slow critic, return normaliser) with `actor_critic`, else None."""
        return ac.ac_extras(params) if self.config.actor_critic else None

    def post_update(self, state: Any, components: Mapping[str, jax.Array]) -> Any:
        """With `actor_critic`: slow-critic EMA and normaliser statistics; otherwise nothing to do."""
        return self._ac_post_update(state, components) if self.config.actor_critic else state

    def reference_loss(self, params: Params, extras: Any, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The deterministic loss of the parity fixtures: latents at their mode, no key."""
        return self.loss(params, batch, None, "mode", extras)

    def make_batch(self, obs: Any, actions: Any, rewards: Any, terminations: Any = None) -> Batch:
        """Raw arrays -> `Batch` (float32 obs, one-hot integer actions, zero terminations when None)."""
        rewards = jnp.asarray(rewards, jnp.float32)
        terminations = jnp.zeros_like(rewards) if terminations is None else jnp.asarray(terminations, jnp.float32)
        return Batch(float_obs(obs), one_hot_actions(actions, self.config.action_dim), rewards, terminations)

    def torch_state_dict(self, params: Params, extras: Any = None) -> dict[str, np.ndarray]:
        """The reference `state_dict()` (numpy, torch names and layouts)."""
        return self.to_torch_state_dict(params, extras)

    def _head_losses(self, params: Params, features: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
        """Reward and continue losses over t = 1..T-1 from time-major features `[T, B, F]`."""
        cfg = self.config
        t, b = features.shape[:2]
        later = features[1:].reshape((t - 1) * b, -1)
        rewards = jnp.swapaxes(batch.rewards, 0, 1)[1:].reshape(-1)
        reward_logits = self._call(params, DreamerV3Net.reward_logits, later)
        if cfg.use_twohot:
            reward_loss = twohot_cross_entropy(reward_logits, symlog(rewards), self.bins).mean()
        else:
            target_r = symlog(rewards) if cfg.use_symlog else rewards
            reward_loss = jnp.mean((reward_logits[..., 0] - target_r) ** 2)
        continues = 1.0 - jnp.swapaxes(batch.terminations, 0, 1)[1:].reshape(-1)
        cont_logits = self._call(params, DreamerV3Net.continue_logit, later)
        continue_loss = optax.sigmoid_binary_cross_entropy(cont_logits, continues).mean()
        return reward_loss, continue_loss
