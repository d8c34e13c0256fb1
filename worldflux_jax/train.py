"""Training script for GPU/TPU hosts: pure JAX (never imports torch or `worldflux`), the core's one train step.

    python -m worldflux_jax.train --model dreamerv3:size12m --data buffer.npz --steps N --batch-size B \\
        --seq-len T --lr LR --out DIR [--seed S] [--resume] [--precision f32|bf16] [--checkpoint-every K] \\
        [--log-every K] [--coordinator HOST:PORT --num-processes P --process-id I]

- `--data`: a `worldflux.training.ReplayBuffer.save` `.npz` (see `worldflux_jax.replay`); every process reads the
  same file and gathers only its rows of each global batch.
- Data-parallel over every device of every process (1-D `"data"` mesh, `--batch-size` is the global batch and
  must divide by the device count). Several hosts join through `jax.distributed` (`--coordinator`,
  `--num-processes`, `--process-id`, or none of them with `--auto-cluster` for SLURM/Open MPI/TPU detection).
- Writes `DIR/metrics.jsonl` (one JSON object per logged step: `step`, `loss`, the loss components, `grad_norm`,
  `skipped_steps`, `steps_per_sec`), log lines on stdout, orbax checkpoints under `DIR/checkpoints/<step>`
  (asynchronous, multi-process) and at the end `DIR/model/` (`config.json`, `worldflux_meta.json`,
  `model.safetensors` in the reference torch names; `worldflux.WorldModel.from_pretrained` loads it). Only
  process 0 writes logs, metrics and the model directory.
- `--resume` continues from the latest complete checkpoint in `DIR/checkpoints/`.
- SIGTERM/SIGINT: stop at the next step boundary, wait for in-flight checkpoint writes, exit 143 / 130.
- Exit codes: 0 success, 2 bad arguments (the message names the flag), 1 runtime failure (including
  `Numerical instability at step N` after `--max-nonfinite-steps` consecutive non-finite steps, and a peer
  process or coordinator that stops answering for `--timeout` seconds).

The core step API is re-exported here for older imports (`from worldflux_jax.train import make_train_step`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from worldflux_jax.optim import make_optimizer
from worldflux_jax.step import (
    DATA_AXIS,
    HALT_KEY,
    TrainState,
    create_train_state,
    data_mesh,
    make_train_step,
    shard_batch,
)

__all__ = [
    "DATA_AXIS",
    "TrainState",
    "create_train_state",
    "data_mesh",
    "main",
    "make_optimizer",
    "make_train_step",
    "shard_batch",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


def _positive_int(flag: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive integer, got {value}")
        return value

    return parse


def _nonnegative_int(flag: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a non-negative integer, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{flag} must be a non-negative integer, got {value}")
        return value

    return parse


def _positive_float(flag: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive number, got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{flag} must be a positive finite number, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m worldflux_jax.train", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model id, e.g. dreamerv3:size12m or tdmpc2:5m")
    p.add_argument("--data", required=True, help="replay .npz written by ReplayBuffer.save")
    p.add_argument("--steps", required=True, type=_positive_int("--steps"), help="total train steps")
    p.add_argument("--batch-size", required=True, type=_positive_int("--batch-size"), help="global batch size")
    p.add_argument("--seq-len", required=True, type=_positive_int("--seq-len"), help="sequence length")
    p.add_argument("--lr", required=True, type=_positive_float("--lr"), help="learning rate (AdamW)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=_nonnegative_int("--seed"), default=0)
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint")
    p.add_argument("--precision", choices=("f32", "bf16"), default="f32")
    p.add_argument("--checkpoint-every", type=_positive_int("--checkpoint-every"), default=1000)
    p.add_argument("--log-every", type=_positive_int("--log-every"), default=100)
    p.add_argument("--grad-clip", type=float, default=100.0, help="global-norm clipping (0 disables)")
    p.add_argument("--max-nonfinite-steps", type=_positive_int("--max-nonfinite-steps"), default=1)
    p.add_argument("--coordinator", default=None, help="HOST:PORT of process 0's coordinator")
    p.add_argument("--num-processes", type=_positive_int("--num-processes"), default=None)
    p.add_argument("--process-id", type=_nonnegative_int("--process-id"), default=None)
    p.add_argument("--auto-cluster", action="store_true", help="jax.distributed cluster auto-detection")
    p.add_argument(
        "--timeout",
        type=_positive_int("--timeout"),
        default=600,
        help="seconds to wait for the coordinator / for a step before giving up",
    )
    p.add_argument("--compilation-cache", default="auto", help="JAX compilation cache dir ('none' disables)")
    return p


class _Stop:
    """Signal flag: the loop stops at the next step boundary."""

    def __init__(self) -> None:
        self.code: int | None = None

    def install(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            del frame
            self.code = EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


class _Watchdog:
    """Ends the process (exit 1, a clear message) when no step finishes within `timeout` seconds, e.g. because
    a peer process died mid-collective. Armed after the first step (compilation) completes."""

    def __init__(self, timeout: float) -> None:
        self.timeout = float(timeout)
        self.last = time.monotonic()
        self.armed = False
        self.message = ""
        threading.Thread(target=self._run, name="worldflux-train-watchdog", daemon=True).start()

    def beat(self, what: str = "a train step", timeout: float | None = None) -> None:
        self.last = time.monotonic()
        if timeout is not None:
            self.timeout = float(timeout)
        self.message = (
            f"no progress for {self.timeout:.0f} s waiting for {what}; a peer process or the coordinator has "
            "probably died (see --timeout)"
        )
        self.armed = True

    def expect(self, message: str, timeout: float) -> None:
        """Arm with a specific message (e.g. while joining the job)."""
        self.last = time.monotonic()
        self.timeout = float(timeout)
        self.message = message
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    def _run(self) -> None:
        while True:
            time.sleep(0.5)
            if self.armed and time.monotonic() - self.last > self.timeout:
                sys.stderr.write(f"error: {self.message}\n")
                sys.stderr.flush()
                os._exit(EXIT_FAILURE)


def _usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    sys.stderr.write(f"{parser.prog}: error: {message}\n")
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 naming the flag
    trio = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in trio) and any(v is None for v in trio):
        return _usage_error(parser, "--coordinator, --num-processes and --process-id must be given together")
    if args.process_id is not None and args.process_id >= args.num_processes:
        return _usage_error(
            parser, f"--process-id must be < --num-processes ({args.num_processes}), got {args.process_id}"
        )
    stop = _Stop()
    stop.install()
    from worldflux_jax.errors import ConfigurationError
    from worldflux_jax.parallel import DistributedError, enable_compilation_cache, initialize_distributed

    watchdog = _Watchdog(args.timeout)
    if args.coordinator is not None:
        watchdog.expect(
            f"could not join the job at coordinator {args.coordinator} as process {args.process_id} of "
            f"{args.num_processes} within {args.timeout} s",
            args.timeout + 5,
        )
    try:
        initialize_distributed(
            args.coordinator,
            args.num_processes,
            args.process_id,
            auto=args.auto_cluster,
            timeout_s=args.timeout,
            heartbeat_timeout_s=max(10, 2 * args.timeout),
        )
    except ConfigurationError as exc:
        return _usage_error(parser, f"--coordinator: {exc}")
    except DistributedError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILURE
    try:
        watchdog.disarm()
        enable_compilation_cache(args.compilation_cache)
        return _train(args, stop, watchdog)
    except ConfigurationError as exc:
        return _usage_error(parser, str(exc))
    except _Halt as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - any runtime failure is exit 1 with its message
        sys.stderr.write(f"error: training failed: {type(exc).__name__}: {exc}\n")
        return EXIT_FAILURE


class _Halt(RuntimeError):
    pass


def _train(args: argparse.Namespace, stop: _Stop, watchdog: _Watchdog) -> int:
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    from worldflux_jax.errors import ConfigurationError
    from worldflux_jax.export import write_model_dir
    from worldflux_jax.family import config_from_id, family_for
    from worldflux_jax.optim import OptimizerSpec, build_optimizer
    from worldflux_jax.parallel import training_mesh
    from worldflux_jax.prefetch import Prefetcher
    from worldflux_jax.replay import ReplayFile
    from worldflux_jax.step import init_guard, replicate

    main_process = jax.process_index() == 0
    nproc = jax.process_count()
    replay = ReplayFile(args.data)
    try:
        config = config_from_id(args.model, obs_shape=replay.obs_shape, action_dim=replay.action_dim)
    except ConfigurationError as exc:
        raise ConfigurationError(f"--model: {exc}") from exc
    family = family_for(config)
    try:
        mesh = training_mesh(None, args.batch_size)
    except ConfigurationError as exc:
        raise ConfigurationError(f"--batch-size: {exc}") from exc
    if args.batch_size % nproc:
        raise ConfigurationError(f"--batch-size {args.batch_size} must divide by the {nproc} processes")
    starts = replay.starts(args.seq_len)
    optimizer = build_optimizer(OptimizerSpec(name="adamw", learning_rate=args.lr, grad_clip=args.grad_clip or None))
    step_fn = make_train_step(family, optimizer, mesh=mesh, precision=None if args.precision == "f32" else "bf16")

    params = family.init(jax.random.key(args.seed))
    host_state = create_train_state(params, optimizer, family.init_extras(params))
    state = replicate(host_state, mesh)
    key = replicate(jax.random.key_data(jax.random.key(args.seed)), mesh)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    manager = ocp.CheckpointManager(
        os.path.join(out, "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=3, create=True, enable_async_checkpointing=True),
    )
    if args.resume and manager.latest_step() is not None:
        latest = manager.latest_step()
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        state = manager.restore(latest, args=ocp.args.StandardRestore(abstract))
        _log(main_process, f"resumed from {os.path.join(out, 'checkpoints', str(latest))} (step {latest})")
    state = state.replace(guard=replicate(init_guard(args.max_nonfinite_steps), mesh))
    start = int(jax.device_get(state.step.addressable_data(0)))
    local = args.batch_size // nproc
    rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
    prefetcher = Prefetcher(
        lambda s: replay.batch(starts, args.seed, s, args.batch_size, args.seq_len, rows), start, args.steps, depth=2
    )
    metrics_file = open(os.path.join(out, "metrics.jsonl"), "a", encoding="utf-8") if main_process else None
    _log(
        main_process,
        f"training {args.model} on {len(mesh.devices.flat)} device(s) in {nproc} process(es), "
        f"steps {start}..{args.steps}, global batch {args.batch_size}",
    )
    inflight: list[Any] = []
    compiled = None
    t0, s0 = time.perf_counter(), start
    step = start
    try:
        while step < args.steps:
            if stop.code is not None:
                break
            batch = shard_batch(prefetcher.get(), mesh)
            if compiled is None:
                compiled = _compile_in_step(step_fn, state, batch, key, args.timeout, watchdog)
                t0 = time.perf_counter()
            state, metrics = compiled(state, batch, key)
            step += 1
            inflight.append(metrics)
            if len(inflight) > 2:
                jax.block_until_ready(inflight.pop(0)[HALT_KEY])
                watchdog.beat()
            if step == start + 1:
                jax.block_until_ready(metrics[HALT_KEY])
                watchdog.beat()
            if step % args.log_every == 0 or step == args.steps:
                host = {k: float(np.asarray(v.addressable_data(0))) for k, v in metrics.items()}
                watchdog.beat()
                if host[HALT_KEY] > 0:
                    raise _Halt(
                        f"Numerical instability at step {int(host[HALT_KEY])}: non-finite loss or gradients "
                        f"for {args.max_nonfinite_steps} consecutive step(s); parameters kept at step "
                        f"{int(host[HALT_KEY]) - 1}"
                    )
                del host[HALT_KEY]
                rate = (step - s0) / max(time.perf_counter() - t0, 1e-9)
                record = {"step": step, **host, "steps_per_sec": rate}
                if metrics_file is not None:
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                _log(
                    main_process,
                    f"step {step}/{args.steps} | loss {host['loss']:.6g} | "
                    f"skipped {int(host['skipped_steps'])} | {rate:.2f} steps/s",
                )
            if step % args.checkpoint_every == 0 or step == args.steps:
                manager.save(step, args=ocp.args.StandardSave(state.replace(guard=None)))
        watchdog.beat("checkpoint writes")
        manager.wait_until_finished()
        watchdog.beat("checkpoint writes")
    finally:
        prefetcher.close()
        if metrics_file is not None:
            metrics_file.close()
    if stop.code is not None:
        manager.close()
        _log(
            main_process,
            f"stopped by signal at step {step}; the last complete checkpoint is step {manager.latest_step()}",
        )
        return stop.code
    if main_process:
        host_params = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), (state.params, state.extras))
        path = write_model_dir(os.path.join(out, "model"), family, *host_params)
        _log(True, f"wrote {path}")
    manager.close()
    return EXIT_OK


def _compile_in_step(step_fn: Any, state: Any, batch: Any, key: Any, timeout: int, watchdog: _Watchdog) -> Any:
    """Compile the step (ahead of time), then wait for every process at a coordination-service barrier: the
    first collective's gloo/NCCL rendezvous has a short fixed deadline, which a process whose compilation
    finished much earlier than its peers' would otherwise exceed."""
    import jax
    from jax._src import distributed as _distributed

    compiled = step_fn.lower(state, batch, key).compile()
    client = _distributed.global_state.client
    if client is not None and jax.process_count() > 1:
        watchdog.expect(f"the other processes did not finish compiling within {timeout} s", timeout + 5)
        client.wait_at_barrier("worldflux_jax.train.compiled", timeout_in_ms=int(timeout) * 1000)
        watchdog.disarm()
    return compiled


def _log(enabled: bool, message: str) -> None:
    if enabled:
        print(f"[worldflux_jax.train] {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
