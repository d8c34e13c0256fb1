"""The TD-MPC2 world model: parameters, pure functions, loss and target EMA (reference §4.4, §5.2).

`TDMPC2(config)` is stateless, like `DreamerV3`: pure functions of `(params, ...)`, jit-friendly.
Parameters mirror the reference's torch modules (`_encoder.mlp`, `_dynamics.mlp`, `_reward_head.mlp`,
`_q_ensemble.q_networks.{k}.mlp`, `_policy.mlp`, optional `_dynamics.task_embedding`), except that the Q
ensemble is held STACKED (leading axis `num_q_networks`) and evaluated with `nn.vmap`. The target Q
ensemble is a separate tree of the same structure as `params["_q_ensemble"]` (`TrainState.extras`).

Shapes: B batch, T time, A action_dim, L latent_dim, K num_q_networks. A state is `{"latent": [B, L]}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from worldflux_jax import torch_layout as tl
from worldflux_jax.config import TDMPC2Config
from worldflux_jax.distributions import symexp, symlog
from worldflux_jax.family import float_obs, one_hot_actions
from worldflux_jax.nn import ACT_CLAMP, MLP, sanitize
from worldflux_jax.simnorm import simnorm
from worldflux_jax.step import TrainState, create_train_state
from worldflux_jax.torch_layout import StateDictError

Params = Any
State = dict[str, jax.Array]

LOSS_KEYS = ("consistency", "reward", "td", "policy")
DELTA_MAX_NORM = 10.0
DELTA_EPS = 1e-6
# Canonical torch prefix -> the reference's legacy alias attribute (`self.encoder = self._encoder.mlp`, ...).
_ALIASES = (
    ("_encoder.mlp.", "encoder."),
    ("_dynamics.mlp.", "dynamics."),
    ("_dynamics.task_embedding.", "task_embedding."),
    ("_reward_head.mlp.", "reward_head."),
    ("_policy.mlp.", "policy."),
)
_TARGET = "_target_q_ensemble"
_BUFFERS = ("_device_tracker",)


class Seq(nn.Module):
    """A reference head holding one torch `nn.Sequential` as its child `mlp` (Mish, LayerNorm)."""

    hidden: tuple[int, ...]
    out: int
    out_act: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return MLP(self.hidden, self.out, act="mish", out_act=self.out_act, name="mlp")(x)


class QEnsemble(nn.Module):
    """K Q-networks with stacked parameters (leading axis K): `[B, L + A] -> [K, B, 1]`."""

    hidden: int
    num_q: int

    @nn.compact
    def __call__(self, za: jax.Array) -> jax.Array:
        vmapped = nn.vmap(
            Seq,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_q,
        )
        return vmapped((self.hidden, self.hidden), 1, name="q_networks")(za)


class Dynamics(nn.Module):
    """Residual latent delta `[B, L + A (+ task_dim)] -> [B, L]` (norm <= 10), reference guards included."""

    hidden: int
    latent: int
    num_tasks: int = 1
    task_dim: int = 96

    @nn.compact
    def __call__(self, z: jax.Array, action: jax.Array, task_id: jax.Array | None = None) -> jax.Array:
        parts = [sanitize(z), sanitize(action)]
        if self.num_tasks > 1:
            embed = nn.Embed(self.num_tasks, self.task_dim, name="task_embedding")
            if task_id is None:
                parts.append(jnp.zeros((z.shape[0], self.task_dim), z.dtype))
                embed(jnp.zeros((1,), jnp.int32))  # creates the table at init
            else:
                ids = jnp.clip(task_id.astype(jnp.int32), 0, self.num_tasks - 1)
                parts.append(embed(ids).astype(z.dtype))
        x = sanitize(jnp.concatenate(parts, axis=-1))
        delta = MLP((self.hidden, self.hidden), self.latent, act="mish", name="mlp")(x)
        delta = jnp.nan_to_num(delta, nan=0.0, posinf=ACT_CLAMP, neginf=-ACT_CLAMP)
        sq = jnp.sum(delta * delta, axis=-1, keepdims=True)
        norm = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)  # finite gradient at 0
        return delta * jnp.minimum(DELTA_MAX_NORM / (norm + DELTA_EPS), 1.0)


class Batch(NamedTuple):
    """`obs [B, T, *obs_shape]`, `actions [B, T, A]`, `rewards [B, T]`, `terminations [B, T]` or None."""

    obs: jax.Array
    actions: jax.Array
    rewards: jax.Array
    terminations: jax.Array | None = None


def _latent(state: State | jax.Array) -> jax.Array:
    return state["latent"] if isinstance(state, Mapping) else state


class TDMPC2:
    """Pure functions of the TD-MPC2 world model for one `TDMPC2Config`."""

    family = "tdmpc2"

    def __init__(self, config: TDMPC2Config) -> None:
        self.config = config
        h, lat, a = config.hidden_dim, config.latent_dim, config.action_dim
        self.modules: dict[str, nn.Module] = {
            "_encoder": Seq((h, h), lat),
            "_dynamics": Dynamics(h, lat, config.num_tasks, config.task_dim),
            "_reward_head": Seq((h,), 1),
            "_q_ensemble": QEnsemble(h, config.num_q_networks),
            "_policy": Seq((h,), a, out_act="tanh"),
        }

    # -- parameters ----------------------------------------------------------------------------
    def init(self, key: jax.Array) -> Params:
        """Fresh online parameters (float32 pytree; Q-ensemble leaves have leading axis K)."""
        cfg = self.config
        keys = dict(zip(self.modules, jax.random.split(key, len(self.modules)), strict=True))
        z, a = jnp.zeros((1, cfg.latent_dim)), jnp.zeros((1, cfg.action_dim))
        za = jnp.zeros((1, cfg.latent_dim + cfg.action_dim))
        inputs = {
            "_encoder": (jnp.zeros((1, cfg.obs_size)),),
            "_dynamics": (z, a),
            "_reward_head": (za,),
            "_q_ensemble": (za,),
            "_policy": (z,),
        }
        return {n: m.init(keys[n], *inputs[n])["params"] for n, m in self.modules.items()}

    def param_shapes(self) -> Params:
        """The online parameter tree as `ShapeDtypeStruct`s (no computation)."""
        return jax.eval_shape(self.init, jax.random.key(0))

    @staticmethod
    def init_target(params: Params) -> Params:
        """A fresh copy of the online Q ensemble (the reference's `deepcopy`), own buffers."""
        return jax.tree.map(jnp.array, params["_q_ensemble"])

    def _apply(self, name: str, params: Params, *args: Any) -> jax.Array:
        return self.modules[name].apply({"params": params}, *args)

    # -- model functions -----------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> State:
        """SimNorm(zeros): `{"latent": [B, L]}`, 1/simnorm_dim everywhere."""
        z = jnp.zeros((batch_size, self.config.latent_dim), jnp.float32)
        return {"latent": simnorm(z, self.config.simnorm_dim)}

    def encode(self, params: Params, obs: jax.Array) -> State:
        """`obs [B, *obs_shape]` -> `{"latent": [B, L]}` (flatten, MLP, SimNorm)."""
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        return {"latent": simnorm(self._apply("_encoder", params["_encoder"], x), self.config.simnorm_dim)}

    def transition(
        self, params: Params, state: State | jax.Array, action: jax.Array, task_id: jax.Array | None = None
    ) -> State:
        """`z' = SimNorm(z + delta(z, a[, task]))`: state `[B, L]`, action `[B, A]`, task_id `[B]` int."""
        z = _latent(state)
        delta = self._apply("_dynamics", params["_dynamics"], z, action, task_id)
        return {"latent": simnorm(z + delta, self.config.simnorm_dim)}

    def policy(self, params: Params, state: State | jax.Array) -> jax.Array:
        """Deterministic policy prior `[B, L] -> [B, A]` in [-1, 1]."""
        return self._apply("_policy", params["_policy"], _latent(state))

    @property
    def _symlog(self) -> bool:
        return self.config.objective == "symlog"

    def _reward_head(self, params: Params, state: State | jax.Array, action: jax.Array) -> jax.Array:
        za = jnp.concatenate([_latent(state), action], axis=-1)
        return self._apply("_reward_head", params["_reward_head"], za)[..., 0]

    def _q_heads(self, q_params: Params, state: State | jax.Array, action: jax.Array) -> jax.Array:
        za = jnp.concatenate([_latent(state), action], axis=-1)
        return self._apply("_q_ensemble", q_params, za)[..., 0]

    def predict_reward(self, params: Params, state: State | jax.Array, action: jax.Array) -> jax.Array:
        """Reward at `(z [B, L], a [B, A])` -> `[B]` (symexp of the head for `objective="symlog"`)."""
        out = self._reward_head(params, state, action)
        return symexp(out) if self._symlog else out

    def predict_q(
        self, params: Params, state: State | jax.Array, action: jax.Array, q_params: Params | None = None
    ) -> jax.Array:
        """Q ensemble at `(z [B, L], a [B, A])` -> `[K, B]` in return units. `q_params` (e.g. the target)
        replaces `params["_q_ensemble"]` when given."""
        out = self._q_heads(params["_q_ensemble"] if q_params is None else q_params, state, action)
        return symexp(out) if self._symlog else out

    def decode(self, params: Params, state: State | jax.Array) -> dict[str, jax.Array]:
        """Predictions at `a = policy(z)`: `reward [B, 1]`, `continue` (ones) `[B, 1]`, `q_values [K, B, 1]`,
        `action [B, A]`."""
        z = _latent(state)
        action = self.policy(params, z)
        reward = self.predict_reward(params, z, action)[:, None]
        return {
            "reward": reward,
            "continue": jnp.ones_like(reward),
            "q_values": self.predict_q(params, z, action)[..., None],
            "action": action,
        }

    def rollout(
        self, params: Params, state: State | jax.Array, actions: jax.Array, task_id: jax.Array | None = None
    ) -> tuple[State, jax.Array, jax.Array]:
        """Open-loop latent rollout with `actions [T, B, A]` (`lax.scan`).

        Returns states `{"latent": [T, B, L]}` (after each action; the start state is not repeated),
        rewards `[T, B]` (as the reference's decode of each new state: reward head at `policy(z_{t+1})`)
        and continues (ones) `[T, B]`.
        """

        def step(z: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
            nxt = self.transition(params, z, action, task_id)["latent"]
            return nxt, nxt

        _, latents = jax.lax.scan(step, _latent(state), actions)
        t, b = latents.shape[:2]
        flat = latents.reshape(t * b, -1)
        rewards = self.predict_reward(params, flat, self.policy(params, flat)).reshape(t, b)
        return {"latent": latents}, rewards, jnp.ones_like(rewards)

    def loss(
        self, params: Params, target_params: Params, batch: Batch, key: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The reference loss. Returns `(total, {consistency, reward, td, policy})`.

        All T observations are encoded at once; for t = 0..T-2 (uniform weight 1/(T-1)): single-step
        consistency MSE of `transition(z_t, a_t)` to `sg(z_{t+1})`; reward MSE of `r(z_t, a_t)` to
        `rewards[:, t+1]`; TD MSE of the ensemble-mean `Q(z_t, a_t)` to
        `sg(rewards[:, t+1] + gamma * (1 - term[:, t+1]) * min_k Qtarget_k(z_{t+1}, pi(z_{t+1})))`;
        policy `-mean(min_k Q_k(sg(z_t), pi(sg(z_t))))` with the online Q (not frozen). `key` is unused.

        With `config.objective == "symlog"` the reward and TD terms compare the heads' outputs with
        `symlog` of those targets (the target's Q is `symexp` of the target heads), every Q head regresses
        the TD target (not only their mean), and the policy term uses the stop-gradient Q heads' outputs
        (symlog units), so that no term grows with the return's scale.
        """
        del key
        cfg = self.config
        b, t = batch.obs.shape[:2]
        if t < 2:
            zero = jnp.zeros((), jnp.float32)
            return zero, dict.fromkeys(LOSS_KEYS, zero)
        sg = jax.lax.stop_gradient
        z_all = self.encode(params, batch.obs.reshape(b * t, -1))["latent"].reshape(b, t, -1)
        n = b * (t - 1)
        z = z_all[:, :-1].reshape(n, -1)
        z_next = sg(z_all[:, 1:].reshape(n, -1))
        actions = batch.actions[:, :-1].reshape(n, -1)
        rewards = batch.rewards[:, 1:].reshape(n)

        # The "symlog" objective regresses the heads onto symlog targets (`space`) and lets the policy climb
        # the frozen Q heads; "reference" regresses raw values and differentiates the policy term into Q too.
        space = symlog if self._symlog else (lambda x: x)
        consistency = jnp.mean((self.transition(params, z, actions)["latent"] - z_next) ** 2)
        reward = jnp.mean((self._reward_head(params, z, actions) - space(rewards)) ** 2)

        if batch.terminations is None:
            mask = jnp.ones_like(rewards)
        else:
            mask = 1.0 - batch.terminations[:, 1:].reshape(n)
        q_next = self.predict_q(params, z_next, self.policy(params, z_next), target_params).min(axis=0)
        td_target = sg(space(rewards + cfg.gamma * mask * q_next))
        q_heads = self._q_heads(params["_q_ensemble"], z, actions)  # [K, n]
        if self._symlog:  # every head regresses the target (as official TD-MPC2), so min_k stays meaningful
            td = jnp.mean((q_heads - td_target[None]) ** 2)
        else:
            td = jnp.mean((q_heads.mean(axis=0) - td_target) ** 2)

        z_sg = sg(z)
        q_policy = sg(params["_q_ensemble"]) if self._symlog else params["_q_ensemble"]
        policy = -jnp.mean(self._q_heads(q_policy, z_sg, self.policy(params, z_sg)).min(axis=0))

        components = {"consistency": consistency, "reward": reward, "td": td, "policy": policy}
        total = (
            cfg.consistency_loss_coef * consistency
            + cfg.reward_loss_coef * reward
            + cfg.td_loss_coef * td
            + cfg.policy_loss_coef * policy
        )
        return total, components

    # -- training adapters ---------------------------------------------------------------------
    def train_loss(
        self, params: Params, extras: Params, batch: Batch, key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """`make_train_step`'s loss signature; `extras` is the target Q ensemble."""
        return self.loss(params, extras, batch, key)

    def target_update(self, state: TrainState) -> TrainState:
        """`post_update` for `make_train_step`: target = (1 - tau) * target + tau * online."""
        tau = self.config.target_q_tau
        target = jax.tree.map(
            lambda old, new: (1.0 - tau) * old + tau * new, state.extras, state.params["_q_ensemble"]
        )
        return state.replace(extras=target)

    # -- model-family interface (worldflux_jax.family) ------------------------------------------
    def init_extras(self, params: Params) -> Params:
        """The target Q ensemble: a copy of the online one."""
        return self.init_target(params)

    def post_update(self, state: TrainState, components: Any = None) -> TrainState:
        """The target EMA (`target_update`); the loss components are not needed."""
        del components
        return self.target_update(state)

    def reference_loss(self, params: Params, extras: Params, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The deterministic loss of the parity fixtures (TD-MPC2's loss draws no randomness)."""
        return self.loss(params, extras, batch)

    def make_batch(self, obs: Any, actions: Any, rewards: Any, terminations: Any = None) -> Batch:
        """Raw arrays -> `Batch` (float32 obs, one-hot integer actions; terminations may be None)."""
        terminations = None if terminations is None else jnp.asarray(terminations, jnp.float32)
        return Batch(
            float_obs(obs),
            one_hot_actions(actions, self.config.action_dim),
            jnp.asarray(rewards, jnp.float32),
            terminations,
        )

    def torch_state_dict(self, params: Params, extras: Params | None = None) -> dict[str, np.ndarray]:
        """The reference `state_dict()` with `extras` as the target ensemble."""
        return self.to_torch_state_dict(params, extras)

    def make_train_state(self, key_or_params: jax.Array | Params, optimizer: Any) -> TrainState:
        """A `TrainState` from a PRNG key (fresh init) or from params; extras = a copy of the online Q."""
        params = jax.jit(self.init)(key_or_params) if isinstance(key_or_params, jax.Array) else key_or_params
        return create_train_state(params, optimizer, extras=self.init_target(params))

    def planning_model(self) -> Any:
        """`PlanningModel(step, value, policy)` for `worldflux_jax.planners`.

        `step` = (transition(z, a), reward_head(z, a)); `value` = ensemble MEAN of `Q(z, pi(z))` (as
        official TD-MPC2's planner averages Q heads; the loss's min is for conservative targets);
        `policy` = the deterministic policy prior (the key is unused).
        """
        from worldflux_jax.planners.base import PlanningModel

        def step(params: Params, state: State, action: jax.Array) -> tuple[State, jax.Array]:
            return self.transition(params, state, action), self.predict_reward(params, state, action)

        def value(params: Params, state: State) -> jax.Array:
            return self.predict_q(params, state, self.policy(params, state)).mean(axis=0)

        def policy(params: Params, state: State, key: jax.Array) -> jax.Array:
            del key
            return self.policy(params, state)

        return PlanningModel(step=step, value=value, policy=policy)

    # -- torch layout --------------------------------------------------------------------------
    def parameter_names(self) -> list[str]:
        """The reference's `named_parameters()` names, in order (trainable tensors, once each)."""
        return list(_flat_torch(self.param_shapes(), (), names_only=True))

    def named_parameters(self, params: Params) -> dict[str, np.ndarray]:
        """Trainable tensors under the reference's `named_parameters()` names (once each, torch layout)."""
        return _flat_torch(params, ())

    def to_torch_state_dict(
        self, params: Params, target_params: Params | None = None
    ) -> dict[str, np.ndarray]:
        """The reference `state_dict()`: every trainable tensor under both its name and its alias, the
        target ensemble (`_target_q_ensemble.*`, default a copy of the online Q) and `_device_tracker`."""
        target = params["_q_ensemble"] if target_params is None else target_params
        online = _flat_torch(params, ())
        state = {"_device_tracker": np.zeros((0,), np.float32), **online}
        state.update(_flat_torch(target, (_TARGET,)))
        state.update({_alias(k): np.array(v, copy=True) for k, v in online.items()})
        return state

    def from_torch_state_dict(self, state_dict: Mapping[str, Any]) -> tuple[Params, Params]:
        """`(params, target_params)` from a reference state dict holding the canonical names, the aliases
        or both (both must then be equal). Without `_target_q_ensemble.*` the target copies the online Q."""
        sd = {k: tl._to_numpy(v) for k, v in state_dict.items()}
        shapes = self.param_shapes()
        online_names = list(_flat_torch(shapes, (), names_only=True))
        canonical: dict[str, np.ndarray] = {}
        problems: list[str] = []
        for name in online_names:
            alias = _alias(name)
            if name in sd and alias in sd:
                if sd[name].shape != sd[alias].shape or not np.array_equal(sd[name], sd[alias]):
                    problems.append(f"{name} and its alias {alias} hold different values")
                canonical[name] = sd[name]
            elif name in sd or alias in sd:
                canonical[name] = sd[name] if name in sd else sd[alias]
        if problems:
            raise StateDictError("State dict is inconsistent: " + "; ".join(problems))
        target_names = list(_flat_torch(shapes["_q_ensemble"], (_TARGET,), names_only=True))
        has_target = any(k.startswith(_TARGET + ".") for k in sd)
        known = set(online_names) | {_alias(n) for n in online_names} | set(target_names) | set(_BUFFERS)
        unexpected = sorted(set(sd) - known)
        if unexpected:
            raise StateDictError(f"State dict does not match the model: unexpected keys {unexpected}")
        params = _unflat_torch(shapes, (), canonical)
        if not has_target:
            return params, self.init_target(params)
        return params, _unflat_torch(shapes["_q_ensemble"], (_TARGET,), sd)


def _alias(name: str) -> str:
    """Canonical torch name -> the reference's alias name (`q_networks.{k}.*` for the Q ensemble)."""
    for canonical, alias in _ALIASES:
        if name.startswith(canonical):
            return alias + name[len(canonical):]
    if name.startswith("_q_ensemble.q_networks."):
        k, rest = name[len("_q_ensemble.q_networks."):].split(".", 1)
        return f"q_networks.{k}.{rest.removeprefix('mlp.')}"
    raise KeyError(name)


def _leaf_entries(keys: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """`(torch name, keys for the layout transform)` of a Flax leaf; one per network for a Q stack."""
    if keys[-1] == "embedding":  # nn.Embed's table is torch's nn.Embedding weight, same layout
        return [(".".join(keys[:-1]) + ".weight", keys)]
    return [(tl.torch_name(keys), keys)]


def _expand(keys: tuple[str, ...], shape: tuple[int, ...]) -> list[tuple[str, tuple[str, ...], int | None]]:
    if "q_networks" not in keys:
        return [(*_leaf_entries(keys)[0], None)]
    i = keys.index("q_networks") + 1
    return [(*_leaf_entries((*keys[:i], str(j), *keys[i:]))[0], j) for j in range(shape[0])]


def _flat_torch(tree: Params, prefix: tuple[str, ...], names_only: bool = False) -> dict[str, Any]:
    """Flax tree -> `{torch name: torch-layout array}` (Q stacks unstacked); values None if `names_only`."""
    out: dict[str, Any] = {}
    for path, value in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = (*prefix, *tl._path_keys(path))
        for name, leaf_keys, j in _expand(keys, tuple(value.shape)):
            if names_only:
                out[name] = None
            else:
                out[name] = tl.leaf_to_torch(leaf_keys, np.asarray(value if j is None else value[j]))
    return out


def _unflat_torch(template: Params, prefix: tuple[str, ...], sd: Mapping[str, np.ndarray]) -> Params:
    """Inverse of `_flat_torch` for a template of `ShapeDtypeStruct`s; raises on missing/mis-shaped keys."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out, problems = [], []
    for path, spec in leaves:
        keys = (*prefix, *tl._path_keys(path))
        entries = _expand(keys, tuple(spec.shape))
        stacked = entries[0][2] is not None
        parts = []
        for name, leaf_keys, _ in entries:
            one = np.zeros(spec.shape[1:] if stacked else spec.shape, np.float32)
            want = tl.leaf_to_torch(leaf_keys, one).shape
            if name not in sd:
                problems.append(f"missing key {name}")
            elif tuple(sd[name].shape) != tuple(want):
                problems.append(f"{name}: expected shape {tuple(want)}, got {tuple(sd[name].shape)}")
            else:
                parts.append(tl.leaf_from_torch(leaf_keys, sd[name]))
        if len(parts) == len(entries):
            out.append(jnp.asarray(np.stack(parts) if stacked else parts[0], jnp.float32))
    if problems:
        raise StateDictError("State dict does not match the model: " + "; ".join(problems))
    return jax.tree_util.tree_unflatten(treedef, out)
