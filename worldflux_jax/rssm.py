"""The DreamerV3 recurrent state-space model (reference §5.1), as a Flax module plus scans over time.

    h_t       = GRU([flatten(z_{t-1}), a_{t-1}], h_{t-1})     sequence model
    prior_t   = prior_net(h_t)                                  dynamics predictor
    post_t    = posterior_net([h_t, embed(x_t)])                representation
    z_t       ~ Categorical(post_t)  (or prior_t when imagining)

A state is a dict of arrays with leading batch axis B: `deter [B, deter_dim]`,
`stoch [B, stoch_discrete, stoch_classes]` (one-hot draws), `logits` and `prior_logits`
`[B, stoch_discrete, stoch_classes]`, and `posterior_logits` after a posterior step — the reference's
`State.tensors` keys.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from worldflux_jax.distributions import sample_categorical
from worldflux_jax.nn import LOGIT_CLAMP, MLP, GRUCell, LayerNorm, dot_nt, gru_gates, linear_nt, sanitize

RSSMState = dict[str, jax.Array]


class RSSM(nn.Module):
    """Parameters `rssm.gru`, `rssm.prior_net`, `rssm.posterior_net` in the reference layout."""

    deter_dim: int
    stoch_discrete: int
    stoch_classes: int
    hidden_dim: int

    def setup(self) -> None:
        stoch = self.stoch_discrete * self.stoch_classes
        self.gru = GRUCell(self.deter_dim)
        self.prior_net = MLP((self.hidden_dim,), stoch)
        self.posterior_net = MLP((self.hidden_dim,), stoch)

    def _logits(self, flat: jax.Array) -> jax.Array:
        flat = jnp.clip(flat, -LOGIT_CLAMP, LOGIT_CLAMP)
        return flat.reshape(flat.shape[0], self.stoch_discrete, self.stoch_classes)

    def recurrent(self, stoch: jax.Array, action: jax.Array, deter: jax.Array | None) -> jax.Array:
        """`h_t` `[B, deter_dim]` from `z_{t-1}` `[B, D, K]`, `a_{t-1}` `[B, A]` and `h_{t-1}` (None: zeros,
        the initial state, whose recurrent product is skipped; see `GRUCell`)."""
        x = sanitize(jnp.concatenate([stoch.reshape(stoch.shape[0], -1), action], axis=-1))
        return sanitize(self.gru(x, None if deter is None else sanitize(deter)))

    def prior(self, deter: jax.Array) -> jax.Array:
        """Prior logits `[B, D, K]` from `h_t`."""
        return self._logits(self.prior_net(deter))

    def posterior(self, deter: jax.Array, embed: jax.Array) -> jax.Array:
        """Posterior logits `[B, D, K]` from `h_t` and the observation embedding `[B, E]`."""
        return self._logits(self.posterior_net(jnp.concatenate([deter, embed], axis=-1)))

    def __call__(self, stoch: jax.Array, action: jax.Array, deter: jax.Array, embed: jax.Array) -> Any:
        # Used only by `init` to create every parameter.
        deter = self.recurrent(stoch, action, deter)
        return self.prior(deter), self.posterior(deter, embed)


def initial_state(batch_size: int, deter_dim: int, stoch_discrete: int, stoch_classes: int) -> RSSMState:
    """Zero `deter` and one-hot `stoch` on class 0, as the reference."""
    stoch = jnp.zeros((batch_size, stoch_discrete, stoch_classes), jnp.float32).at[..., 0].set(1.0)
    return {"deter": jnp.zeros((batch_size, deter_dim), jnp.float32), "stoch": stoch}


#: `apply(params, method, *args)` runs an `RSSM` method on the RSSM's parameter subtree `params`
#: (for example `lambda p, m, *a: RSSM(...).apply({"params": p}, *a, method=m)`).
Apply = Callable[..., Any]


def make_apply(module: RSSM) -> Apply:
    return lambda params, method, *args: module.apply({"params": params}, *args, method=method)


def prior_step(
    apply: Apply, params: Any, state: RSSMState, action: jax.Array, sampling: str, key: jax.Array | None
) -> RSSMState:
    """One imagination step: state `[B, ...]`, action `[B, A]` -> prior state."""
    deter = apply(params, RSSM.recurrent, state["stoch"], action, state["deter"])
    prior_logits = apply(params, RSSM.prior, deter)
    stoch = sample_categorical(prior_logits, sampling, key)
    return {"deter": deter, "stoch": stoch, "logits": prior_logits, "prior_logits": prior_logits}


def posterior_step(
    apply: Apply,
    params: Any,
    state: RSSMState,
    action: jax.Array,
    embed: jax.Array,
    sampling: str,
    key: jax.Array | None,
) -> RSSMState:
    """One filtering step with the observation embedding `[B, E]`. A `state` without `deter` starts from
    `h = 0` (the initial state) without computing its recurrent product."""
    deter = apply(params, RSSM.recurrent, state["stoch"], action, state.get("deter"))
    prior_logits = apply(params, RSSM.prior, deter)
    post_logits = apply(params, RSSM.posterior, deter, embed)
    stoch = sample_categorical(post_logits, sampling, key)
    return {
        "deter": deter,
        "stoch": stoch,
        "logits": post_logits,
        "prior_logits": prior_logits,
        "posterior_logits": post_logits,
    }


def _step_keys(key: jax.Array | None, steps: int) -> jax.Array | None:
    return None if key is None else jax.random.split(key, steps)


def observe(
    apply: Apply,
    params: Any,
    start: RSSMState,
    prev_actions: jax.Array,
    embeds: jax.Array,
    sampling: str,
    key: jax.Array | None,
    unroll: int | bool = 1,
) -> RSSMState:
    """Filter a sequence: `prev_actions [T, B, A]`, `embeds [T, B, E]` -> stacked posterior states `[T, B, ...]`.

    `apply(params, method, *args)` runs an `RSSM` method; `params` is the RSSM's parameter subtree.
    Only what depends on the previous sample stays inside the loop: the action part of the GRU input
    projection, the observation part of the posterior net's first layer and the prior logits are computed
    for all steps at once, as large matmuls. The GRU's recurrent weight gradients are likewise formed after
    the loop (see `_filter`), instead of being accumulated step by step into a weight-sized buffer.
    """
    stoch_size = start["stoch"].shape[-2] * start["stoch"].shape[-1]
    w_action = params["gru"]["weight_ih"][:, stoch_size:]  # [3H, A]
    t, b = prev_actions.shape[:2]
    act_proj = dot_nt(sanitize(prev_actions).reshape(t * b, -1), w_action).reshape(t, b, -1)
    carry = {"deter": start["deter"], "stoch": start["stoch"]}
    post_proj = posterior_observation_projection(params, embeds, start["deter"].shape[-1])
    out = _filter(apply, sampling, unroll, params, carry, act_proj, post_proj, _step_keys(key, t))
    prior = apply(params, RSSM.prior, out["deter"].reshape(t * b, -1))
    out["prior_logits"] = prior.reshape(t, b, *prior.shape[1:])
    out["logits"] = out["posterior_logits"]
    return out


def posterior_observation_projection(params: Any, embeds: jax.Array, deter_dim: int) -> jax.Array:
    """The observation part of the posterior net's first layer, `embed @ W0[deter_dim:] + b0`, for all steps
    at once: `embeds [..., E]` -> `[..., hidden]` (see `posterior_from_projection`)."""
    layer = params["posterior_net"]["0"]
    return embeds @ layer["kernel"][deter_dim:] + layer["bias"]


def posterior_from_projection(
    net: Any, w_deter: jax.Array, deter: jax.Array, post_proj: jax.Array, stoch_shape: tuple[int, int]
) -> jax.Array:
    """Posterior logits `[B, D, K]` from `h_t [B, H]` and `posterior_observation_projection` of the step's
    embedding `[B, hidden]`: `RSSM.posterior` with the first layer's matmul split over its input
    `[h_t, embed]` (the same math; the sum runs in another order). `net` is `params["posterior_net"]` and
    `w_deter` its first kernel's rows for `h_t`, `net["0"]["kernel"][:H]`, sliced by the caller once
    outside the time loop, so that its gradient accumulates without being padded to the full kernel."""
    x = deter @ w_deter + post_proj
    x = jax.nn.silu(LayerNorm(axes=1).apply({"params": net["1"]}, x))
    flat = jnp.clip(x @ net["3"]["kernel"] + net["3"]["bias"], -LOGIT_CLAMP, LOGIT_CLAMP)
    return flat.reshape(flat.shape[0], *stoch_shape)


def _filter_impl(
    apply: Apply,
    sampling: str,
    unroll: int | bool,
    params: Any,
    carry: RSSMState,
    act_proj: jax.Array,
    post_projs: jax.Array,
    keys: jax.Array | None,
    probes: tuple[jax.Array, jax.Array],
) -> tuple[RSSMState, tuple[jax.Array, jax.Array]]:
    """The filtering scan. The GRU's recurrent weights enter through `stop_gradient`; each step adds
    `probes[t]` (zeros) to its two projections, so the cotangents of the probes are the gate gradients
    from which `_filter_bwd` forms the weight gradients. Also returns the projected inputs `[T, B, *]`."""
    gru = params["gru"]
    stoch_size = carry["stoch"].shape[-2] * carry["stoch"].shape[-1]
    # Torch layout [3H, in]: the forward reads it as is; the input gradients read its transpose, formed
    # once here rather than per step (see `linear_nt`).
    w_stoch_t = jax.lax.stop_gradient(gru["weight_ih"][:, :stoch_size])
    w_hidden_t = jax.lax.stop_gradient(gru["weight_hh"])
    w_stoch, w_hidden = w_stoch_t.T, w_hidden_t.T
    post_net = params["posterior_net"]
    w_post_deter = post_net["0"]["kernel"][: carry["deter"].shape[-1]]

    def body(carry: RSSMState, inputs: Any) -> tuple[RSSMState, Any]:
        a_proj, post_proj, step_key, probe_i, probe_h = inputs
        stoch_in = sanitize(carry["stoch"].reshape(carry["stoch"].shape[0], -1))
        hidden = sanitize(carry["deter"])
        gi = linear_nt(stoch_in, w_stoch, w_stoch_t) + a_proj + gru["bias_ih"] + probe_i
        gh = linear_nt(hidden, w_hidden, w_hidden_t) + gru["bias_hh"] + probe_h
        deter = sanitize(gru_gates(gi, gh, hidden))
        post_logits = posterior_from_projection(post_net, w_post_deter, deter, post_proj, carry["stoch"].shape[-2:])
        stoch = sample_categorical(post_logits, sampling, step_key)
        new = {"deter": deter, "stoch": stoch}
        return new, ({**new, "posterior_logits": post_logits}, (stoch_in, hidden))

    _, (out, inputs) = jax.lax.scan(body, carry, (act_proj, post_projs, keys, *probes), unroll=unroll)
    return out, inputs


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _filter(
    apply: Apply,
    sampling: str,
    unroll: int | bool,
    params: Any,
    carry: RSSMState,
    act_proj: jax.Array,
    post_projs: jax.Array,
    keys: jax.Array | None,
) -> RSSMState:
    probes = _zero_probes(act_proj)
    return _filter_impl(apply, sampling, unroll, params, carry, act_proj, post_projs, keys, probes)[0]


def _zero_probes(act_proj: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.zeros_like(act_proj), jnp.zeros_like(act_proj)


def _filter_fwd(
    apply: Apply,
    sampling: str,
    unroll: int | bool,
    params: Any,
    carry: RSSMState,
    act_proj: jax.Array,
    post_projs: jax.Array,
    keys: jax.Array | None,
) -> tuple[RSSMState, Any]:
    def run(params: Any, carry: RSSMState, act_proj: jax.Array, post_projs: jax.Array, probes: Any) -> Any:
        return _filter_impl(apply, sampling, unroll, params, carry, act_proj, post_projs, keys, probes)

    out, vjp_fn, inputs = jax.vjp(run, params, carry, act_proj, post_projs, _zero_probes(act_proj), has_aux=True)
    return out, (vjp_fn, inputs)


def _filter_bwd(
    apply: Apply, sampling: str, unroll: int | bool, residuals: Any, cotangent: RSSMState
) -> tuple[Any, ...]:
    vjp_fn, (stoch_in, hidden) = residuals
    d_params, d_carry, d_act_proj, d_post_projs, (g_i, g_h) = vjp_fn(cotangent)
    # One [T*B, 3H]^T @ [T*B, in] matmul per weight (torch layout [3H, in]) instead of T rank-B updates.
    flat = lambda x: x.reshape(-1, x.shape[-1])
    d_w_stoch = flat(g_i).T @ flat(stoch_in)
    d_w_hidden = flat(g_h).T @ flat(hidden)
    gru = dict(d_params["gru"])
    stoch_size = d_w_stoch.shape[1]
    gru["weight_ih"] = gru["weight_ih"].at[:, :stoch_size].add(d_w_stoch)
    gru["weight_hh"] = gru["weight_hh"] + d_w_hidden
    d_params = {**d_params, "gru": gru}
    return d_params, d_carry, d_act_proj, d_post_projs, None


_filter.defvjp(_filter_fwd, _filter_bwd)


def imagine(
    apply: Apply,
    params: Any,
    start: RSSMState,
    actions: jax.Array,
    sampling: str,
    key: jax.Array | None,
    unroll: int | bool = 1,
) -> RSSMState:
    """Open-loop prior rollout: `actions [T, B, A]` -> stacked prior states `[T, B, ...]`."""
    steps = actions.shape[0]

    def body(carry: RSSMState, inputs: Any) -> tuple[RSSMState, RSSMState]:
        action, step_key = inputs
        new = prior_step(apply, params, carry, action, sampling, step_key)
        return {"deter": new["deter"], "stoch": new["stoch"]}, new

    carry = {"deter": start["deter"], "stoch": start["stoch"]}
    _, out = jax.lax.scan(body, carry, (actions, _step_keys(key, steps)), unroll=unroll)
    return out
