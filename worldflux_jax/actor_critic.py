"""DreamerV3 behaviour learning in imagination: the reference's `actor_critic=True` (reference §4.3, §5.1).

Pure functions over pytrees, used inside DreamerV3's jitted, donated train step:

* heads: the actor (`actor.mlp.*`: `[Linear-LN-SiLU] x 2 -> Linear(h, A)` logits for discrete actions, or
  `Linear(h, 2A)` mean / raw std of a tanh-squashed normal for continuous ones) and the critic
  (`critic.mlp.*`, the reward head's shape: 255 two-hot bins in symlog space);
* `imagine`: `imagination_horizon` prior steps with actor samples from every posterior state of the batch
  (`lax.scan`; the world model and the actor are held fixed: stop-gradients);
* `td_lambda`: the reference's `compute_td_lambda` recursion;
* `normalize_returns`: EMA (momentum 0.99) of the 5th / 95th return percentiles, span clamped to >= 1;
* `loss`: critic = two-hot cross-entropy to `symlog(sg(R))`, actor = REINFORCE `-(logp(a) * sg((R - V) / S))`
  minus `actor_entropy_coef * entropy`; the actor loss reaches only the actor's parameters, the critic loss
  only the critic's. `behavior_profile="paper"` weights both by the cumulative predicted continue, builds the
  returns from the online critic and regularises the critic towards the slow one (1% unimix in the discrete
  actor); `actor_gradient="dynamics"` (continuous) maximises `R / S` through the imagined trajectory;
* `replay_critic_loss`: the critic also fitted to λ-returns of the batch's real rewards and terminations
  (`replay_critic > 0`, DreamerV3's `repval`);
* `ac_extras` / `post_update`: the slow critic (EMA with `slow_critic_fraction` after each optimizer step,
  like TD-MPC2's target network) and the normaliser's statistics (the loss reports the updated values as
  the metrics `return_low` / `return_high`; the post-update stores them);
* `optimizer_groups`: world model / actor / critic learning rates (CONTRACTS §3).

Shapes: N = B * T imagination starts, H = imagination_horizon, A = action_dim, F = feature dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from worldflux_jax.distributions import symexp, symlog, twohot_cross_entropy, twohot_expected_value
from worldflux_jax.networks import Head

Params = Any
State = dict[str, jax.Array]

#: Loss components added to the world model's when `actor_critic=True`.
AC_LOSS_KEYS = ("actor", "critic")
#: Extra metrics the actor-critic loss reports (the normaliser's state after this batch).
AC_METRIC_KEYS = ("return_low", "return_high", "imagined_return", "actor_entropy")
#: Parameter subtrees of the heads (also their torch prefixes).
ACTOR, CRITIC, SLOW_CRITIC = "actor", "critic", "slow_critic"
#: Non-trainable buffers of the reference state dict when `actor_critic=True`.
RETURN_BUFFERS = ("_return_low", "_return_high")

MIN_STD = 0.1
UNIMIX = 0.01
#: Weight of the paper profile's critic regulariser towards the slow critic's distribution.
SLOW_REGULARIZER = 1.0
LOGP_EPS = 1e-6
NORM_MOMENTUM = 0.99
LOW_PERCENTILE, HIGH_PERCENTILE = 5.0, 95.0


class ImaginedTrajectory(NamedTuple):
    """`features [H + 1, N, F]` (start state first), `actions [H, N, A]` (taken at features[:H])."""

    features: jax.Array
    actions: jax.Array


def actor_head(config: Any) -> Head:
    out = config.action_dim if _discrete(config) else 2 * config.action_dim
    return Head(config.hidden_dim, out)


def critic_head(config: Any) -> Head:
    return Head(config.hidden_dim, config.reward_num_bins)


def _discrete(config: Any) -> bool:
    return config.action_type == "discrete"


def _paper(config: Any) -> bool:
    return config.behavior_profile == "paper"


def dynamics_gradient(config: Any) -> bool:
    """True when the actor learns by differentiating returns through the imagined trajectory."""
    return config.actor_gradient == "dynamics"


def init_heads(config: Any, key: jax.Array) -> dict[str, Params]:
    """`{"actor": ..., "critic": ...}` parameters for features of size `config.feature_dim`."""
    k_actor, k_critic = jax.random.split(key)
    x = jnp.zeros((1, config.feature_dim), jnp.float32)
    return {
        ACTOR: actor_head(config).init(k_actor, x)["params"],
        CRITIC: critic_head(config).init(k_critic, x)["params"],
    }


def ac_extras(params: Params) -> dict[str, Any]:
    """Fresh non-trainable state: the slow critic (a copy of the critic) and the normaliser (low 0, high 1,
    the reference's buffer values)."""
    return {
        SLOW_CRITIC: jax.tree.map(jnp.array, params[CRITIC]),
        "return_low": jnp.zeros((), jnp.float32),
        "return_high": jnp.ones((), jnp.float32),
    }


# ------------------------------------------------------------------------------------------ policy


def actor_dist(config: Any, actor_params: Params, features: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """Distribution parameters from features `[..., F]`: `(logits [..., A], None)` for discrete actions,
    `(mean [..., A], std [..., A])` (pre-tanh normal, std = softplus(raw) + 0.1) for continuous ones."""
    out = actor_head(config).apply({"params": actor_params}, features)
    if _discrete(config):
        if _paper(config):
            # 1% uniform mixture (paper): log(0.99 * softmax + 0.01 / A) stays a valid logit vector.
            mixed = (1.0 - UNIMIX) * jax.nn.softmax(out, axis=-1) + UNIMIX / out.shape[-1]
            return jnp.log(mixed), None
        return out, None
    mean, raw = jnp.split(out, 2, axis=-1)
    return mean, jax.nn.softplus(raw) + MIN_STD


def sample_action(
    config: Any, actor_params: Params, features: jax.Array, key: jax.Array, explore: bool | jax.Array = True
) -> jax.Array:
    """Actions `[..., A]`: one-hot for discrete (a draw, or the argmax when `explore` is False), in (-1, 1)
    for continuous (`tanh` of a draw, or of the mean)."""
    loc, std = actor_dist(config, actor_params, features)
    if std is None:
        draw = jax.random.categorical(key, loc, axis=-1)
        index = jnp.where(explore, draw, jnp.argmax(loc, axis=-1))
        return jax.nn.one_hot(index, loc.shape[-1], dtype=jnp.float32)
    noise = jax.random.normal(key, loc.shape, loc.dtype)
    return jnp.tanh(loc + jnp.where(explore, std * noise, 0.0))


def log_prob_entropy(
    config: Any, actor_params: Params, features: jax.Array, actions: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """`(log pi(a | s) [...], entropy [...])` for actions `[..., A]` from `sample_action`.

    Continuous: the tanh-squashed normal's log-density with the reference's correction
    `log(1 - a^2 + 1e-6)`; the entropy is the pre-squash normal's (the squashed one has no closed form).
    """
    loc, std = actor_dist(config, actor_params, features)
    if std is None:
        logp_all = jax.nn.log_softmax(loc, axis=-1)
        logp = jnp.sum(actions * logp_all, axis=-1)
        entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
        return logp, entropy
    a = jnp.clip(actions, -1.0 + LOGP_EPS, 1.0 - LOGP_EPS)
    pre = jnp.arctanh(a)
    normal = -0.5 * ((pre - loc) / std) ** 2 - jnp.log(std) - 0.5 * math.log(2 * math.pi)
    logp = jnp.sum(normal - jnp.log(1.0 - a**2 + LOGP_EPS), axis=-1)
    entropy = jnp.sum(0.5 + 0.5 * math.log(2 * math.pi) + jnp.log(std), axis=-1)
    return logp, entropy


def critic_value(config: Any, critic_params: Params, features: jax.Array, bins: jax.Array) -> jax.Array:
    """Value `[...]` in return units (symexp of the two-hot expected value) from features `[..., F]`."""
    logits = critic_head(config).apply({"params": critic_params}, features)
    return symexp(twohot_expected_value(logits, bins))


# ------------------------------------------------------------------------------------------ returns


def td_lambda(rewards: jax.Array, values: jax.Array, continues: jax.Array, gamma: float, lambda_: float) -> jax.Array:
    """TD(lambda) returns `[H, N]` from `rewards [H, N]`, `values [H + 1, N]`, `continues [H, N]`:
    `R_t = r_t + gamma * c_t * ((1 - lambda) * v_{t+1} + lambda * R_{t+1})`, `R_H = v_H` (a reverse scan)."""

    def body(next_return: jax.Array, inputs: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
        r, c, v_next = inputs
        ret = r + gamma * c * ((1.0 - lambda_) * v_next + lambda_ * next_return)
        return ret, ret

    _, returns = jax.lax.scan(body, values[-1], (rewards, continues, values[1:]), reverse=True)
    return returns


def normalize_returns(
    returns: jax.Array, low: jax.Array, high: jax.Array, enabled: bool = True
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`(scale, new_low, new_high)`: the EMA (momentum 0.99) of the 5th / 95th percentiles of `returns` and
    the span `max(high - low, 1)` that advantages are divided by (1 when not `enabled`)."""
    returns = jax.lax.stop_gradient(returns)
    p_low = jnp.percentile(returns, LOW_PERCENTILE)
    p_high = jnp.percentile(returns, HIGH_PERCENTILE)
    new_low = NORM_MOMENTUM * low + (1.0 - NORM_MOMENTUM) * p_low
    new_high = NORM_MOMENTUM * high + (1.0 - NORM_MOMENTUM) * p_high
    scale = jnp.maximum(new_high - new_low, 1.0) if enabled else jnp.ones((), returns.dtype)
    return scale, new_low, new_high


# ------------------------------------------------------------------------------------------ imagination


def imagine(
    config: Any,
    prior_step: Callable[[State, jax.Array, jax.Array], State],
    features_of: Callable[[State], jax.Array],
    actor_params: Params,
    start: State,
    key: jax.Array,
) -> ImaginedTrajectory:
    """Roll `config.imagination_horizon` prior steps from `start` (leaves `[N, ...]`) with actor samples.

    `prior_step(state, action, key)` is the world model's stochastic prior step. Nothing here is
    differentiated (callers pass stop-gradient parameters and states).
    """

    def body(state: State, step_key: jax.Array) -> tuple[State, tuple[jax.Array, jax.Array]]:
        k_act, k_dyn = jax.random.split(step_key)
        feat = features_of(state)
        action = sample_action(config, actor_params, feat, k_act)
        nxt = prior_step(state, action, k_dyn)
        return {"deter": nxt["deter"], "stoch": nxt["stoch"]}, (feat, action)

    keys = jax.random.split(key, config.imagination_horizon)
    final, (feats, actions) = jax.lax.scan(body, start, keys)
    features = jnp.concatenate([feats, features_of(final)[None]], axis=0)
    return ImaginedTrajectory(features, actions)


def loss(
    config: Any,
    params: Params,
    extras: dict[str, Any],
    trajectory: ImaginedTrajectory,
    reward_fn: Callable[[jax.Array], jax.Array],
    continue_logit_fn: Callable[[jax.Array], jax.Array],
    bins: jax.Array,
    replay: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Actor and critic losses of one imagined batch. Returns `(scaled total, components)` with the keys
    of `AC_LOSS_KEYS` and `AC_METRIC_KEYS`. `replay` (`replay_critic_loss`, a scalar) joins the critic term
    with weight `config.replay_critic`.

    Rewards and continues come from the (fixed) world-model heads at the states after each action
    (continue = sigmoid of the logit). Reference profile: values from the slow critic, plain means over the
    imagined steps. Paper profile (`behavior_profile="paper"`): values from the online critic (held fixed
    here), every term weighted by the cumulative predicted continue `w_t = prod_{i <= t} c_i` (`w_0 = 1`), and
    the critic also regressed towards the slow critic's distribution. With `actor_gradient="dynamics"` the
    trajectory carries the actor's gradient and the actor maximises the normalised λ-return directly;
    otherwise it is REINFORCE with every target a stop-gradient.
    """
    sg = jax.lax.stop_gradient
    paper = _paper(config)
    live = trajectory.features  # [H + 1, N, F]; differentiable w.r.t. the actor only with dynamics gradients
    feats = sg(live)
    actions = sg(trajectory.actions)  # [H, N, A]
    value_params = _value_params(config, params, extras)
    rewards = reward_fn(live[1:])  # [H, N]
    continues = jax.nn.sigmoid(continue_logit_fn(live[1:]))
    values = critic_value(config, value_params, live, bins)  # [H + 1, N]
    live_returns = td_lambda(rewards, values, continues, config.gamma, config.lambda_)  # [H, N]
    returns, values = sg(live_returns), sg(values)
    scale, new_low, new_high = normalize_returns(
        returns, extras["return_low"], extras["return_high"], config.return_normalization
    )
    if paper:
        c = sg(continues)
        weight = jnp.concatenate([jnp.ones_like(c[:1]), jnp.cumprod(c[:-1], axis=0)], axis=0)  # [H, N]
    else:
        weight = jnp.ones_like(returns)

    critic_loss = (weight * _critic_cross_entropy(config, params, extras, feats[:-1], returns, bins)).mean()
    if replay is not None:
        critic_loss = critic_loss + config.replay_critic * replay

    logp, entropy = log_prob_entropy(config, params[ACTOR], feats[:-1], actions)
    if dynamics_gradient(config):
        objective = live_returns / scale
    else:
        objective = logp * sg((returns - values[:-1]) / scale)
    actor_loss = -(weight * (objective + config.actor_entropy_coef * entropy)).mean()

    scales = config.loss_scales
    total = scales.get("actor", 1.0) * actor_loss + scales.get("critic", 1.0) * critic_loss
    components = {
        "actor": actor_loss,
        "critic": critic_loss,
        "return_low": new_low,
        "return_high": new_high,
        "imagined_return": returns[0].mean(),
        "actor_entropy": entropy.mean(),
    }
    return total, components


def replay_critic_loss(
    config: Any,
    params: Params,
    extras: dict[str, Any],
    features: jax.Array,
    rewards: jax.Array,
    terminations: jax.Array,
    bins: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """The critic's loss on replayed posterior states (DreamerV3's `repval`): two-hot cross-entropy to
    `symlog` of λ-returns built from the batch's real rewards and terminations, bootstrapped from the same
    critic as imagination (the paper profile's online critic, held fixed, with its slow-critic regulariser;
    the slow critic in the reference profile).

    `features [T, B, F]` (time-major posterior features; detached here), `rewards`, `terminations [B, T]`
    (row t: the reward and terminal flag that arrived with o_t). Real terminations reach the critic directly,
    so it learns that states heading for an ending the continue head has not resolved are worth less.
    Returns `(loss, returns [T - 1, B])`: the mean over the first T - 1 states (the last one only bootstraps)
    and their targets in return units.
    """
    sg = jax.lax.stop_gradient
    feats = sg(features)
    values = sg(critic_value(config, _value_params(config, params, extras), feats, bins))  # [T, B]
    r = jnp.swapaxes(rewards, 0, 1)[1:]
    c = 1.0 - jnp.swapaxes(terminations, 0, 1)[1:]
    returns = sg(td_lambda(r, values, c, config.gamma, config.lambda_))  # [T - 1, B]
    return _critic_cross_entropy(config, params, extras, feats[:-1], returns, bins).mean(), returns


def _value_params(config: Any, params: Params, extras: dict[str, Any]) -> Params:
    """The critic that λ-returns bootstrap from: the online one held fixed (paper), else the slow one."""
    return jax.lax.stop_gradient(params[CRITIC]) if _paper(config) else extras[SLOW_CRITIC]


def _critic_cross_entropy(
    config: Any, params: Params, extras: dict[str, Any], feats: jax.Array, returns: jax.Array, bins: jax.Array
) -> jax.Array:
    """Per-state critic loss `[...]`: two-hot cross-entropy of the critic at `feats [..., F]` to
    `symlog(returns)` (a stop-gradient target), plus, in the paper profile, the cross-entropy to the slow
    critic's distribution."""
    logits = critic_head(config).apply({"params": params[CRITIC]}, feats)
    ce = twohot_cross_entropy(logits, symlog(returns), bins)
    if _paper(config):
        slow_logits = critic_head(config).apply({"params": extras[SLOW_CRITIC]}, feats)
        slow_probs = jax.lax.stop_gradient(jax.nn.softmax(slow_logits, axis=-1))
        ce = ce - SLOW_REGULARIZER * jnp.sum(slow_probs * jax.nn.log_softmax(logits), axis=-1)
    return ce


def post_update(config: Any, extras: dict[str, Any], params: Params, components: dict[str, jax.Array]) -> dict:
    """Extras after an optimizer step: slow critic `<- (1 - f) * slow + f * critic` (f =
    `slow_critic_fraction`) and the normaliser statistics the step's loss computed."""
    f = config.slow_critic_fraction
    slow = jax.tree.map(lambda s, c: (1.0 - f) * s + f * c, extras[SLOW_CRITIC], params[CRITIC])
    return {
        SLOW_CRITIC: slow,
        "return_low": components["return_low"].astype(jnp.float32),
        "return_high": components["return_high"].astype(jnp.float32),
    }


def _group(name: str) -> str:
    return name if name in (ACTOR, CRITIC) else "world_model"


def optimizer_groups(config: Any, params: Params) -> tuple[Params, dict[str, float | None]]:
    """`(labels, rates)` (CONTRACTS §3): the actor and critic subtrees get `actor_lr` / `critic_lr`, the rest
    of the world model the model config's `learning_rate` (the reference's `parameter_groups()`); without
    `actor_critic` one group at the training config's rate."""
    if not getattr(config, "actor_critic", False):
        return jax.tree.map(lambda _: "world_model", params), {"world_model": None}
    labels = {k: jax.tree.map(lambda _, k=k: _group(k), v) for k, v in params.items()}
    rates = {"world_model": float(config.learning_rate), ACTOR: float(config.actor_lr), CRITIC: float(config.critic_lr)}
    return labels, rates
