"""The declared model-family interface that the step builder, the Trainer and the training script rely on.

A family (`worldflux_jax.dreamer.DreamerV3`, `worldflux_jax.tdmpc2.TDMPC2`, and the experimental
`jepa.JEPA`, `jepa.VJEPA2`, `token_model.TokenModel`, `diffusion.Diffusion`) is an object of pure functions
for one config. Nothing outside it branches on which family it is:

| member | meaning |
|---|---|
| `name` (`family`) | registry name, `"dreamer"` / `"tdmpc2"` |
| `config` | the family's `WorldModelConfig` |
| `init(key) -> params` | fresh float32 parameters |
| `init_extras(params) -> extras` | non-trained state carried by the step (TD-MPC2's target Q; None) |
| `train_loss(params, extras, batch, key) -> (total, components)` | the training objective |
| `post_update(state, components) -> state` | after an applied update, inside the step (target EMAs) |
| `make_batch(obs, actions, rewards, terminations) -> Batch` | raw arrays -> the family's batch (jit-safe) |
| `planning_model() -> PlanningModel` | the view planners use |
| `torch_state_dict(params, extras) -> {name: ndarray}` | the reference torch `state_dict` names/layouts |
| optional `optimizer_groups(config, params) -> (labels, rates)` | per-group learning rates (see `optim`) |
| optional `reference_loss(params, extras, batch) -> (total, components)` | the parity fixtures' loss |

`make_batch` takes `obs [B, T, *obs_shape]` (any float or uint8 dtype, converted to float32 on the device),
`actions [B, T, A]` or integer class indices `[B, T]` (one-hot encoded to `A = config.action_dim`),
`rewards [B, T]` and `terminations [B, T]` or None.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from worldflux_jax.errors import ConfigurationError

REQUIRED = ("init", "init_extras", "train_loss", "post_update", "make_batch", "planning_model", "torch_state_dict")


@runtime_checkable
class ModelFamily(Protocol):
    family: str
    config: Any

    def init(self, key: jax.Array) -> Any: ...

    def init_extras(self, params: Any) -> Any: ...

    def train_loss(self, params: Any, extras: Any, batch: Any, key: jax.Array) -> tuple[jax.Array, dict[str, Any]]: ...

    def post_update(self, state: Any, components: dict[str, Any]) -> Any: ...

    def make_batch(self, obs: Any, actions: Any, rewards: Any, terminations: Any = None) -> Any: ...

    def planning_model(self) -> Any: ...

    def torch_state_dict(self, params: Any, extras: Any = None) -> dict[str, Any]: ...


def as_family(core: Any) -> ModelFamily:
    """`core` if it implements the family interface, else `ConfigurationError` naming what is missing."""
    missing = [name for name in REQUIRED if not callable(getattr(core, name, None))]
    if missing or not isinstance(getattr(core, "family", None), str):
        raise ConfigurationError(
            f"{type(core).__name__} does not implement the worldflux_jax model-family interface "
            f"(missing: {missing or ['family']}); see worldflux_jax.family"
        )
    return core


def float_obs(obs: Any) -> jax.Array:
    """Observations as float32 on the device (uint8 storage is converted here, not on the host)."""
    return jnp.asarray(obs).astype(jnp.float32)


def one_hot_actions(actions: Any, action_dim: int) -> jax.Array:
    """`[B, T]` integer class indices -> `[B, T, action_dim]` float32 one-hot; float actions as float32."""
    actions = jnp.asarray(actions)
    if actions.ndim == 2 and jnp.issubdtype(actions.dtype, jnp.integer):
        return jax.nn.one_hot(actions, int(action_dim), dtype=jnp.float32)
    return actions.astype(jnp.float32)


def step_actions(action: Any, batch: int, action_dim: int) -> jax.Array:
    """One step's float32 actions `[B, A]`: zeros when None, one-hot for `[B]` integer class indices."""
    if action is None:
        return jnp.zeros((batch, int(action_dim)), jnp.float32)
    action = jnp.asarray(action)
    if jnp.issubdtype(action.dtype, jnp.integer):
        return jax.nn.one_hot(action, int(action_dim), dtype=jnp.float32)
    return action.astype(jnp.float32)


def _registry() -> dict[str, tuple[type, type]]:
    from worldflux_jax import experimental_config as xc
    from worldflux_jax.config import DreamerV3Config, TDMPC2Config
    from worldflux_jax.diffusion import Diffusion
    from worldflux_jax.dreamer import DreamerV3
    from worldflux_jax.jepa import JEPA, VJEPA2
    from worldflux_jax.tdmpc2 import TDMPC2
    from worldflux_jax.token_model import TokenModel

    # Subclasses before their bases: `family_for` takes the first isinstance match.
    return {
        "dreamer": (DreamerV3Config, DreamerV3),
        "tdmpc2": (TDMPC2Config, TDMPC2),
        "vjepa2": (xc.VJEPA2Config, VJEPA2),
        "jepa": (xc.JEPABaseConfig, JEPA),
        "token": (xc.TokenWorldModelConfig, TokenModel),
        "diffusion": (xc.DiffusionWorldModelConfig, Diffusion),
    }


FAMILY_ALIASES = {
    "dreamerv3": "dreamer",
    "dreamer": "dreamer",
    "tdmpc2": "tdmpc2",
    "tdmpc": "tdmpc2",
    "jepa": "jepa",
    "vjepa2": "vjepa2",
    "token": "token",
    "diffusion": "diffusion",
}


def config_from_id(model_id: str, **overrides: Any) -> Any:
    """The core config of a `"family:size"` id (`"dreamerv3:size12m"`, `"tdmpc2:5m"`); `overrides` set fields."""
    if not isinstance(model_id, str) or ":" not in model_id:
        raise ConfigurationError(f"model id must look like 'dreamerv3:size12m' or 'tdmpc2:5m', got {model_id!r}")
    name, size = model_id.split(":", 1)
    key = FAMILY_ALIASES.get(name.lower())
    if key is None:
        raise ConfigurationError(f"unknown model family {name!r} in {model_id!r}; known: {sorted(FAMILY_ALIASES)}")
    config_cls, _ = _registry()[key]
    try:
        return config_cls.from_size(size, **overrides)
    except ValueError as exc:
        raise ConfigurationError(f"{model_id!r}: {exc}") from exc


def family_for(config: Any) -> ModelFamily:
    """The family object of a core config (`DreamerV3Config` -> `DreamerV3(config)`)."""
    for config_cls, family_cls in _registry().values():
        if isinstance(config, config_cls):
            return as_family(family_cls(config))
    raise ConfigurationError(f"no model family is registered for {type(config).__name__}")
