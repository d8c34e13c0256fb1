"""Host-side data path of the Trainer: batches for consecutive steps, validated, placed on the device(s).

``DataStream`` draws the raw batch of each step from a provider (``.sample``) or an iterable; ``BatchFeed``
turns a torch/numpy ``Batch`` or dict into the core step's raw-array mapping (``obs``, ``actions``, ``rewards``,
``terminations``; the family converts them on the device, e.g. integer actions to one-hot) and places it: on
one CPU device as numpy views of the tensors' memory (XLA reads them in place), on one accelerator as
transferred arrays, and on a mesh as arrays sharded over its ``"data"`` axis, each process's rows going
straight to its own devices (``jax.make_array_from_process_local_data``).

Determinism and hosts: a provider with an ``rng`` attribute set to None (``ReplayBuffer``) samples step ``s``
with ``np.random.default_rng([seed, stream, s])``; with several processes each samples its own
``batch_size / process_count`` rows with ``default_rng([seed, stream, s, process_index])``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
import torch
from jax.sharding import Mesh

from worldflux.core.batch import Batch
from worldflux.core.exceptions import TrainingError, ValidationError
from worldflux.interop import to_jit_input
from worldflux_jax.step import shard_batch

from .prefetch import sample_call

__all__ = ["BatchFeed", "DataStream"]

FIELDS = ("obs", "actions", "rewards", "terminations")


class DataStream:
    """Raw batches for consecutive steps from a provider (``.sample``) or an iterable of Batch/dict."""

    def __init__(
        self,
        data: Any,
        batch_size: int,
        seq_len: int,
        seed: int,
        stream: int,
        process_index: int = 0,
        process_count: int = 1,
    ) -> None:
        if isinstance(data, Batch | Mapping) or data is None:
            raise TrainingError(
                "data must be a BatchProvider (with sample(...)) or an iterable yielding Batch/dict, got a single "
                f"{type(data).__name__}; wrap a fixed batch in a list"
            )
        self.data = data
        self.seed = int(seed) % (2**32)
        self.stream = stream
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        has_sample = callable(getattr(data, "sample", None))
        self.source = f"{type(data).__name__}.sample()" if has_sample else f"iterator over {type(data).__name__}"
        self._iterator: Iterator[Any] | None = None
        if has_sample:
            local = batch_size // max(1, self.process_count)
            self._sample: Callable[[], Any] | None = sample_call(data, local, seq_len, "cpu")
            self._seeded = hasattr(data, "rng") and getattr(data, "rng", 0) is None
        else:
            try:
                iter(data)
            except TypeError as exc:
                raise TrainingError(
                    f"data must be a BatchProvider (with sample(...)) or an iterable of Batch/dict, got "
                    f"{type(data).__name__}"
                ) from exc
            self._sample = None
            self._seeded = False

    def steps_per_epoch(self) -> int | None:
        if self._sample is None:
            return None
        try:
            size = len(self.data)
        except TypeError:
            return None
        return max(1, int(size) // max(1, self.batch_size * self.seq_len))

    def fetch(self, step: int) -> tuple[Any, bool]:
        """``(raw batch, starts a new pass over an iterable)`` for ``step``."""
        if self._sample is not None:
            if not self._seeded:
                return self._sample(), False
            entropy = [self.seed, self.stream, int(step)]
            if self.process_count > 1:
                entropy.append(self.process_index)
            self.data.rng = np.random.default_rng(entropy)
            try:
                return self._sample(), False
            finally:
                self.data.rng = None
        new_pass = False
        if self._iterator is None:
            self._iterator = iter(self.data)
            new_pass = True
        try:
            return next(self._iterator), new_pass
        except StopIteration:
            self._iterator = iter(self.data)
            try:
                return next(self._iterator), True
            except StopIteration:
                raise TrainingError(
                    f"data ({type(self.data).__name__}) is exhausted: re-iterating it yields no batches (pass a "
                    "re-iterable such as a list, or a BatchProvider)"
                ) from None


def _np_dtype(array: Any) -> np.dtype:
    """The numpy dtype of a torch tensor / numpy / JAX array."""
    dtype = array.dtype
    if isinstance(dtype, torch.dtype):
        return torch.empty(0, dtype=dtype).numpy().dtype if dtype != torch.bfloat16 else np.dtype(np.float32)
    return np.dtype(dtype)


def _field(batch: Batch, name: str, container: str) -> Any:
    value = getattr(batch, name, None)
    if value is None:
        value = getattr(batch, container).get(name)
    return value


class BatchFeed:
    """Validates raw batches against the model and places them for the step (see the module docstring)."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        action_dim: int | None,
        device: jax.Device,
        mesh: Mesh | None,
        validate_contract: Callable[[Any], None] | None = None,
    ) -> None:
        self.obs_shape = obs_shape
        self.action_dim = action_dim
        self.device = device
        self.mesh = mesh
        self.validate_contract = validate_contract

    def convert(self, raw: Any, source: str, signatures: dict[Any, bool]) -> dict[str, Any]:
        """A torch ``Batch``/dict (or a core batch NamedTuple) -> the step's placed raw-array mapping, validated
        whenever its shape signature is new."""
        if isinstance(raw, tuple) and hasattr(raw, "_asdict"):  # a core batch NamedTuple
            fields = {k: v for k, v in raw._asdict().items() if k in FIELDS}
            checked: Batch | None = None
        else:
            if isinstance(raw, Mapping):
                try:
                    raw = Batch.from_dict(raw)
                except TypeError as exc:
                    raise TrainingError(f"{source} returned a dict that is not a Batch: {exc}") from exc
            if not isinstance(raw, Batch):
                raise TrainingError(f"{source} must return Batch or dict, got {type(raw).__name__}")
            obs = raw.obs if raw.obs is not None else raw.inputs.get("obs")
            if isinstance(obs, Mapping):
                obs = obs.get("obs")
            fields = {
                "obs": obs,
                "actions": _field(raw, "actions", "inputs"),
                "rewards": _field(raw, "rewards", "targets"),
                "terminations": _field(raw, "terminations", "targets"),
            }
            checked = raw
        missing = [k for k in ("obs", "actions", "rewards") if fields.get(k) is None]
        if missing:
            raise TrainingError(f"Batch is missing required keys for model contract: {missing}")
        signature = tuple(
            (k, tuple(v.shape), str(v.dtype)) if v is not None else (k, None, None) for k, v in fields.items()
        )
        if signature not in signatures:
            self._validate(checked, fields)
            signatures[signature] = True
        return self.place(fields)

    def place(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        if self.mesh is not None:
            host = {k: None if v is None else _host_array(v) for k, v in fields.items()}
            return shard_batch(host, self.mesh)
        # On CPU a torch/numpy batch is handed to the step as numpy views (XLA reads them in place; a DLPack
        # import costs ~50 us per array); on accelerators it becomes device arrays here, off the step loop.
        return {k: None if v is None else to_jit_input(v, device=self.device) for k, v in fields.items()}

    def _validate(self, raw: Batch | None, fields: Mapping[str, Any]) -> None:
        obs = fields["obs"]
        if len(obs.shape) < 3:
            raise TrainingError(
                f"Invalid batch for training: batch.obs must have shape (B, T, *obs_shape), got {tuple(obs.shape)}"
            )
        b, t = int(obs.shape[0]), int(obs.shape[1])
        if self.obs_shape and tuple(obs.shape[2:]) != self.obs_shape:
            raise TrainingError(
                f"Invalid batch for training: batch.obs has shape {tuple(obs.shape)}, expected (B, T, "
                f"*obs_shape) with obs_shape={self.obs_shape}"
            )
        actions = fields["actions"]
        expected = (b, t) + ((int(self.action_dim),) if self.action_dim else tuple(actions.shape[2:]))
        is_index = len(actions.shape) == 2 and np.issubdtype(_np_dtype(actions), np.integer)
        if tuple(actions.shape) != expected and not (is_index and tuple(actions.shape) == (b, t)):
            raise TrainingError(
                f"Invalid batch for training: batch.actions has shape {tuple(actions.shape)}, expected {expected}"
            )
        for name in ("rewards", "terminations"):
            value = fields.get(name)
            if value is not None and tuple(value.shape) != (b, t):
                raise TrainingError(
                    f"Invalid batch for training: batch.{name} has shape {tuple(value.shape)}, expected {(b, t)}"
                )
        if self.mesh is not None:
            local_devices = len(self.mesh.local_devices)
            if b % local_devices:
                raise TrainingError(
                    f"Invalid batch for training: this process's batch of {b} rows does not divide by its "
                    f"{local_devices} data-parallel devices"
                )
        if raw is not None and self.validate_contract is not None:
            try:
                self.validate_contract(raw)
            except ValidationError as exc:
                raise TrainingError(f"Batch violates model I/O contract: {exc}") from exc


def _host_array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy()
    return np.asarray(value)
