"""``DreamerV3WorldModel``: the reference DreamerV3 API (reference §4.3) over ``worldflux_jax.dreamer``.

Shapes: B batch, T time, A action_dim, D x K = stoch_discrete x stoch_classes.

* ``encode(obs [B, *obs_shape])`` -> State ``deter [B, deter_dim]``, ``stoch [B, D, K]`` (one-hot draws),
  ``logits``, ``prior_logits``, ``posterior_logits`` ``[B, D, K]``: a posterior step from the initial state
  with a zero action (``deterministic`` is ignored, as in the reference).
* ``transition(state, action [B, A] | None)`` -> prior State ``deter``, ``stoch``, ``logits``,
  ``prior_logits``; ``deterministic=True`` takes the argmax class.
* ``update(state, action, obs)`` -> posterior State (keys as ``encode``).
* ``decode(state)`` -> ``ModelOutput.predictions``: ``obs [B, *obs_shape]`` (raw decoder output: symlog space
  for the MLP decoder), ``reward [B, 1]`` (symexp of the two-hot expected value), ``continue [B, 1]`` (a
  logit, not a probability).
* ``rollout(state, actions [T, B, A])`` -> ``Trajectory`` (T + 1 states, rewards and continue logits ``[T, B]``).
* ``loss(Batch(obs [B, T, ...], actions [B, T, A], rewards [B, T], terminations [B, T]))`` -> ``LossOutput``
  with components ``kl_dynamics``, ``kl_representation``, ``kl``, ``reconstruction``, ``reward``, ``continue``.

Stochastic draws (posterior samples, non-deterministic prior samples, the loss's filter) follow
``model.sampling``: ``"sample"`` (Gumbel, keys from the model's key stream ``_next_key()``), ``"mode"``
(straight-through mode; reproduces the reference parity fixtures) or ``"argmax"``. Discrete actions may be
given as one-hot vectors or as integer class indices (one-hot encoded inside the jitted function).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from worldflux.core.batch import Batch
from worldflux.core.contracts import dreamer_io_contract
from worldflux.core.jax_model import JaxWorldModel, _key_from_data, loss_scalars
from worldflux.core.output import LossOutput
from worldflux.core.spec import Capability, ModelIOContract
from worldflux.models.registry import register_model, register_pretrained_loader
from worldflux_jax import actor_critic as ac
from worldflux_jax.config import DreamerV3Config as CoreDreamerV3Config
from worldflux_jax.dreamer import LOSS_KEYS, DreamerV3
from worldflux_jax.dreamer import Batch as CoreBatch
from worldflux_jax.torch_layout import torch_name

__all__ = ["DreamerV3WorldModel"]

# Non-trainable tensors of the reference state dict (rebuilt from the config, optional when loading).
_BUFFERS = ("reward_head.bins", "_device_tracker")


def _actions(action: jax.Array | None, batch: int, config: Any) -> jax.Array:
    """Float32 actions ``[..., A]``: zeros when None, one-hot for integer class indices."""
    if action is None:
        return jnp.zeros((batch, config.action_dim), jnp.float32)
    if jnp.issubdtype(action.dtype, jnp.integer):
        return jax.nn.one_hot(action, config.action_dim, dtype=jnp.float32)
    return action.astype(jnp.float32)


@register_model("dreamer")
class DreamerV3WorldModel(JaxWorldModel):
    """DreamerV3 world model (RSSM with categorical latents) with the reference WorldFlux API.

    Args:
        config: a ``DreamerV3Config``.
        seed: seeds parameter initialization and the sampling key stream (None: drawn from torch's RNG).
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        api_version: ``"v3"`` or ``"v0.2"``; None leaves the model at the reference default for models built
            directly (v0.2 behaviour).

    Example:
        >>> model = DreamerV3WorldModel(DreamerV3Config.from_size("ci", obs_shape=(8,), action_dim=2))
        >>> state = model.encode(torch.zeros(4, 8))
        >>> model.transition(state, torch.zeros(4, 2)).tensors["deter"].shape
        torch.Size([4, 64])
    """

    model_type = "dreamer"
    _KEY_ORDER = {
        "state": ("deter", "stoch", "logits", "prior_logits", "posterior_logits"),
        "predictions": ("obs", "reward", "continue"),
        "loss": LOSS_KEYS,
    }

    # -- hooks ----------------------------------------------------------------------------------------
    @classmethod
    def config_class(cls) -> type[Any]:
        from worldflux.core.config import DreamerV3Config

        return DreamerV3Config

    def _check_config(self, config: Any) -> None:
        if not isinstance(config, CoreDreamerV3Config):
            raise TypeError(f"DreamerV3WorldModel needs a DreamerV3Config, got {type(config).__name__}")

    def _make_core(self, config: Any) -> DreamerV3:
        return DreamerV3(config)

    @staticmethod
    def _init_arrays(core: DreamerV3, seed: jax.Array) -> tuple[Any, Any]:
        params = core.init(jax.random.key(seed))
        return params, (ac.ac_extras(params) if core.config.actor_critic else None)

    def _capabilities(self, config: Any) -> set[Capability]:
        caps = {
            Capability.LATENT_DYNAMICS,
            Capability.OBS_DECODER,
            Capability.REPRESENTATION,
            Capability.REWARD_PRED,
            Capability.CONTINUE_PRED,
        }
        return caps | {Capability.POLICY, Capability.VALUE} if config.actor_critic else caps

    def _composable(self, config: Any) -> set[str]:
        parts = {"observation_encoder", "action_conditioner", "dynamics_model", "decoder", "rollout_executor"}
        return parts | {"actor", "critic"} if config.actor_critic else parts

    @classmethod
    def contract_for_config(cls, config: Any) -> ModelIOContract:
        """The reference DreamerV3 contract, from config values only."""
        return dreamer_io_contract(
            obs_shape=config.obs_shape,
            action_spec=config.action_spec,
            deter_dim=config.deter_dim,
            stoch_discrete=config.stoch_discrete,
            stoch_classes=config.stoch_classes,
            encoder_type=config.encoder_type,
        )

    @property
    def _state_meta(self) -> dict[str, Any]:
        return {"latent_type": "categorical"}

    def _state_dict_arrays(self) -> dict[str, np.ndarray]:
        return self.core.to_torch_state_dict(self.params, self.extras)

    def _state_dict_keys(self) -> tuple[list[str], list[str]]:
        leaves = jax.tree_util.tree_flatten_with_path(self._param_shapes())[0]
        names = [torch_name(tuple(str(getattr(p, "key", p)) for p in path)) for path, _ in leaves]
        optional = list(_BUFFERS)
        if self.config.actor_critic:
            # The slow critic and the normaliser buffers: a state dict without them starts them fresh.
            prefix = ac.CRITIC + "."
            optional += [ac.SLOW_CRITIC + n[len(ac.CRITIC) :] for n in names if n.startswith(prefix)]
            optional += list(ac.RETURN_BUFFERS)
        return names, optional

    def _params_from_state_dict(self, state_dict: Mapping[str, np.ndarray]) -> tuple[Any, Any]:
        params = self.core.from_torch_state_dict(state_dict)
        return params, self.core.extras_from_torch_state_dict(state_dict, params)

    # -- jitted array steps (the jitted functions are the module-level `_*` functions of the core) ----------
    def _draw(self, deterministic: bool = False) -> str:
        return "argmax" if deterministic else self.sampling

    def _encode(self, obs: jax.Array, deterministic: bool) -> Mapping[str, jax.Array]:
        del deterministic  # the reference's encode ignores it
        return self._jit("encode", _encode, sampling=self._draw())(self.params, obs, self._next_key())

    def _transition(
        self, state: Mapping[str, jax.Array], action: jax.Array | None, deterministic: bool
    ) -> Mapping[str, jax.Array]:
        fn = self._jit("transition", _transition, sampling=self._draw(deterministic))
        return fn(self.params, dict(state), action, self._next_key())

    def _update(
        self, state: Mapping[str, jax.Array], action: jax.Array | None, obs: jax.Array
    ) -> Mapping[str, jax.Array]:
        fn = self._jit("update", _update, sampling=self._draw())
        return fn(self.params, dict(state), action, obs, self._next_key())

    def _decode(self, state: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return self._jit("decode", DreamerV3.decode)(self.params, dict(state))

    def _rollout(
        self, state: Mapping[str, jax.Array], actions: jax.Array, deterministic: bool
    ) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
        fn = self._jit("rollout", _rollout, sampling=self._draw(deterministic))
        return fn(self.params, dict(state), actions, self._next_key())

    def loss(self, batch: Batch) -> LossOutput:
        """The reference world-model loss (reference §4.3).

        Args:
            batch: a ``Batch`` (or dict of its fields) with ``obs [B, T, *obs_shape]`` (a dict: its "obs"),
                ``actions [B, T, A]``, ``rewards [B, T]`` and ``terminations [B, T]``.

        Returns:
            ``LossOutput(loss, components, metrics)``: ``loss`` = 1.0 reconstruction + 0.5 kl_dynamics +
            0.1 kl_representation + 1.0 reward + 1.0 continue (``config.loss_scales``); ``components`` keyed
            ``kl_dynamics``, ``kl_representation``, ``kl``, ``reconstruction``, ``reward``, ``continue``
            (scalars in the batch's array kind); ``metrics`` the same values as Python floats (one
            device-to-host transfer). Values only: to train, use the jitted train step of ``worldflux.training``
            / ``worldflux_jax.train`` (``core.train_loss``), which differentiates the same function.

        Raises:
            ValueError: a required field is missing.
            ShapeMismatchError: a field has the wrong shape.
        """
        arrays, kind = self._batch_in(batch, ("obs", "actions", "rewards", "terminations"))
        jitted = self._jit("loss", _loss, sampling=self._draw())
        total, components, scalars = jitted(self.params, arrays, self._next_key(), self.extras)
        return self._loss_output(total, components, scalars, kind)

    def core_batch(self, arrays: Mapping[str, jax.Array]) -> CoreBatch:
        """The core's ``Batch`` (float32 arrays, one-hot actions) from ``{"obs", "actions", "rewards",
        "terminations"}`` JAX arrays; jit-friendly (used by the loss and by trainers)."""
        return core_batch(self.core, arrays)


def _encode(core: DreamerV3, params: Any, obs: jax.Array, key: jax.Array, *, sampling: str) -> dict[str, jax.Array]:
    return core.encode(params, obs.astype(jnp.float32), _key_from_data(key), sampling)


def _transition(
    core: DreamerV3, params: Any, state: dict, action: jax.Array | None, key: jax.Array, *, sampling: str
) -> dict[str, jax.Array]:
    a = _actions(action, state["deter"].shape[0], core.config)
    return core.transition(params, state, a, _key_from_data(key), sampling)


def _update(
    core: DreamerV3,
    params: Any,
    state: dict,
    action: jax.Array | None,
    obs: jax.Array,
    key: jax.Array,
    *,
    sampling: str,
) -> dict[str, jax.Array]:
    a = _actions(action, state["deter"].shape[0], core.config)
    return core.update(params, state, a, obs.astype(jnp.float32), _key_from_data(key), sampling)


def _rollout(
    core: DreamerV3, params: Any, state: dict, actions: jax.Array, key: jax.Array, *, sampling: str
) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    a = _actions(actions, state["deter"].shape[0], core.config)
    return core.rollout(params, state, a, _key_from_data(key), sampling)


def _loss(
    core: DreamerV3, params: Any, arrays: dict, key: jax.Array, extras: Any = None, *, sampling: str
) -> tuple[jax.Array, Mapping[str, jax.Array], jax.Array]:
    batch = core_batch(core, arrays)
    return loss_scalars(*core.loss(params, batch, _key_from_data(key), sampling, extras))


def core_batch(core: DreamerV3, arrays: Mapping[str, jax.Array]) -> CoreBatch:
    """The core's ``Batch`` (float32, one-hot actions) from ``{"obs", "actions", "rewards", "terminations"}``."""
    obs = arrays["obs"]
    return CoreBatch(
        obs.astype(jnp.float32),
        _actions(arrays["actions"], obs.shape[0], core.config),
        arrays["rewards"].astype(jnp.float32),
        arrays["terminations"].astype(jnp.float32),
    )


@register_pretrained_loader("dreamer")
def load_dreamer(path: str, *, device: Any = None) -> DreamerV3WorldModel:
    """Registry loader: ``DreamerV3WorldModel.from_pretrained(path)``, moved to `device` when given."""
    model = DreamerV3WorldModel.from_pretrained(path)
    return model if device is None else model.to(device)  # type: ignore[return-value]
