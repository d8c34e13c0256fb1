"""``TrainingConfig``: every knob of a WorldFlux training run, validated on construction.

The fields, defaults and validation messages follow the reference WorldFlux ``TrainingConfig`` (documented in
the Training API reference). Every invalid value raises ``ConfigurationError`` whose message names the field
and the accepted values, e.g. ``"total_steps must be positive, got 0"`` or
``"optimizer must be 'adamw', 'adam', or 'sgd', got 'x'"``.

Device names use the documented vocabulary (``"auto"``, ``"cpu"``, ``"cuda"``, ...). ``resolve_device()``
maps ``"auto"`` onto the default JAX backend (``"gpu"`` -> ``"cuda"``, ``"tpu"`` -> ``"tpu"``, ``"METAL"`` ->
``"mps"``, otherwise ``"cpu"``); an explicit device string is returned unchanged, as in the reference, even when
that accelerator is absent (the Trainer reports it when it places the model).

This module imports neither torch nor JAX at import time (JAX only inside ``resolve_device``).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from worldflux.core.exceptions import ConfigurationError
from worldflux.core.safe_io import read_json, write_json_atomic

__all__ = ["TrainingConfig"]

_OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd")
_SCHEDULERS: tuple[str, ...] = ("none", "linear", "cosine", "constant")
_MIXED_PRECISION_DTYPES: tuple[str, ...] = ("float16", "bfloat16")
_DISTRIBUTED_MODES: tuple[str, ...] = ("none", "ddp")
_DDP_BACKENDS: tuple[str, ...] = ("nccl", "gloo")
_ENV_MODES: tuple[str, ...] = ("sync", "async", "auto")
_MAX_SEED = 2**32 - 1  # numpy's global seed range (the reference seeds numpy with it)

# JAX backend/platform name -> the device vocabulary of the WorldFlux docs.
_JAX_BACKEND_TO_DEVICE: dict[str, str] = {"gpu": "cuda", "cuda": "cuda", "rocm": "cuda", "tpu": "tpu", "metal": "mps"}


def _choices(values: tuple[str, ...]) -> str:
    """``('a', 'b', 'c')`` -> ``"'a', 'b', or 'c'"``; two values -> ``"'a' or 'b'"``."""
    quoted = [f"'{value}'" for value in values]
    if len(quoted) == 2:
        return f"{quoted[0]} or {quoted[1]}"
    return ", ".join(quoted[:-1]) + f", or {quoted[-1]}"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(repr=False)
class TrainingConfig:
    """Configuration for training world models.

    Duration / batch shape: ``total_steps`` (100_000), ``batch_size`` (16), ``sequence_length`` (50); instant mode
    (``instant_mode=True``) swaps them for ``instant_total_steps`` (8), ``instant_batch_size`` (8) and
    ``instant_sequence_length`` (10) through the ``effective_*`` methods.
    Optimisation: ``learning_rate`` (3e-4), ``grad_clip`` (100.0; 0 or None disables clipping), ``weight_decay``,
    ``warmup_steps``, ``optimizer`` ("adamw" | "adam" | "sgd"), ``scheduler`` ("none" | "linear" | "cosine" |
    "constant"), ``gradient_accumulation_steps`` (effective batch = batch_size * gradient_accumulation_steps).
    Logging/checkpointing: ``log_interval``, ``eval_interval``, ``save_interval``, ``output_dir``.
    Hardware: ``device`` ("auto", "cpu", "cuda", ...), ``seed``, ``mixed_precision`` with
    ``mixed_precision_dtype`` ("float16" | "bfloat16").
    Placeholders kept for API compatibility: ``ema_decay`` (rejected by the Trainer when set) and
    ``model_overrides`` (rejected by the Trainer when non-empty).

    Raises:
        ConfigurationError: on construction (and in ``with_updates``/``from_dict``/``load``) when a value is
            invalid; the message names the field and the accepted values.

    Example:
        >>> config = TrainingConfig(total_steps=100_000, batch_size=32)
        >>> config.effective_batch_size()
        32
    """

    # Training duration
    total_steps: int = 100_000
    batch_size: int = 16
    sequence_length: int = 50
    instant_mode: bool = False
    instant_total_steps: int = 8
    instant_batch_size: int = 8
    instant_sequence_length: int = 10

    # Optimizer
    learning_rate: float = 3e-4
    grad_clip: float | None = 100.0
    weight_decay: float = 0.0
    warmup_steps: int = 0

    # Logging and checkpointing
    log_interval: int = 100
    eval_interval: int = 1000
    save_interval: int = 10000
    output_dir: str = "./outputs"

    # Hardware
    device: str = "auto"
    seed: int = 42
    mixed_precision: bool = False
    mixed_precision_dtype: str = "float16"
    # JAX's persistent compilation cache: "auto" (~/.cache/worldflux/jax or $WORLDFLUX_COMPILATION_CACHE), a
    # directory, or None to disable.
    compilation_cache_dir: str | None = "auto"

    # Execution backend
    backend: str = "native_torch"
    backend_profile: str = ""

    # Distributed
    distributed_mode: str = "none"
    distributed_world_size: int = 1
    use_ddp: bool = False
    ddp_backend: str = "nccl"
    ddp_find_unused_params: bool = False
    ddp_gradient_as_bucket_view: bool = True
    ddp_broadcast_buffers: bool = True
    rank: int | None = None
    world_size: int | None = None
    local_rank: int | None = None
    # Multi-process (jax.distributed): all three together, or none (single process / cluster auto-detection
    # with distributed_mode="ddp" and use_ddp=True; see docs/distributed.md).
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    distributed_timeout_s: int = 300

    # Data loading
    num_workers: int = 0
    prefetch_factor: int = 2
    pin_memory: bool = True
    persistent_workers: bool = True
    prefetch_batches: int = 2

    # Environments
    num_envs: int = 1
    env_mode: str = "auto"

    # Advanced options
    optimizer: str = "adamw"
    scheduler: str = "none"
    ema_decay: float | None = None
    gradient_accumulation_steps: int = 1
    use_gradient_checkpointing: bool = False
    checkpoint_layers: list[str] = field(default_factory=list)
    auto_quality_check: bool = True
    # Consecutive non-finite steps (skipped inside the step) that raise TrainingError; 1 = the first one.
    max_nonfinite_steps: int = 1
    compile_model: bool = False
    profile: bool = False

    # Reserved trainer-level model patch surface; the Trainer rejects a non-empty dict.
    model_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.output_dir, os.PathLike):
            self.output_dir = os.fspath(self.output_dir)
        self.validate()

    # ------------------------------------------------------------------ validation

    def validate(self) -> None:
        """Check every field; raises ``ConfigurationError`` naming the first invalid field and what it accepts."""
        self._check_bools()
        for name in ("total_steps", "batch_size", "sequence_length"):
            self._check_int(name, minimum=1)
        for name in ("instant_total_steps", "instant_batch_size", "instant_sequence_length"):
            self._check_int(name, minimum=1)

        self._check_real("learning_rate", positive=True)
        if self.grad_clip is not None:
            self._check_real("grad_clip", positive=False)
        self._check_real("weight_decay", positive=False)
        self._check_int("warmup_steps", minimum=0)
        for name in ("log_interval", "eval_interval", "save_interval", "prefetch_factor"):
            self._check_int(name, minimum=None)
        self._check_int("seed", minimum=0)
        if self.seed > _MAX_SEED:
            raise ConfigurationError(f"seed must be an integer in [0, {_MAX_SEED}], got {self.seed}")

        if not isinstance(self.output_dir, str) or not self.output_dir.strip():
            raise ConfigurationError(f"output_dir must be a non-empty string path, got {self.output_dir!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ConfigurationError(
                f"device must be a non-empty string such as 'auto', 'cpu' or 'cuda', got {self.device!r}"
            )

        self._check_choice("mixed_precision_dtype", _MIXED_PRECISION_DTYPES)
        if not isinstance(self.backend, str) or not self.backend.strip():
            raise ConfigurationError(f"backend must be a non-empty string, got {self.backend!r}")
        if not isinstance(self.backend_profile, str):
            raise ConfigurationError(f"backend_profile must be a string, got {self.backend_profile!r}")

        self._check_choice("distributed_mode", _DISTRIBUTED_MODES)
        self._check_int("distributed_world_size", minimum=1, message="must be >= 1")
        self._check_choice("ddp_backend", _DDP_BACKENDS)
        for name in ("rank", "world_size", "local_rank"):
            if getattr(self, name) is not None:
                self._check_int(name, minimum=0)

        if self.coordinator_address is not None and not isinstance(self.coordinator_address, str):
            raise ConfigurationError(
                f"coordinator_address must be 'host:port' or None, got {self.coordinator_address!r}"
            )
        for name in ("num_processes", "process_id"):
            if getattr(self, name) is not None:
                self._check_int(name, minimum=1 if name == "num_processes" else 0)
        self._check_int("distributed_timeout_s", minimum=1)
        if self.compilation_cache_dir is not None and not isinstance(self.compilation_cache_dir, str):
            raise ConfigurationError(
                f"compilation_cache_dir must be 'auto', a directory path or None, got {self.compilation_cache_dir!r}"
            )
        self._check_int("max_nonfinite_steps", minimum=1)
        self._check_int("num_workers", minimum=0)
        self._check_int("prefetch_batches", minimum=0)
        self._check_int("num_envs", minimum=1, message="must be >= 1")
        self._check_choice("env_mode", _ENV_MODES)

        self._check_choice("optimizer", _OPTIMIZERS)
        self._check_choice("scheduler", _SCHEDULERS)
        if self.ema_decay is not None and (not _is_real(self.ema_decay) or not 0.0 < float(self.ema_decay) < 1.0):
            raise ConfigurationError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        self._check_int("gradient_accumulation_steps", minimum=1, message="must be >= 1")

        if not isinstance(self.checkpoint_layers, list | tuple) or not all(
            isinstance(item, str) for item in self.checkpoint_layers
        ):
            raise ConfigurationError(f"checkpoint_layers must be a list of strings, got {self.checkpoint_layers!r}")
        self.checkpoint_layers = list(self.checkpoint_layers)
        if not isinstance(self.model_overrides, dict):
            raise ConfigurationError(f"model_overrides must be a dict, got {self.model_overrides!r}")

    def _check_bools(self) -> None:
        for f in fields(self):
            if f.type not in ("bool", bool):
                continue
            value = getattr(self, f.name)
            if isinstance(value, np.bool_):
                setattr(self, f.name, bool(value))
            elif not isinstance(value, bool):
                raise ConfigurationError(f"{f.name} must be True or False, got {value!r}")

    def _check_int(self, name: str, *, minimum: int | None, message: str | None = None) -> None:
        value = getattr(self, name)
        if not _is_int(value):
            raise ConfigurationError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
        if minimum is None or value >= minimum:
            return
        if message is None:
            message = "must be positive" if minimum == 1 else "must be non-negative"
        raise ConfigurationError(f"{name} {message}, got {value}")

    def _check_real(self, name: str, *, positive: bool) -> None:
        value = getattr(self, name)
        if not _is_real(value):
            raise ConfigurationError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
        if positive and not value > 0:
            raise ConfigurationError(f"{name} must be positive, got {value}")
        if not positive and not value >= 0:
            raise ConfigurationError(f"{name} must be non-negative, got {value}")
        if not math.isfinite(float(value)):
            raise ConfigurationError(f"{name} must be finite, got {value}")

    def _check_choice(self, name: str, accepted: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in accepted:
            raise ConfigurationError(f"{name} must be {_choices(accepted)}, got {value!r}")

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (lists and dicts deep-copied)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        """``TrainingConfig(**d)``.

        Raises:
            TypeError: ``d`` has keys that are not fields (as the reference's ``cls(**d)``); the message lists them.
            ConfigurationError: a value is invalid.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TypeError(
                f"TrainingConfig got unexpected keyword argument(s) {unknown}; valid fields are {sorted(known)}"
            )
        return cls(**d)

    def save(self, path: str | Path) -> None:
        """Write the config as JSON (indent 2) to ``path``, creating parent directories."""
        write_json_atomic(Path(path), self.to_dict(), indent=2)

    @classmethod
    def load(cls, path: str | Path) -> TrainingConfig:
        """Read a config written by ``save`` (or any JSON object of field values) and validate it.

        Raises:
            ConfigurationError: the file is missing, not a regular file, too large or too deeply nested, not JSON,
                not an object, has unknown keys or invalid values; the message names the path.
        """
        data = read_json(path, ConfigurationError, "TrainingConfig file")
        if not isinstance(data, dict):
            raise ConfigurationError(f"TrainingConfig file {str(path)!r} must contain a JSON object")
        try:
            return cls.from_dict(data)
        except TypeError as exc:
            raise ConfigurationError(f"TrainingConfig file {str(path)!r}: {exc}") from exc
        except ConfigurationError as exc:
            raise ConfigurationError(f"TrainingConfig file {str(path)!r}: {exc}") from exc

    def with_updates(self, **kwargs: Any) -> TrainingConfig:
        """A new, validated config with ``kwargs`` replacing the corresponding fields (``self`` is unchanged)."""
        values = self.to_dict()
        values.update(kwargs)
        return type(self).from_dict(values)

    # ------------------------------------------------------------------ derived values

    def resolve_device(self) -> str:
        """The device to train on.

        ``"auto"`` maps the default JAX backend to the docs' vocabulary: ``"cuda"`` for a GPU backend, ``"tpu"``
        for TPU, ``"mps"`` for Apple Metal, else ``"cpu"``. Any other value is returned unchanged, as the
        reference does, without checking that such a device exists.
        """
        if self.device != "auto":
            return self.device
        import jax

        backend = str(jax.default_backend()).lower()
        return _JAX_BACKEND_TO_DEVICE.get(backend, "cpu")

    def effective_total_steps(self) -> int:
        """``instant_total_steps`` in instant mode, else ``total_steps``."""
        return self.instant_total_steps if self.instant_mode else self.total_steps

    def effective_batch_size(self) -> int:
        """``instant_batch_size`` in instant mode, else ``batch_size``."""
        return self.instant_batch_size if self.instant_mode else self.batch_size

    def effective_sequence_length(self) -> int:
        """``instant_sequence_length`` in instant mode, else ``sequence_length``."""
        return self.instant_sequence_length if self.instant_mode else self.sequence_length

    def __repr__(self) -> str:
        return (
            "TrainingConfig("
            f"total_steps={self.total_steps}, "
            f"batch_size={self.batch_size}, "
            f"seq_len={self.sequence_length}, "
            f"instant_mode={self.instant_mode}, "
            f"lr={self.learning_rate}, "
            f"device={self.device!r}, "
            f"backend={self.backend!r})"
        )
