"""The experimental families of the reference: ``JEPABaseWorldModel``, ``VJEPA2WorldModel``, ``TokenWorldModel``
and ``DiffusionWorldModel``, thin shells over the pure-JAX cores of ``worldflux_jax`` (``jepa``,
``token_model``, ``diffusion``; see each module's docstring for the architecture and the loss).

Shapes: B batch, T time, A action_dim. Every method takes torch tensors (or numpy / JAX arrays) and answers
in the same kind.

* ``encode(obs [B, *obs_shape])`` -> State: JEPA / V-JEPA 2 ``latent [B, projection_dim]``; token
  ``tokens [B, N]`` (integer ids as floats); diffusion ``obs [B, *obs_shape]``.
* ``transition(state, action [B, A] | None, deterministic=False)`` -> the next State (token and diffusion
  sample from the model's key stream; ``deterministic=True`` takes the argmax token / the noise-free
  sample). ``update(state, action, obs)`` = ``encode(obs)``.
* ``decode(state)`` -> predictions ``reward [B, 1]``, ``continue`` (ones) ``[B, 1]`` and, for token and
  diffusion, ``obs [B, *obs_shape]``.
* ``rollout(state, actions [T, B, A])`` -> ``Trajectory`` (rewards ``[T, B]``, continues ones).
* ``loss(Batch(obs [B, T, ...], actions [B, T, A], rewards [B, T]))`` -> ``LossOutput`` with the family's
  components (JEPA ``prediction``, ``reward``; V-JEPA 2 ``prediction``, ``mask``, ``reward``; token
  ``token``, ``reward``; diffusion ``denoise``, ``reward``).
* JEPA / V-JEPA 2 keep an EMA target encoder in ``extras``; ``on_after_optimizer_step()`` (and the Trainer's
  compiled step) moves it toward the online encoder.

``Trainer``, ``save_pretrained`` / ``from_pretrained`` and the planners work as for the reference families.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax

from worldflux.core.batch import Batch
from worldflux.core.contracts import family_io_contract
from worldflux.core.jax_model import JaxWorldModel, _key_from_data, _key_order, loss_scalars
from worldflux.core.output import LossOutput
from worldflux.core.spec import Capability, ModelIOContract
from worldflux.models.registry import register_model, register_pretrained_loader
from worldflux_jax import experimental_config as xc
from worldflux_jax.diffusion import Diffusion
from worldflux_jax.family import step_actions
from worldflux_jax.family_base import ExperimentalFamily
from worldflux_jax.jepa import JEPA, VJEPA2
from worldflux_jax.token_model import TokenModel

__all__ = ["DiffusionWorldModel", "ExperimentalWorldModel", "JEPABaseWorldModel", "TokenWorldModel", "VJEPA2WorldModel"]


class ExperimentalWorldModel(JaxWorldModel):
    """A ``JaxWorldModel`` over a ``worldflux_jax.family_base.ExperimentalFamily`` core.

    Subclasses set ``model_type``, ``core_class``, ``core_config_class`` (the core config it accepts),
    ``config_name`` (the ``worldflux.core.config`` class that reads ``config.json``), ``capability_set`` and
    ``_KEY_ORDER``.
    """

    core_class: ClassVar[type[ExperimentalFamily]]
    core_config_class: ClassVar[type]
    config_name: ClassVar[str]
    capability_set: ClassVar[frozenset[Capability]] = frozenset()

    @classmethod
    def config_class(cls) -> type[Any]:
        from worldflux.core import config as user_config

        return getattr(user_config, cls.config_name)

    def _check_config(self, config: Any) -> None:
        if not isinstance(config, self.core_config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_name}, got {type(config).__name__}")

    def _make_core(self, config: Any) -> ExperimentalFamily:
        return self.core_class(config)

    @staticmethod
    def _init_arrays(core: ExperimentalFamily, seed: jax.Array) -> tuple[Any, Any]:
        params = core.init(jax.random.key(seed))
        return params, core.init_extras(params)

    def _capabilities(self, config: Any) -> set[Capability]:
        return set(self.capability_set)

    def _composable(self, config: Any) -> set[str]:
        return {"observation_encoder", "action_conditioner", "dynamics_model", "rollout_executor"}

    @classmethod
    def contract_for_config(cls, config: Any) -> ModelIOContract:
        """State and prediction shapes traced from the core (no parameters are created)."""
        core = cls.core_class(config)
        state = jax.eval_shape(lambda: core.initial_state(1))
        predictions = jax.eval_shape(core.decode, core.param_shapes(), state)
        return family_io_contract(
            obs_shape=config.obs_shape,
            action_spec=config.action_spec,
            state_shapes={k: state[k].shape[1:] for k in _key_order(cls._KEY_ORDER["state"], tuple(state))},
            prediction_shapes={
                k: predictions[k].shape[1:] for k in _key_order(cls._KEY_ORDER["predictions"], tuple(predictions))
            },
        )

    # -- state dicts ----------------------------------------------------------------------------------
    def _state_dict_arrays(self) -> dict[str, Any]:
        return self.core.torch_state_dict(self.params, self.extras)

    def _state_dict_keys(self) -> tuple[list[str], list[str]]:
        names = self.__dict__.get("_names_cache")
        if names is None:
            names = self.core.state_dict_names()
            self.__dict__["_names_cache"] = names
        target = self.core.target_prefix if self.core.target_module else None
        required = [n for n in names if target is None or not n.startswith(target)]
        return required, [n for n in names if n not in required]  # a missing target copies the online encoder

    def _params_from_state_dict(self, state_dict: Mapping[str, Any]) -> tuple[Any, Any]:
        return self.core.from_torch_state_dict(state_dict)

    # -- jitted array steps -----------------------------------------------------------------------------
    def _encode(self, obs: jax.Array, deterministic: bool) -> Mapping[str, jax.Array]:
        return self._jit("encode", _encode)(self.params, obs)

    def _transition(
        self, state: Mapping[str, jax.Array], action: jax.Array | None, deterministic: bool
    ) -> Mapping[str, jax.Array]:
        fn = self._jit("transition", _transition, deterministic=bool(deterministic))
        return fn(self.params, dict(state), action, self._next_key())

    def _update(
        self, state: Mapping[str, jax.Array], action: jax.Array | None, obs: jax.Array
    ) -> Mapping[str, jax.Array]:
        return self._encode(obs, False)

    def _decode(self, state: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return self._jit("decode", _decode)(self.params, dict(state))

    def _rollout(
        self, state: Mapping[str, jax.Array], actions: jax.Array, deterministic: bool
    ) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
        fn = self._jit("rollout", _rollout, deterministic=bool(deterministic))
        return fn(self.params, dict(state), actions, self._next_key())

    def loss(self, batch: Batch) -> LossOutput:
        """The family's training loss on ``Batch(obs [B, T, *obs_shape], actions [B, T, A], rewards [B, T])``.

        Returns:
            ``LossOutput`` with the total ``loss`` and the family's ``components`` in the batch's array kind,
            ``metrics`` as Python floats. Randomness (masks, diffusion noise) comes from the model's key stream.

        Raises:
            ValueError: a required field is missing.
            ShapeMismatchError: a field has the wrong shape.
        """
        arrays, kind = self._batch_in(batch, ("obs", "actions", "rewards"))
        total, components, scalars = self._jit("loss", _loss)(self.params, self.extras, arrays, self._next_key())
        return self._loss_output(total, components, scalars, kind)

    def on_after_optimizer_step(self) -> None:
        """EMA of the target encoder toward the online one (JEPA / V-JEPA 2; nothing for the others)."""
        if self.core.target_module is not None:
            self.extras = self._jit("target_ema", _target_ema)(self.extras, self.params)


def _encode(core: ExperimentalFamily, params: Any, obs: jax.Array) -> dict[str, jax.Array]:
    return core.encode(params, obs)


def _transition(
    core: ExperimentalFamily, params: Any, state: dict, action: jax.Array | None, key: jax.Array, *, deterministic: bool
) -> dict[str, jax.Array]:
    batch = next(iter(state.values())).shape[0]
    action = step_actions(action, batch, core.config.action_dim)
    return core.transition(params, state, action, _key_from_data(key), deterministic)


def _decode(core: ExperimentalFamily, params: Any, state: dict) -> dict[str, jax.Array]:
    return core.decode(params, state)


def _rollout(
    core: ExperimentalFamily, params: Any, state: dict, actions: jax.Array, key: jax.Array, *, deterministic: bool
) -> tuple[dict, jax.Array, jax.Array]:
    batch = next(iter(state.values())).shape[0]
    acts = step_actions(actions, batch, core.config.action_dim)
    return core.rollout(params, state, acts, _key_from_data(key), deterministic)


def _loss(core: ExperimentalFamily, params: Any, extras: Any, arrays: dict, key: jax.Array) -> Any:
    batch = core.make_batch(arrays["obs"], arrays["actions"], arrays["rewards"], arrays.get("terminations"))
    return loss_scalars(*core.loss(params, extras, batch, _key_from_data(key)))


def _target_ema(core: ExperimentalFamily, target: Any, params: Any) -> Any:
    return core.ema(target, params)


_LATENT = {"state": ("latent",), "predictions": ("reward", "continue")}


@register_model("jepa")
class JEPABaseWorldModel(ExperimentalWorldModel):
    """JEPA world model: transformer encoder, EMA target encoder, action-conditioned latent predictor and a
    reward head (``worldflux_jax.jepa``). Experimental.

    Example:
        >>> model = JEPABaseWorldModel(JEPABaseConfig.from_size("ci", obs_shape=(8,), action_dim=2))
        >>> model.encode(torch.zeros(4, 8)).tensors["latent"].shape
        torch.Size([4, 32])
    """

    model_type = "jepa"
    core_class = JEPA
    core_config_class = xc.JEPABaseConfig
    config_name = "JEPABaseConfig"
    capability_set = frozenset({Capability.REPRESENTATION, Capability.LATENT_DYNAMICS, Capability.REWARD_PRED})
    _KEY_ORDER = {**_LATENT, "loss": JEPA.loss_keys}

    @property
    def _state_meta(self) -> dict[str, Any]:
        return {"latent_type": "deterministic"}

    @property
    def target_params(self) -> Any:
        """The EMA target encoder's parameters (an alias of ``extras``)."""
        return self.extras


@register_model("vjepa2")
class VJEPA2WorldModel(JEPABaseWorldModel):
    """V-JEPA 2 world model: JEPA plus masked prediction over temporal windows (``mask_ratio`` of the tokens of
    ``temporal_window`` frames). Experimental."""

    model_type = "vjepa2"
    core_class = VJEPA2
    core_config_class = xc.VJEPA2Config
    config_name = "VJEPA2Config"
    capability_set = JEPABaseWorldModel.capability_set | {Capability.VIDEO_PRED}
    _KEY_ORDER = {**_LATENT, "loss": VJEPA2.loss_keys}


@register_model("token")
class TokenWorldModel(ExperimentalWorldModel):
    """Token world model: quantized observation tokens and a causal transformer predicting the next
    observation's tokens (``worldflux_jax.token_model``). Experimental."""

    model_type = "token"
    core_class = TokenModel
    core_config_class = xc.TokenWorldModelConfig
    config_name = "TokenWorldModelConfig"
    capability_set = frozenset(
        {Capability.TOKEN_MODEL, Capability.LATENT_DYNAMICS, Capability.OBS_DECODER, Capability.REWARD_PRED}
    )
    _KEY_ORDER = {"state": ("tokens",), "predictions": ("obs", "reward", "continue"), "loss": TokenModel.loss_keys}


@register_model("diffusion")
class DiffusionWorldModel(ExperimentalWorldModel):
    """Diffusion world model: a DDPM denoiser of the next observation given the current one and the action
    (``worldflux_jax.diffusion``). Experimental."""

    model_type = "diffusion"
    core_class = Diffusion
    core_config_class = xc.DiffusionWorldModelConfig
    config_name = "DiffusionWorldModelConfig"
    capability_set = frozenset({Capability.DIFFUSION, Capability.OBS_DECODER, Capability.REWARD_PRED})
    _KEY_ORDER = {"state": ("obs",), "predictions": ("obs", "reward", "continue"), "loss": Diffusion.loss_keys}


def _loader(cls: type[ExperimentalWorldModel]) -> Any:
    def load(path: str, *, device: Any = None) -> ExperimentalWorldModel:
        model = cls.from_pretrained(path)
        return model if device is None else model.to(device)  # type: ignore[return-value]

    load.__qualname__ = f"load_{cls.model_type}"
    return load


for _cls in (JEPABaseWorldModel, VJEPA2WorldModel, TokenWorldModel, DiffusionWorldModel):
    register_pretrained_loader(_cls.model_type)(_loader(_cls))
