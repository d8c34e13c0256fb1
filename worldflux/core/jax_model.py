"""``JaxWorldModel``: the JAX-backed implementation of the open ``WorldModel`` base class.

A ``JaxWorldModel`` holds

* ``config`` — the model's configuration dataclass,
* ``core`` — the pure-JAX model (``worldflux_jax.dreamer.DreamerV3`` / ``worldflux_jax.tdmpc2.TDMPC2``),
* ``params`` — the parameters, a JAX pytree; ``extras`` — further state the core needs (TD-MPC2's target
  Q ensemble; None for DreamerV3).

It is a ``torch.nn.Module`` (through ``WorldModel``) that registers no torch parameters or submodules:
``to`` / ``train`` / ``eval`` / ``parameters`` / ``state_dict`` / ``load_state_dict`` are its own (see their
docstrings). Every public method takes torch tensors, numpy arrays or JAX arrays and answers in the same
*array kind* (torch by default; see ``worldflux.interop``). Calls run through jitted functions created once
per method and flag combination and shared by all models of the same class and config (``_jit``): a second
call with the same shapes does not retrace, and a second model with the same config (``from_pretrained``,
another seed) compiles nothing again.

Checkpoints (``save_pretrained`` / ``from_pretrained``, inherited) use the reference layout: ``config.json``,
``model.pt`` (a torch ``state_dict`` in the reference names and layouts) and ``worldflux_meta.json``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import jax
import numpy as np
import torch
from torch import Tensor

from worldflux.interop import cpu_to_torch, infer_kind, to_kind, to_torch
from worldflux_jax.distributions import SAMPLINGS

from .exceptions import ShapeMismatchError
from .jax_io import JaxIOMixin, _key_order, loss_scalars
from .jax_runtime import _compiled_for, _torch_device, resolve_jax_device
from .jax_runtime import _key_from_data as _key_from_data  # imported from here by the model modules
from .model import _ROLLOUT_MODE_MESSAGE, WorldModel
from .output import ModelOutput
from .payloads import ActionPayload, ActionSequence, ConditionPayload, WorldModelInput, normalize_planned_action
from .spec import Capability, ModelIOContract, contract_fingerprint
from .state import State
from .trajectory import DeferredTrajectory, Trajectory

__all__ = ["JaxWorldModel", "loss_scalars", "resolve_jax_device"]

# Devices and the compile cache live in `jax_runtime`, the array boundary in `jax_io`; the names other modules
# import from here stay importable from here.

# ------------------------------------------------------------------------------------------------ model


class JaxWorldModel(JaxIOMixin, WorldModel):
    """A ``WorldModel`` whose parameters live in JAX and whose steps run as compiled JAX functions (the bundled
    DreamerV3 and TD-MPC2). Still a ``torch.nn.Module`` (the open base class), but it registers no torch
    parameters: ``parameters()`` / ``named_parameters()`` are read-only torch views of the JAX leaves and
    ``state_dict()`` / ``load_state_dict()`` speak the reference torch names and layouts.

    Subclasses set ``model_type`` and implement the hooks ``_make_core``, ``_init_arrays``,
    ``_state_dict_arrays``, ``_state_dict_keys``, ``_params_from_state_dict``, ``contract_for_config`` and
    the array-level steps ``_encode``, ``_transition``, ``_update``, ``_decode``, ``_rollout`` plus ``loss``.
    This class converts arrays, validates inputs against ``io_contract()``, and handles devices, the PRNG key
    stream, parameter views, state dicts and checkpoints.

    Attributes:
        config: the configuration dataclass.
        core: the pure-JAX model object.
        params: the parameter pytree (JAX arrays).
        extras: extra state of the core (TD-MPC2 target Q parameters), or None.
        capabilities: ``set[Capability]`` advertised by the model.
        sampling: how stochastic categorical latents are drawn — ``"sample"`` (Gumbel, the default),
            ``"mode"`` (straight-through mode, the parity fixtures' convention) or ``"argmax"``; see
            ``sampling_mode``. ``deterministic=True`` always means argmax.
    """

    # Order of the keys of returned dicts ("state", "predictions", "loss"): the reference's insertion order.
    _KEY_ORDER: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(
        self, config: Any, *, seed: int | None = None, device: Any = None, api_version: str | None = None
    ) -> None:
        """Build the model with freshly initialized parameters.

        Args:
            config: the model config (``DreamerV3Config`` / ``TDMPC2Config``).
            seed: seeds the parameter initialization and the sampling key stream. None draws one from
                torch's global RNG, so ``torch.manual_seed`` / ``worldflux.set_seed`` make models reproducible.
            device: where the parameters live (``"cpu"`` by default, ``"cuda"``...; see ``to``).
            api_version: ``"v3"`` or ``"v0.2"`` (the factory passes its own); None keeps the class default.
        """
        self._setup(config, seed, device)
        if api_version is not None:
            self._wf_api_version = api_version
        with jax.default_device(self._device):
            params, extras = self._jit("init", type(self)._init_arrays)(self._seed % 2**31)
        self.params = params
        self.extras = extras

    def _setup(self, config: Any, seed: int | None, device: Any) -> None:
        WorldModel.__init__(self)
        self._check_config(config)
        self.config = config
        self._compiled = _compiled_for(type(self), config, self._make_core)
        self.core = self._compiled.core
        self.capabilities: set[Capability] = set(self._capabilities(config))
        self.composable_support: set[str] = set(self._composable(config))
        self._device = resolve_jax_device(device if device is not None else "cpu")
        self._jit_cache = self._compiled.functions
        self._trace_counts = self._compiled.trace_counts
        self._key_lock = threading.Lock()
        self._sampling = "sample"
        self.training = True
        self.reseed(int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else int(seed))

    @classmethod
    def _from_state_dict(cls, config: Any, state_dict: Mapping[str, Any], *, device: Any = None) -> WorldModel:
        """A model loaded strictly from a reference state dict (no random initialization).

        Raises:
            CheckpointError: missing, unexpected or mis-shaped tensors.
        """
        model = cls.__new__(cls)
        model._setup(config, None, device)
        model.params = None
        model.extras = None
        model.load_state_dict(state_dict, strict=True)
        return model

    @classmethod
    @abstractmethod
    def config_class(cls) -> type[Any]:
        """The config class used to read ``config.json`` (the user-facing ``worldflux.core.config`` class when
        available, else the core's)."""

    # -- subclass hooks -------------------------------------------------------------------------------
    def _check_config(self, config: Any) -> None:  # noqa: B027 - optional hook
        """Raise ``TypeError`` if `config` is not this model's config class."""

    @abstractmethod
    def _make_core(self, config: Any) -> Any:
        """The pure-JAX model for `config`."""

    @staticmethod
    @abstractmethod
    def _init_arrays(core: Any, seed: jax.Array) -> tuple[Any, Any]:
        """``(params, extras)`` of `core` from an integer seed (traced; runs inside ``jax.jit``)."""

    def _capabilities(self, config: Any) -> set[Capability]:
        return set()

    def _composable(self, config: Any) -> set[str]:
        return set()

    @classmethod
    @abstractmethod
    def contract_for_config(cls, config: Any) -> ModelIOContract:
        """The I/O contract of a model built from `config` (config only: no parameters are created)."""

    @abstractmethod
    def _state_dict_arrays(self) -> dict[str, np.ndarray]:
        """The reference ``state_dict`` as numpy arrays (torch names and layouts, buffers included)."""

    @abstractmethod
    def _state_dict_keys(self) -> tuple[list[str], list[str]]:
        """``(required keys, optional keys)`` of the reference ``state_dict`` (optional: buffers)."""

    @abstractmethod
    def _params_from_state_dict(self, state_dict: Mapping[str, np.ndarray]) -> tuple[Any, Any]:
        """``(params, extras)`` from a complete reference state dict (raises ``StateDictError``)."""

    def _complete_state_dict(self, merged: dict[str, Any], provided: set[str]) -> None:  # noqa: B027
        """Make a partially overridden state dict consistent (TD-MPC2 aliases); used by non-strict loads."""

    @property
    def _state_meta(self) -> dict[str, Any]:
        return {}

    def _param_shapes(self) -> Any:
        """The parameter tree as ``ShapeDtypeStruct``s (computed once, no parameters created)."""
        shapes = self.__dict__.get("_param_shapes_cache")
        if shapes is None:
            shapes = self.core.param_shapes()
            self.__dict__["_param_shapes_cache"] = shapes
        return shapes

    # -- jitted functions and the key stream ----------------------------------------------------------
    def _jit(self, name: str, fn: Callable[..., Any], **static: Any) -> Callable[..., Any]:
        """The jitted ``fn(core, *args, **static)`` (called as ``jitted(*args)``), created once per
        ``(name, static)`` and shared by every model of this class and config.

        `fn` must be a plain function of the core (never of the model: the cache outlives models). Each trace
        increments ``self._trace_counts[name]``; calls with the same shapes, dtypes and flags reuse the
        compiled function.
        """
        cache_key = (name, tuple(sorted(static.items())))
        jitted = self._jit_cache.get(cache_key)
        if jitted is None:
            impl = functools.partial(fn, self.core, **static)
            counts = self._trace_counts

            def traced(*args: Any) -> Any:
                counts[name] += 1  # Python side effect: runs only while tracing
                return impl(*args)

            traced.__name__ = f"{type(self).__name__}.{name}"
            jitted = jax.jit(traced)
            self._jit_cache[cache_key] = jitted
        return jitted

    def reseed(self, seed: int) -> None:
        """Restart the sampling key stream from `seed` (parameters are unchanged)."""
        self._seed = int(seed)
        self._rng = np.random.default_rng(self._seed)

    def _next_key(self) -> np.ndarray:
        """The next PRNG key of this model's stream, as raw threefry key data ``uint32[2]`` (drawn on the host,
        no device work; jitted functions wrap it with ``jax.random.wrap_key_data``)."""
        with self._key_lock:
            return self._rng.integers(0, 2**32, size=2, dtype=np.uint32)

    @property
    def sampling(self) -> str:
        """How stochastic categorical latents are drawn: ``"sample"`` (Gumbel-softmax, straight-through; the
        reference behaviour and the default), ``"mode"`` (straight-through mode ``onehot(argmax) + p - sg(p)``,
        the parity fixtures' convention) or ``"argmax"``. ``deterministic=True`` arguments always use argmax."""
        return self._sampling

    @sampling.setter
    def sampling(self, value: str) -> None:
        if value not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {list(SAMPLINGS)}, got {value!r}")
        self._sampling = value

    @contextlib.contextmanager
    def sampling_mode(self, mode: str) -> Iterator[WorldModel]:
        """Temporarily switch ``sampling`` (``with model.sampling_mode("mode"): ...``); not thread-safe."""
        previous = self.sampling
        self.sampling = mode
        try:
            yield self
        finally:
            self._sampling = previous

    # -- devices, modes, parameters -------------------------------------------------------------------
    @property
    def jax_device(self) -> jax.Device:
        """The JAX device holding the parameters."""
        return self._device

    @property
    def device(self) -> torch.device:
        """The parameters' device in torch terms (``cpu`` or ``cuda:N``)."""
        return _torch_device(self._device)

    def to(self, device: Any) -> WorldModel:
        """Move the parameters to `device` (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``torch.device``, ``"auto"``
        or a ``jax.Device``) and return self. CPU is JAX's CPU device; CUDA maps to JAX's GPU devices.

        Raises:
            ValueError: JAX has no such device (the message lists the devices JAX sees).
        """
        target = resolve_jax_device(device)
        if target != self._device:
            self.params = jax.device_put(self.params, target)
            if self.extras is not None:
                self.extras = jax.device_put(self.extras, target)
            self._device = target
        return self

    def cpu(self) -> WorldModel:
        """``to("cpu")``."""
        return self.to("cpu")

    def train(self, mode: bool = True) -> WorldModel:
        """No-op (no dropout or batch norm); sets ``training`` and returns self."""
        self.training = bool(mode)
        return self

    def eval(self) -> WorldModel:
        """No-op; ``train(False)``."""
        return self.train(False)

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """``(name, tensor)`` for every parameter leaf: read-only torch views of the JAX arrays (no
        copy), named by their JAX path (e.g. ``rssm.prior_net.0.kernel``) in JAX layout. For inspection and
        counting; use ``state_dict()`` for the reference names and layouts. The views keep the buffers alive."""
        for path, leaf in jax.tree_util.tree_flatten_with_path(self.params)[0]:
            yield ".".join(_path_name(p) for p in path), to_torch(leaf)

    def parameters(self) -> Iterator[torch.Tensor]:
        """Read-only torch views of the parameter leaves (see ``named_parameters``)."""
        for _, tensor in self.named_parameters():
            yield tensor

    def num_parameters(self) -> int:
        """Number of trainable scalars (``params`` only; TD-MPC2's target ensemble is not counted)."""
        return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(self.params)))

    def io_contract(self) -> ModelIOContract:
        """Return runtime I/O contract (built from the config; cached)."""
        contract = self.__dict__.get("_contract")
        if contract is None:
            contract = type(self).contract_for_config(self.config)
            contract.validate()
            self.__dict__["_contract"] = contract
        return contract

    @classmethod
    def fingerprint_for_config(cls, config: Any) -> str:
        """``contract_fingerprint()`` of a model built from `config`, without building it."""
        return contract_fingerprint(cls.contract_for_config(config))

    def _validate_more(self, errors: list[str], suggestions: list[str]) -> None:
        """``validate()``: the parameters must match the architecture of the config."""
        expected = jax.tree.map(lambda s: (tuple(s.shape), str(s.dtype)), self._param_shapes())
        got = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), self.params)
        if expected != got:
            errors.append("params do not match the architecture of the config")
            suggestions.append("Load weights with load_state_dict() / from_pretrained() instead of assigning params.")

    # -- the documented API ---------------------------------------------------------------------------
    def initial_state(self, batch_size: int, device: Any = None, *, array_kind: str = "torch") -> State:
        """The initial latent state for `batch_size` samples, as `array_kind` arrays (torch by default;
        `device` moves torch tensors, e.g. ``"cpu"``)."""
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        fn = self._jit("initial_state", _initial_arrays, batch_size=int(batch_size))
        with jax.default_device(self._device):
            arrays = fn()
        state = self._state_out(arrays, array_kind)
        if device is not None and array_kind == "torch":
            state = state.to(device)
        return state

    def encode(self, obs: Tensor | dict[str, Tensor] | WorldModelInput, deterministic: bool = False) -> State:
        """Encode observation to latent state.

        Args:
            obs: ``[B, *obs_shape]`` — a tensor/array, a dict with key ``"obs"`` or a ``WorldModelInput``.
            deterministic: see the subclass (DreamerV3 ignores it, as the reference).
        """
        x = self._observation(obs)
        self._check_obs(x, 1)
        return self._state_out(self._encode(self._jax_in(x), deterministic), infer_kind(x))

    def transition(
        self,
        state: State,
        action: ActionPayload | Tensor | None,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
    ) -> State:
        """Predict next state (prior/imagination): state ``[B, ...]``, action ``[B, A]`` (None: zeros).

        Raises:
            ValidationError: the action or conditions violate the I/O contract.
        """
        self._validate_conditions(conditions)
        arrays, kind = self._state_in(state)
        out = self._transition(arrays, self._action_in(action, arrays), deterministic)
        return self._state_out(out, kind)

    def update(
        self,
        state: State,
        action: ActionPayload | Tensor | None,
        obs: Tensor | dict[str, Tensor] | WorldModelInput,
        conditions: ConditionPayload | None = None,
    ) -> State:
        """Update state with observation (posterior): state ``[B, ...]``, action ``[B, A]``, obs
        ``[B, *obs_shape]``."""
        self._validate_conditions(conditions)
        arrays, kind = self._state_in(state)
        x = self._observation(obs)
        self._check_obs(x, 1)
        out = self._update(arrays, self._action_in(action, arrays), self._jax_in(x))
        return self._state_out(out, kind)

    def decode(self, state: State, conditions: ConditionPayload | None = None) -> ModelOutput:
        """Decode latent state to predictions (``ModelOutput.predictions``, keys per subclass)."""
        self._validate_conditions(conditions)
        arrays, kind = self._state_in(state)
        predictions = self._kind_out(self._ordered(self._decode(arrays), "predictions"), kind)
        return ModelOutput(predictions=predictions, state=state)

    def rollout(
        self,
        initial_state: State,
        action_sequence: ActionSequence | ActionPayload | Tensor | None,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        mode: str = "autoregressive",
    ) -> Trajectory:
        """Open-loop imagination from `initial_state` with actions ``[T, B, A]`` (one jitted scan).

        `action_sequence` may be a tensor ``[T, B, A]``, an ``ActionSequence``, a planner ``ActionPayload``
        (normalized with ``normalize_planned_action``) or None (T = 0). Returns a ``Trajectory`` with T + 1
        states (``initial_state`` first), the actions as given (``[T, B, 0]`` zeros for payload lists/None),
        rewards and continues ``[T, B]`` (None when T = 0). The call returns once the rollout is dispatched:
        the trajectory is a ``DeferredTrajectory``, whose states, rewards and continues are converted when
        first read, so fields never read cost nothing.

        Raises:
            ValueError: ``mode != "autoregressive"`` under api_version "v3" (a ``DeprecationWarning`` under v0.2).
        """
        if mode != "autoregressive":
            if self._get_api_version() == "v3":
                raise ValueError(_ROLLOUT_MODE_MESSAGE)
            warnings.warn(_ROLLOUT_MODE_MESSAGE, DeprecationWarning, stacklevel=2)
        self._validate_conditions(conditions)
        arrays, kind = self._state_in(initial_state)
        batch = int(next(iter(arrays.values())).shape[0])
        actions, shown = self._rollout_actions(action_sequence, batch)
        if actions is None or actions.shape[0] == 0:
            empty = shown if shown is not None else to_kind(np.zeros((0, batch, 0), np.float32), kind)
            return DeferredTrajectory.deferred(
                actions=empty, states=lambda: [initial_state], rewards=_none, continues=_none
            )
        stacked, rewards, continues = self._rollout(arrays, actions, deterministic)
        steps = int(actions.shape[0])
        if shown is None:
            shown = to_kind(np.zeros((steps, batch, 0), np.float32), kind)
        # Only views of the outputs are handed out (per-step states), or arrays that are never handed back
        # whole, so their origin is not tracked.
        if kind == "torch" and self._device.platform == "cpu":
            out = functools.partial(cpu_to_torch, track_origin=False)
        else:
            out = functools.partial(to_kind, kind=kind, track_origin=False)
        order = self._KEY_ORDER.get("state", ())
        meta = self._state_meta

        def states() -> list[State]:
            names = _key_order(order, tuple(stacked))
            per_step = zip(*(_unstack(out(stacked[k])) for k in names), strict=True)
            return [initial_state] + [
                State(tensors=dict(zip(names, views, strict=True)), meta=dict(meta)) for views in per_step
            ]

        # Returned at dispatch; each field is converted when first read (see DeferredTrajectory).
        return DeferredTrajectory.deferred(
            actions=shown, states=states, rewards=lambda: out(rewards), continues=lambda: out(continues)
        )

    def _rollout_actions(self, action_sequence: Any, batch: int) -> tuple[jax.Array | None, Any]:
        """``(actions [T, B, A] as JAX, what Trajectory.actions shows)`` for any accepted action input."""
        if action_sequence is None:
            return None, None
        if isinstance(action_sequence, ActionPayload):
            payload = action_sequence
            primary = payload.primary()
            if primary is not None and not isinstance(primary, torch.Tensor):
                payload = ActionPayload(
                    kind=payload.kind, tensor=to_torch(primary), extras=payload.extras
                )  # normalize_planned_action speaks torch; the view shares memory
            action_sequence = normalize_planned_action(payload, api_version=self._get_api_version())
        if isinstance(action_sequence, ActionSequence):
            if action_sequence.tensor is not None:
                action_sequence = action_sequence.tensor
            elif action_sequence.payloads:
                like = {"batch": np.empty((batch,))}
                dim = self.config.action_dim
                steps = []
                for payload in action_sequence.payloads:  # per-step payloads: validated one by one
                    step = self._action_in(payload, like)
                    if step is None:
                        step = np.zeros((batch, dim), np.float32)
                    elif np.issubdtype(step.dtype, np.integer):
                        step = jax.nn.one_hot(step, dim)
                    steps.append(jax.numpy.asarray(step, jax.numpy.float32))
                return self._jax_in(jax.numpy.stack(steps)), None
            else:
                return None, None
        if not hasattr(action_sequence, "shape"):
            raise TypeError(
                "action_sequence must be a tensor [T, B, A], an ActionSequence, an ActionPayload or None, "
                f"got {type(action_sequence).__name__}"
            )
        self._validate_action_tensor(action_sequence)
        if len(action_sequence.shape) < 2 or int(action_sequence.shape[1]) != batch:
            raise ShapeMismatchError(
                f"action_sequence must have shape (T, B, A) with B = {batch} (the state's batch size)",
                expected=("T", batch, self.config.action_dim),
                got=tuple(action_sequence.shape),
            )
        return self._jax_in(action_sequence), action_sequence

    # -- array-level steps (subclasses) ---------------------------------------------------------------
    @abstractmethod
    def _encode(self, obs: jax.Array, deterministic: bool) -> Mapping[str, jax.Array]: ...

    @abstractmethod
    def _transition(
        self, state: Mapping[str, jax.Array], action: jax.Array | None, deterministic: bool
    ) -> Mapping[str, jax.Array]: ...

    @abstractmethod
    def _update(
        self, state: Mapping[str, jax.Array], action: jax.Array | None, obs: jax.Array
    ) -> Mapping[str, jax.Array]: ...

    @abstractmethod
    def _decode(self, state: Mapping[str, jax.Array]) -> dict[str, jax.Array]: ...

    @abstractmethod
    def _rollout(
        self, state: Mapping[str, jax.Array], actions: jax.Array, deterministic: bool
    ) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]: ...

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"{type(self).__name__}(model_name={getattr(cfg, 'model_name', '?')!r}, "
            f"obs_shape={tuple(cfg.obs_shape)}, action_dim={cfg.action_dim}, "
            f"params={self.num_parameters():,}, device={self._device})"
        )


# ------------------------------------------------------------------------------------------------ helpers


def _initial_arrays(core: Any, *, batch_size: int) -> dict[str, jax.Array]:
    return dict(core.initial_state(batch_size))


def _path_name(entry: Any) -> str:
    return str(getattr(entry, "key", getattr(entry, "idx", entry)))


def _unstack(x: Any) -> Sequence[Any]:
    """The ``x[t]`` views of an array ``[T, ...]`` (torch: one ``unbind`` call instead of T indexings)."""
    return x.unbind(0) if isinstance(x, torch.Tensor) else list(x)


def _none() -> None:
    return None
