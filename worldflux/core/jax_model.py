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

import collections
import contextlib
import functools
import json
import math
import threading
import warnings
import weakref
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import Tensor

from worldflux.interop import (
    array_kind,
    cpu_to_torch,
    infer_kind,
    to_jit_input,
    to_kind,
    to_numpy,
    to_torch,
    tree_to_kind,
)
from worldflux_jax.distributions import SAMPLINGS
from worldflux_jax.torch_layout import StateDictError

from .batch import Batch
from .exceptions import CheckpointError, ShapeMismatchError
from .model import _ROLLOUT_MODE_MESSAGE, IncompatibleKeys, WorldModel
from .output import DeferredLossOutput, LossOutput, ModelOutput
from .payloads import ActionPayload, ActionSequence, ConditionPayload, WorldModelInput, normalize_planned_action
from .spec import Capability, ModelIOContract, contract_fingerprint
from .state import State
from .trajectory import DeferredTrajectory, Trajectory

__all__ = ["JaxWorldModel", "loss_scalars", "resolve_jax_device"]

# ------------------------------------------------------------------------------------------------ devices


def resolve_jax_device(device: Any) -> jax.Device:
    """Map a torch-style device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``torch.device``), ``"auto"``/``"gpu"``
    or a ``jax.Device`` to a JAX device.

    Raises:
        ValueError: the device type is unknown, or JAX sees no such device (the message lists what JAX sees).
    """
    if isinstance(device, jax.Device):
        return device
    name = str(device if device is not None else "cpu").strip().lower()
    kind, _, index_text = name.partition(":")
    try:
        index = int(index_text) if index_text else 0
    except ValueError as exc:
        raise ValueError(f"Invalid device {device!r}: the index after ':' must be an integer") from exc
    if kind == "auto":
        kind = "cuda" if _jax_backend_devices("gpu") else "cpu"
    if kind == "cpu":
        return _jax_backend_devices("cpu")[0]
    if kind in ("cuda", "gpu"):
        gpus = _jax_backend_devices("gpu")
        if index < len(gpus):
            return gpus[index]
        raise ValueError(
            f"Cannot place the model on device {str(device)!r}: JAX sees {len(gpus)} GPU(s); its devices are "
            f"{[str(d) for d in jax.devices()]}. Install a CUDA-enabled jax (pip install 'jax[cuda12]') or use "
            "device='cpu'."
        )
    raise ValueError(
        f"Unsupported device {str(device)!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto' "
        f"(JAX devices: {[str(d) for d in jax.devices()]})"
    )


def _jax_backend_devices(backend: str) -> list[jax.Device]:
    try:
        return list(jax.devices(backend))
    except RuntimeError:
        return []


def _torch_device(device: jax.Device) -> torch.device:
    return torch.device("cpu") if device.platform == "cpu" else torch.device("cuda", device.id)


def _key_from_data(key_data: jax.Array) -> jax.Array:
    """A typed PRNG key from the raw threefry key data ``uint32[2]`` that ``_next_key`` draws."""
    return jax.random.wrap_key_data(key_data, impl="threefry2x32")


class _Compiled:
    """What the models of one class and config share: the core object, the jitted functions keyed by
    ``(name, static flags)`` and how often each name was traced. Freed with the last such model."""

    __slots__ = ("__weakref__", "core", "functions", "trace_counts")

    def __init__(self, core: Any) -> None:
        self.core = core
        self.functions: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self.trace_counts: collections.Counter[str] = collections.Counter()


_COMPILED: weakref.WeakValueDictionary[tuple[str, str], _Compiled] = weakref.WeakValueDictionary()
_COMPILED_LOCK = threading.Lock()


def _compiled_for(model_cls: type, config: Any, make_core: Callable[[Any], Any]) -> _Compiled:
    name = f"{model_cls.__module__}.{model_cls.__qualname__}"
    key = (name, json.dumps(config.to_dict(), sort_keys=True, default=str))
    with _COMPILED_LOCK:
        compiled = _COMPILED.get(key)
        if compiled is None:
            compiled = _Compiled(make_core(config))
            _COMPILED[key] = compiled
    return compiled


# ------------------------------------------------------------------------------------------------ model


class JaxWorldModel(WorldModel):
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

    # -- state dicts ----------------------------------------------------------------------------------
    def state_dict(self) -> collections.OrderedDict[str, torch.Tensor]:
        """The reference ``state_dict``: torch tensors (fresh CPU copies) in the reference names and layouts,
        buffers included (``_device_tracker``; DreamerV3 ``reward_head.bins``; TD-MPC2 aliases sharing
        storage with their canonical tensors and the ``_target_q_ensemble.*`` copy)."""
        arrays = self._state_dict_arrays()
        out: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        seen: dict[int, torch.Tensor] = {}
        for name, value in arrays.items():
            tensor = seen.get(id(value))
            if tensor is None:
                tensor = torch.from_numpy(np.array(value, dtype=np.float32, copy=True))
                seen[id(value)] = tensor
            out[name] = tensor
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Load a reference-layout state dict (torch tensors or numpy/JAX arrays).

        With ``strict=True`` every key of ``state_dict()`` must be present (buffers may be omitted) and none
        may be unknown. With ``strict=False`` missing tensors keep their current values and unknown keys are
        ignored. Shapes must always match.

        Returns:
            ``IncompatibleKeys(missing_keys, unexpected_keys)``.

        Raises:
            CheckpointError: naming the missing, unexpected or mis-shaped tensors.
        """
        if not isinstance(state_dict, Mapping):
            raise CheckpointError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
        required, optional = self._state_dict_keys()
        known = set(required) | set(optional)
        unexpected = sorted(k for k in state_dict if k not in known)
        missing = sorted(k for k in required if k not in state_dict)
        if strict and (missing or unexpected):
            problems = []
            if missing:
                problems.append(f"missing keys {missing}")
            if unexpected:
                problems.append(f"unexpected keys {unexpected}")
            raise CheckpointError(f"State dict does not match {type(self).__name__}: " + "; ".join(problems))
        provided = {k: _host_array(k, v) for k, v in state_dict.items() if k in known}
        if missing:
            merged: dict[str, Any] = dict(self._state_dict_arrays())
            merged.update(provided)
            self._complete_state_dict(merged, set(provided))
        else:
            merged = provided
        try:
            params, extras = self._params_from_state_dict(merged)
        except StateDictError as exc:
            raise CheckpointError(str(exc)) from exc
        self.params = jax.device_put(params, self._device)
        self.extras = None if extras is None else jax.device_put(extras, self._device)
        return IncompatibleKeys(missing, unexpected)

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

    # -- array conversion helpers ---------------------------------------------------------------------
    def _jax_in(self, x: Any, dtype: Any = None) -> jax.Array | np.ndarray:
        """`x` as an argument of the jitted functions on the model's device, without copying CPU memory
        (``worldflux.interop.to_jit_input``)."""
        return to_jit_input(x, dtype=dtype, device=self._device)

    def _observation(self, obs: Any) -> Any:
        """The "obs" array of a tensor, a dict with "obs" or a ``WorldModelInput``."""
        if isinstance(obs, WorldModelInput):
            if "obs" not in obs.observations:
                raise ValueError(
                    f"WorldModelInput.observations must contain 'obs' for {type(self).__name__}, "
                    f"got keys {sorted(obs.observations)}"
                )
            return obs.observations["obs"]
        if isinstance(obs, Mapping):
            if "obs" not in obs:
                raise ValueError(f"Observation dict must contain the key 'obs', got keys {sorted(obs)}")
            return obs["obs"]
        if obs is None:
            raise ValueError("obs must be a tensor, a dict with 'obs' or a WorldModelInput, got None")
        return obs

    def _check_obs(self, obs: Any, leading: int, what: str = "obs") -> None:
        """Check ``obs.shape == (*leading axes, *obs_shape)`` (subclasses may relax it)."""
        expected = tuple(self.config.obs_shape)
        got = tuple(obs.shape)
        if len(got) != leading + len(expected) or got[leading:] != expected:
            axes = "B, T" if leading == 2 else "B"
            raise ShapeMismatchError(f"{what} must have shape ({axes}, *{expected})", expected=expected, got=got)

    def _state_in(self, state: State) -> tuple[dict[str, jax.Array], str]:
        """The jitted functions' input state ``{key: array}`` (required keys only) and the state's kind."""
        if not isinstance(state, State):
            raise TypeError(f"state must be a State, got {type(state).__name__}")
        self.validate_state_contract(state)
        tensors = state.tensors
        keys = self.io_contract().required_state_keys
        arrays = {k: self._jax_in(tensors[k], np.float32) for k in keys}
        # The contract check above guarantees a first tensor; its kind is the state's.
        return arrays, array_kind(next(iter(tensors.values()))) or infer_kind(state)

    def _state_out(self, arrays: Mapping[str, Any], kind: str) -> State:
        return State(tensors=self._kind_out(self._ordered(arrays, "state"), kind), meta=dict(self._state_meta))

    def _kind_out(self, values: dict[str, Any], kind: str) -> dict[str, Any]:
        """``tree_to_kind`` of a dict of this model's jitted outputs (JAX arrays on the model's device take the
        direct CPU path to torch)."""
        if kind == "torch" and self._device.platform == "cpu":
            return {
                k: cpu_to_torch(v) if isinstance(v, jax.Array) else tree_to_kind(v, kind) for k, v in values.items()
            }
        return tree_to_kind(values, kind)

    def _ordered(self, values: Mapping[str, Any], what: str) -> dict[str, Any]:
        """`values` with keys in the reference's order for `what` (jitted outputs come back sorted)."""
        return {k: values[k] for k in _key_order(self._KEY_ORDER.get(what, ()), tuple(values))}

    def _action_in(self, action: Any, state: Mapping[str, Any]) -> jax.Array | np.ndarray | None:
        """The validated action array for a step from `state` (None for no action).

        Raises:
            ValidationError: the action does not fit the contract.
            ShapeMismatchError: its leading (batch) axis differs from the state's.
        """
        tensor = self.action_tensor_or_none(action)
        if tensor is None:
            return None
        batch = int(next(iter(state.values())).shape[0])
        shape = tuple(tensor.shape)
        if not shape or shape[0] != batch:
            raise ShapeMismatchError(
                f"action must have a leading batch axis of size {batch} (the state's batch size)",
                expected=(batch, self.config.action_dim),
                got=shape,
            )
        return self._jax_in(tensor)

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

    def _loss_output(
        self, total: jax.Array, components: Mapping[str, jax.Array], scalars: jax.Array, kind: str
    ) -> LossOutput:
        """``LossOutput`` in `kind`, produced when first read (see ``DeferredLossOutput``); ``metrics`` are
        Python floats.

        Args:
            total: the loss, a scalar array.
            components: the named loss terms, scalar arrays.
            scalars: ``[1 + len(components)]``, `total` then the components in sorted key order, from the same
                jitted call (``loss_scalars``): the host fetches this one vector instead of one array per term.
            kind: the array kind of the returned ``loss`` and ``components``.
        """
        components = self._ordered(components, "loss")
        names = sorted(components)
        if kind == "torch" and self._device.platform == "cpu":
            # The host vector as one tensor: the loss and each term are views of it, instead of a conversion
            # per scalar.
            vector = functools.cache(lambda: cpu_to_torch(scalars, track_origin=False))

            def loss() -> Any:
                return vector()[0]

            def terms() -> dict[str, Any]:
                by_name = dict(zip(names, vector().unbind(0)[1:], strict=True))
                return {k: by_name[k] for k in components}

            host = vector
        else:
            # A CPU array reads as a host view; jax.device_get's tree handling costs 5x more per call.
            on_cpu = self._device.platform == "cpu"

            def loss() -> Any:
                return to_kind(total, kind)

            def terms() -> dict[str, Any]:
                return tree_to_kind(components, kind)

            def host() -> Any:
                return np.asarray(scalars) if on_cpu else np.asarray(jax.device_get(scalars))

        def metrics() -> dict[str, float]:
            values = dict(zip(names, host()[1:].tolist(), strict=True))
            return {k: values[k] for k in components}

        return DeferredLossOutput(loss, terms, metrics)

    def _batch_in(self, batch: Batch | Mapping[str, Any], required: tuple[str, ...]) -> tuple[dict[str, Any], str]:
        """The legacy fields of `batch` (a ``Batch`` or dict) named in `required` (plus terminations when
        present), with dict observations reduced to their "obs" entry."""
        if not isinstance(batch, Batch) and isinstance(batch, Mapping):
            batch = Batch(**batch)
        if not isinstance(batch, Batch):
            raise TypeError(f"batch must be a Batch or a dict, got {type(batch).__name__}")
        fields = {
            "obs": batch.obs if batch.obs is not None else batch.inputs.get("obs"),
            "actions": batch.actions if batch.actions is not None else batch.inputs.get("actions"),
            "rewards": batch.rewards if batch.rewards is not None else batch.targets.get("rewards"),
            "terminations": (
                batch.terminations if batch.terminations is not None else batch.targets.get("terminations")
            ),
        }
        if isinstance(fields["obs"], Mapping):
            if "obs" not in fields["obs"]:
                raise ValueError(f"Batch obs dict must contain 'obs', got keys {sorted(fields['obs'])}")
            fields["obs"] = fields["obs"]["obs"]
        missing = [k for k in required if fields[k] is None]
        if missing:
            raise ValueError(
                f"{type(self).__name__}.loss requires batch fields {list(required)}; missing: {missing}"
            )
        obs = fields["obs"]
        self._check_obs(obs, 2, "batch.obs")
        b, t = int(obs.shape[0]), int(obs.shape[1])
        for name in ("rewards", "terminations"):
            value = fields[name]
            if value is not None and tuple(value.shape) != (b, t):
                raise ShapeMismatchError(
                    f"batch.{name} must have shape (B, T)", expected=(b, t), got=tuple(value.shape)
                )
        actions = fields["actions"]
        if tuple(actions.shape[:2]) != (b, t):
            raise ShapeMismatchError(
                "batch.actions must have shape (B, T, A)", expected=(b, t), got=tuple(actions.shape)
            )
        self._validate_action_tensor(actions)
        kind = array_kind(obs) or "torch"
        return {k: None if v is None else self._jax_in(v) for k, v in fields.items()}, kind

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


# ------------------------------------------------------------------------------------------------ helpers
def _initial_arrays(core: Any, *, batch_size: int) -> dict[str, jax.Array]:
    return dict(core.initial_state(batch_size))


def _path_name(entry: Any) -> str:
    return str(getattr(entry, "key", getattr(entry, "idx", entry)))


def _host_array(name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(to_numpy(value), dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - anything that is not an array of numbers
        raise CheckpointError(f"State dict entry {name!r} is not a numeric tensor ({type(value).__name__})") from exc


def _unstack(x: Any) -> Sequence[Any]:
    """The ``x[t]`` views of an array ``[T, ...]`` (torch: one ``unbind`` call instead of T indexings)."""
    return x.unbind(0) if isinstance(x, torch.Tensor) else list(x)


def loss_scalars(
    total: jax.Array, components: Mapping[str, jax.Array]
) -> tuple[jax.Array, Mapping[str, jax.Array], jax.Array]:
    """``(total, components, [total, *components in sorted key order])`` for a jitted loss function: the
    stacked float32 vector is what ``WorldModel._loss_output`` fetches to the host in one transfer."""
    values = [total, *(components[k] for k in sorted(components))]
    return total, components, jnp.stack([jnp.asarray(v, jnp.float32).reshape(()) for v in values])


def _none() -> None:
    return None


@functools.lru_cache(maxsize=256)
def _key_order(reference: tuple[str, ...], keys: tuple[str, ...]) -> tuple[str, ...]:
    """`keys` in the `reference` order, keys it does not name last in sorted order."""
    ranked = {k: i for i, k in enumerate(reference)}
    return tuple(sorted(keys, key=lambda k: (ranked.get(k, len(ranked)), k)))

