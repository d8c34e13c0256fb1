"""Distributed training surface of the reference (``DDPTrainer``, ``build_launch_config``), on JAX's own runtime.

There is no torch DDP here: data parallelism is the ``Trainer``'s 1-D ``"data"`` device mesh (batch split over
the devices, parameters replicated, gradients all-reduced by XLA inside the one compiled step), across hosts
through ``jax.distributed`` (see ``docs/distributed.md``). ``DDPTrainer`` is that ``Trainer`` with the
reference's contract: it requires ``TrainingConfig.use_ddp=True`` and more than one device or process.

* ``build_launch_config(config) -> {"enabled", "mode", "world_size", "device"}``: what a launch would use —
  ``enabled`` = ``use_ddp`` or ``distributed_mode == "ddp"``; ``mode`` = ``"ddp"`` when enabled else ``"none"``;
  ``world_size`` = the number of devices the mesh spans (``num_processes`` x local devices when a coordinator
  is configured, else the devices of the resolved platform; 1 when not enabled); ``device`` =
  ``config.resolve_device()``.
* ``FSDPTrainer`` (fully sharded parameters) is planned, not provided: constructing one raises a
  ``ConfigurationError`` that points to ``DDPTrainer`` (see ``docs/decisions.md``). It is importable from here
  only, not from ``worldflux.training``, as in the reference.
* Multi-host: set ``coordinator_address``, ``num_processes`` and ``process_id`` on every process (or none of
  them inside SLURM / Open MPI / a TPU pod: JAX detects the cluster); each process then samples its own
  ``batch_size / num_processes`` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

from worldflux.core.exceptions import ConfigurationError
from worldflux_jax.parallel import initialize_distributed

from .callbacks import Callback
from .config import TrainingConfig
from .trainer import Trainer

__all__ = ["DDPTrainer", "FSDPTrainer", "build_launch_config"]


def _enabled(config: TrainingConfig) -> bool:
    return bool(config.use_ddp) or config.distributed_mode == "ddp"


def _platform_devices(config: TrainingConfig) -> list[jax.Device]:
    name = config.resolve_device()
    platform = {"cuda": "gpu", "mps": "METAL"}.get(name.split(":")[0], name.split(":")[0])
    devices = [d for d in jax.devices() if d.platform == platform]
    return devices or jax.devices()


def build_launch_config(config: TrainingConfig) -> dict[str, Any]:
    """``{"enabled", "mode", "world_size", "device"}`` for ``config`` (see the module docstring)."""
    if not isinstance(config, TrainingConfig):
        raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
    enabled = _enabled(config)
    world_size = 1
    if enabled:
        if config.num_processes is not None and config.num_processes > 1 and jax.process_count() == 1:
            world_size = int(config.num_processes) * jax.local_device_count()
        else:
            world_size = len(_platform_devices(config))
    return {
        "enabled": enabled,
        "mode": "ddp" if enabled else "none",
        "world_size": world_size,
        "device": config.resolve_device(),
    }


class DDPTrainer(Trainer):
    """The data-parallel ``Trainer`` (same arguments and API): requires ``config.use_ddp=True``.

    Raises:
        ConfigurationError: ``use_ddp`` is False, the device is an indexed single device (``"cuda:0"``), only
            one device and one process are available, or the global batch does not divide by the device count.
    """

    def __init__(
        self,
        model: Any,
        config: TrainingConfig | None = None,
        callbacks: Sequence[Callback] | None = None,
        optimizer: Any = None,
        scheduler: Callable[[Any], Any] | None = None,
    ) -> None:
        config = config if config is not None else TrainingConfig()
        if not isinstance(config, TrainingConfig) or not config.use_ddp:
            raise ConfigurationError(
                "DDPTrainer requires TrainingConfig(use_ddp=True); use Trainer for single-device training"
            )
        initialize_distributed(
            config.coordinator_address,
            config.num_processes,
            config.process_id,
            timeout_s=int(config.distributed_timeout_s),
        )
        if ":" in config.resolve_device():
            raise ConfigurationError(
                f"DDPTrainer trains on every device of a platform; TrainingConfig.device={config.device!r} names "
                "one device (use 'auto', 'cpu', 'cuda' or 'tpu')"
            )
        if len(_platform_devices(config)) < 2 and jax.process_count() < 2:
            raise ConfigurationError(
                "DDPTrainer (use_ddp=True) needs more than one device or process, but JAX sees 1 "
                f"{config.resolve_device()} device in 1 process; set coordinator_address/num_processes/process_id "
                "for several hosts, or use Trainer"
            )
        super().__init__(model, config, callbacks=callbacks, optimizer=optimizer, scheduler=scheduler)
        if self.mesh is None:
            raise ConfigurationError("DDPTrainer could not build a data-parallel device mesh")


class FSDPTrainer:
    """Planned fully-sharded data-parallel trainer (reference placeholder, planned for v0.4.0).

    Raises:
        ConfigurationError: always; use ``DDPTrainer`` (data parallel over every device, parameters replicated).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ConfigurationError(
            "FSDPTrainer (fully sharded parameters) is planned for v0.4.0 and not available; use "
            "DDPTrainer(model, TrainingConfig(use_ddp=True)) for data-parallel training on several devices or hosts"
        )
