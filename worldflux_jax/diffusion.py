"""Diffusion world model: a DDPM denoiser of the next observation given the current one and the action.

Shapes: B batch, T time, A action_dim, D = prod(obs_shape), K = diffusion_steps, H = hidden_dim. A state is
`{"obs": [B, *obs_shape]}`: the model's dynamics live in observation space.

The diffused quantity is the change `x0 = o_{t+1} - o_t` (flattened, `[B, D]`), conditioned on `o_t` and
`a_t`. Schedule: betas `linspace(beta_start, beta_end, K)`, `abar = cumprod(1 - beta)`, then `sqrt(abar)` is
rescaled linearly so that its first value is kept and its last is `TERMINAL_SIGNAL` (0.1): the reference's
default (K = 4, beta_end = 0.02) would otherwise leave 98% of the signal at the last step, and sampling that
starts from noise could not work (zero/low terminal SNR as in Lin et al. 2024, "Common Diffusion Noise
Schedules and Sample Steps are Flawed"). Forward: `x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps`.

`denoiser` (`prediction_target`: "noise" -> eps, "x0" -> x0, "v" -> sqrt(abar) eps - sqrt(1 - abar) x0):
`Dense(H)` of `[x_k, o_t (, a_t)]` plus a learned step embedding, three residual MLP blocks, `Dense(D)`.
`action_conditioner`: "none" concatenates the action to the input; "adaln" / "adagn" modulate each block's
LayerNorm / GroupNorm output with a scale and shift computed from `[a_t, step embedding]` (FiLM).
`reward_head`: MLP (width H) on a flattened observation (the reward of arriving in it).

Loss over t = 0..T-2 (one random step k per transition): `denoise` = MSE of the prediction to its target,
`reward` = MSE of `reward_head(o_{t+1})` to `r_{t+1}`; total = denoise + reward. `transition` samples with
K ancestral DDPM steps from `x_K ~ N(0, 1 - abar_K)` (no noise at all when deterministic).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from worldflux_jax.family_base import Batch, ExperimentalFamily
from worldflux_jax.nn import MLP

Params = Any
State = dict[str, jax.Array]

LOSS_KEYS = ("denoise", "reward")
TERMINAL_SIGNAL = 0.1
NUM_BLOCKS = 3


def schedule(steps: int, beta_start: float, beta_end: float) -> dict[str, np.ndarray]:
    """`{signal, noise, alpha, beta, abar, abar_prev, coef_x0, coef_xt, sigma}`, each `[K]` float32 (index k-1 =
    step k); the last three give the ancestral step `x_{k-1} = coef_x0 x0 + coef_xt x_k + sigma z`."""
    abar = np.cumprod(1.0 - np.linspace(beta_start, beta_end, steps, dtype=np.float64))
    s = np.sqrt(abar)
    if steps == 1:
        s = np.array([TERMINAL_SIGNAL])
    else:
        s = TERMINAL_SIGNAL + (s - s[-1]) * (s[0] - TERMINAL_SIGNAL) / (s[0] - s[-1])
    abar = s**2
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    alpha = abar / abar_prev
    beta = 1.0 - alpha
    # Posterior q(x_{k-1} | x_k, x0) coefficients, in float64: 1 - abar is ~1e-4 at the first step, where a
    # float32 difference would lose three digits.
    out = {
        "signal": s,
        "noise": np.sqrt(1.0 - abar),
        "alpha": alpha,
        "beta": beta,
        "abar": abar,
        "abar_prev": abar_prev,
        "coef_x0": np.sqrt(abar_prev) * beta / (1.0 - abar),
        "coef_xt": np.sqrt(alpha) * (1.0 - abar_prev) / (1.0 - abar),
        "sigma": np.sqrt(beta * (1.0 - abar_prev) / (1.0 - abar)),
    }
    return {k: v.astype(np.float32) for k, v in out.items()}


class Denoiser(nn.Module):
    """`x_k [B, D]`, step index `k [B]` (0-based), `obs [B, D]`, `action [B, A]` -> prediction `[B, D]`."""

    hidden: int
    out: int
    steps: int
    conditioner: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array, k: jax.Array, obs: jax.Array, action: jax.Array) -> jax.Array:
        step = nn.Embed(self.steps, self.hidden, name="step_embed")(k)
        parts = [x, obs, action] if self.conditioner == "none" else [x, obs]
        h = nn.Dense(self.hidden, name="input")(jnp.concatenate(parts, -1)) + step
        cond = jax.nn.silu(jnp.concatenate([action, step], -1))
        for i in range(NUM_BLOCKS):
            if self.conditioner == "none":
                z = nn.LayerNorm(1e-5, name=f"norm_{i}")(h)
            else:
                if self.conditioner == "adaln":
                    z = nn.LayerNorm(1e-5, use_scale=False, use_bias=False)(h)
                else:
                    groups = math.gcd(8, self.hidden)
                    z = nn.GroupNorm(groups, epsilon=1e-5, use_scale=False, use_bias=False)(h)
                scale, shift = jnp.split(nn.Dense(2 * self.hidden, name=f"film_{i}")(cond), 2, axis=-1)
                z = z * (1.0 + scale) + shift
            h = h + nn.Dense(self.hidden, name=f"fc_{i}")(jax.nn.silu(z))
        return nn.Dense(self.out, name="output")(jax.nn.silu(nn.LayerNorm(1e-5, name="out_norm")(h)))


class Diffusion(ExperimentalFamily):
    """Pure functions of the diffusion world model for one `DiffusionWorldModelConfig`."""

    family = "diffusion"
    loss_keys = LOSS_KEYS

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        c = config
        self.size = math.prod(c.obs_shape)
        self.steps = int(c.diffusion_steps)
        self.schedule = schedule(self.steps, float(c.beta_start), float(c.beta_end))
        self.modules = {
            "denoiser": Denoiser(c.hidden_dim, self.size, self.steps, c.action_conditioner),
            "reward_head": MLP((c.hidden_dim,), 1),
        }

    def init_inputs(self) -> dict[str, tuple[Any, ...]]:
        x = jnp.zeros((1, self.size))
        return {
            "denoiser": (x, jnp.zeros((1,), jnp.int32), x, jnp.zeros((1, self.config.action_dim))),
            "reward_head": (x,),
        }

    # -- model functions -----------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> State:
        return {"obs": jnp.zeros((batch_size, *self.config.obs_shape), jnp.float32)}

    def encode(self, params: Params, obs: jax.Array) -> State:
        """`obs [B, *obs_shape]` -> `{"obs": obs}` (float32)."""
        del params
        return {"obs": obs.astype(jnp.float32)}

    def _x0(self, pred: jax.Array, x: jax.Array, k: jax.Array) -> jax.Array:
        """The clean-sample estimate from the denoiser's `pred` at step index `k` (0-based)."""
        s = jnp.asarray(self.schedule["signal"])[k][:, None]
        n = jnp.asarray(self.schedule["noise"])[k][:, None]
        target = self.config.prediction_target
        if target == "x0":
            return pred
        if target == "v":
            return s * x - n * pred
        return (x - n * pred) / s

    def transition(
        self, params: Params, state: State, action: jax.Array, key: jax.Array | None = None, deterministic: bool = False
    ) -> State:
        """Sample `o_{t+1} = o_t + x0` with K ancestral DDPM steps (the posterior mean only when deterministic)."""
        obs = state["obs"]
        b = obs.shape[0]
        cond = obs.reshape(b, -1)
        sch = {k: jnp.asarray(v) for k, v in self.schedule.items()}
        stochastic = not deterministic and key is not None
        keys = jax.random.split(jax.random.key(0) if key is None else key, self.steps + 1)
        x = jnp.zeros((b, self.size), jnp.float32)
        if stochastic:
            x = sch["noise"][-1] * jax.random.normal(keys[-1], x.shape)

        def body(i: int, x: jax.Array) -> jax.Array:
            k = self.steps - 1 - i
            ks = jnp.full((b,), k, jnp.int32)
            pred = self._apply("denoiser", params, x, ks, cond, action)
            x0 = self._x0(pred, x, ks)
            mean = sch["coef_x0"][k] * x0 + sch["coef_xt"][k] * x
            if not stochastic:
                return mean
            return mean + jnp.where(k > 0, sch["sigma"][k], 0.0) * jax.random.normal(keys[k], x.shape)

        x0 = jax.lax.fori_loop(0, self.steps, body, x)
        return {"obs": obs + x0.reshape(obs.shape)}

    def predict_reward(self, params: Params, state: State) -> jax.Array:
        obs = state["obs"]
        return self._apply("reward_head", params, obs.reshape(obs.shape[0], -1))[..., 0]

    def decode(self, params: Params, state: State) -> dict[str, jax.Array]:
        """`obs [B, *obs_shape]` (the state's), `reward [B, 1]`, `continue` (ones) `[B, 1]`."""
        reward = self.predict_reward(params, state)[:, None]
        return {"obs": state["obs"], "reward": reward, "continue": jnp.ones_like(reward)}

    # -- loss ----------------------------------------------------------------------------------
    def loss(
        self, params: Params, extras: Params, batch: Batch, key: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """`(denoise + reward, {denoise, reward})`; `extras` is unused (None)."""
        del extras
        b, t = batch.obs.shape[:2]
        if t < 2:
            zero = jnp.zeros((), jnp.float32)
            return zero, dict.fromkeys(LOSS_KEYS, zero)
        m = b * (t - 1)
        obs = batch.obs.reshape(b, t, -1)
        cur, nxt = obs[:, :-1].reshape(m, -1), obs[:, 1:].reshape(m, -1)
        x0 = nxt - cur
        step_key, noise_key = jax.random.split(jax.random.key(0) if key is None else key)
        k = jax.random.randint(step_key, (m,), 0, self.steps)
        eps = jax.random.normal(noise_key, x0.shape)
        s = jnp.asarray(self.schedule["signal"])[k][:, None]
        n = jnp.asarray(self.schedule["noise"])[k][:, None]
        x = s * x0 + n * eps
        pred = self._apply("denoiser", params, x, k, cur, batch.actions[:, :-1].reshape(m, -1))
        target = {"noise": eps, "x0": x0, "v": s * eps - n * x0}[self.config.prediction_target]
        denoise = jnp.mean((pred - target) ** 2)
        reward = jnp.mean((self.predict_reward(params, {"obs": nxt}) - batch.rewards[:, 1:].reshape(m)) ** 2)
        return denoise + reward, {"denoise": denoise, "reward": reward}
