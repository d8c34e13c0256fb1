"""Devices, hosts and compilation cache: what every entry point sets up before it builds the step.

- `initialize_distributed(...)`: `jax.distributed.initialize` from an explicit coordinator/process count/
  process id, or JAX's own cluster auto-detection (SLURM, Open MPI, TPU pods) with `auto=True`; on CPU the
  collectives are gloo. Every wait is bounded (`timeout_s`); failures are `DistributedError`s naming the
  coordinator.
- `training_mesh(devices, global_batch)`: the 1-D `"data"` mesh over all devices of all processes; a global
  batch that does not divide by the device count is a `ConfigurationError` naming both numbers.
- `enable_compilation_cache(directory)`: JAX's persistent compilation cache (default
  `$WORLDFLUX_COMPILATION_CACHE` or `~/.cache/worldflux/jax`; `"none"` disables).
- `devices_record(mesh)`: the `"devices"` entry of run manifests.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from worldflux_jax.errors import ConfigurationError, WorldFluxError
from worldflux_jax.step import DATA_AXIS

CACHE_ENV = "WORLDFLUX_COMPILATION_CACHE"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "worldflux", "jax")
JOIN_GRACE_S = 30  # JAX's own join deadline (which aborts the process) comes this long after ours


class DistributedError(WorldFluxError):
    """Joining or running a multi-process job failed (unreachable coordinator, a peer that died, ...)."""

    error_code = "WF-D001"


def enable_compilation_cache(directory: str | None = "auto") -> str | None:
    """Turn on JAX's persistent compilation cache in `directory` ("auto": `$WORLDFLUX_COMPILATION_CACHE` or
    `~/.cache/worldflux/jax`; None/"none"/"": off). Returns the directory used, or None. A cache dir
    configured by the user through JAX itself is left as it is."""
    if directory is None or str(directory).lower() in ("", "none", "off"):
        return None
    current = jax.config.jax_compilation_cache_dir
    if directory == "auto":
        if current:
            return current
        directory = os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    path = os.path.abspath(os.path.expanduser(str(directory)))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"compilation_cache_dir {path!r} cannot be created: {exc}") from exc
    if current != path:
        jax.config.update("jax_compilation_cache_dir", path)
    return path


def is_initialized() -> bool:
    from jax._src import distributed as _distributed

    return _distributed.global_state.client is not None


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
    timeout_s: int = 300,
    heartbeat_timeout_s: int = 100,
) -> dict[str, int]:
    """Join (or start) the multi-process job; returns `{"process_index", "process_count"}`.

    Explicit mode needs all of `coordinator_address` ("host:port"), `num_processes` (>= 1) and `process_id`
    (0 <= id < num_processes). `auto=True` with none of them uses JAX's cluster detection. With neither,
    nothing is initialised (a single process). Calling again after a successful join is a no-op.

    Raises:
        ConfigurationError: a missing/invalid field (named).
        DistributedError: the coordinator did not answer within `timeout_s`, or the join failed.
    """
    explicit = (coordinator_address, num_processes, process_id)
    if is_initialized():
        return {"process_index": jax.process_index(), "process_count": jax.process_count()}
    if all(v is None for v in explicit):
        if not auto:
            return {"process_index": 0, "process_count": 1}
        _gloo_on_cpu()
        try:
            jax.distributed.initialize(
                initialization_timeout=int(timeout_s), heartbeat_timeout_seconds=int(heartbeat_timeout_s)
            )
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(f"JAX cluster auto-detection failed: {exc}") from exc
        return {"process_index": jax.process_index(), "process_count": jax.process_count()}
    missing = [
        n for n, v in zip(("coordinator_address", "num_processes", "process_id"), explicit, strict=True) if v is None
    ]
    if missing:
        raise ConfigurationError(
            f"multi-process training needs coordinator_address, num_processes and process_id together; "
            f"missing: {missing}"
        )
    if not isinstance(coordinator_address, str) or ":" not in coordinator_address:
        raise ConfigurationError(f"coordinator_address must be 'host:port', got {coordinator_address!r}")
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(
            f"coordinator_address must be 'host:port' with a port in 1..65535, got {coordinator_address!r}"
        )
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ConfigurationError(f"num_processes must be an integer >= 1, got {num_processes!r}")
    if isinstance(process_id, bool) or not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise ConfigurationError(f"process_id must be an integer in [0, {num_processes}), got {process_id!r}")
    _gloo_on_cpu()
    if process_id != 0:
        # JAX's client aborts the whole process (not an exception) when the coordinator never answers: probe it
        # first, with the same bound, so the caller gets a named error.
        _probe(coordinator_address, host, int(port), process_id, num_processes, float(timeout_s))
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=int(timeout_s) + JOIN_GRACE_S,
            heartbeat_timeout_seconds=int(heartbeat_timeout_s),
        )
    except Exception as exc:  # noqa: BLE001 - XLA raises several types (XlaRuntimeError, RuntimeError)
        raise DistributedError(
            f"could not join the job at coordinator {coordinator_address} as process {process_id} of "
            f"{num_processes} within {timeout_s} s: {exc}"
        ) from exc
    return {"process_index": jax.process_index(), "process_count": jax.process_count()}


def _probe(address: str, host: str, port: int, process_id: int, num_processes: int, timeout_s: float) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, timeout_s)):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"could not join the job at coordinator {address} as process {process_id} of {num_processes} "
                    f"within {timeout_s:.0f} s: the coordinator does not answer ({exc})"
                ) from exc
            time.sleep(0.25)


def _gloo_on_cpu() -> None:
    platforms = os.environ.get("JAX_PLATFORMS", "") or str(jax.config.jax_platforms or "")
    if platforms in ("", "cpu") or platforms.startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def training_mesh(devices: list[jax.Device] | None = None, global_batch: int | None = None) -> Mesh:
    """The `"data"` mesh over `devices` (default: every device of every process).

    Raises:
        ConfigurationError: `global_batch` does not divide by the device count (both numbers named).
    """
    devices = list(devices if devices is not None else jax.devices())
    check_divisible(global_batch, len(devices))
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_divisible(global_batch: int | None, device_count: int, field: str = "batch_size") -> None:
    if global_batch is not None and int(global_batch) % int(device_count) != 0:
        raise ConfigurationError(
            f"{field}={global_batch} (the global batch) must divide evenly by the {device_count} data-parallel "
            f"devices; use a multiple of {device_count}"
        )


def devices_record(mesh: Mesh | None, device: jax.Device | None = None) -> dict[str, Any]:
    """`{"count", "platform", "mesh": {"data": N}, "process_count"}` for a run manifest."""
    if mesh is None:
        dev = device if device is not None else jax.devices()[0]
        return {"count": 1, "platform": dev.platform, "mesh": {DATA_AXIS: 1}, "process_count": jax.process_count()}
    devs = list(mesh.devices.flat)
    return {
        "count": len(devs),
        "platform": devs[0].platform,
        "mesh": {name: int(size) for name, size in mesh.shape.items()},
        "process_count": jax.process_count(),
    }
