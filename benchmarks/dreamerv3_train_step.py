"""DreamerV3 train-step and rollout speed: our jitted JAX core vs. the torch implementation of the same
architecture, measured in one run.

    python benchmarks/dreamerv3_train_step.py [--preset size12m] [--obs image vector] [--steps 5]
                                              [--torch-steps 1] [--batch 16] [--seq 50]

For each observation type it prints: compile time, steady-state seconds per train step (median, compile
excluded), steps/s, transitions/s, the compiled step's FLOPs (`cost_analysis`) and achieved GFLOP/s; the
encode + 15-step rollout time; and, with `--torch-steps > 0`, the same for the eager torch replica
(`benchmarks/torch_dreamer.py`) and the speed-up ratios.
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

if str(_Path(__file__).resolve().parents[1]) not in _sys.path:  # `python benchmarks/X.py`: repo root importable
    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))

import argparse
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from worldflux_jax.config import DreamerV3Config
from worldflux_jax.dreamer import Batch, DreamerV3
from worldflux_jax.train import create_train_state, make_optimizer, make_train_step

OBS_SHAPES = {"image": (3, 64, 64), "vector": (39,)}
ROLLOUT_STEPS = 15


def _block(tree: Any) -> None:
    jax.block_until_ready(tree)


def step_flops(config: DreamerV3Config, batch: Batch) -> float:
    """FLOPs of one train step. XLA's cost analysis counts a loop body once, so this lowers (without
    compiling) a copy of the step whose time scans are fully unrolled."""
    model = DreamerV3(config, scan_unroll=True)
    optimizer = make_optimizer(config.learning_rate, config.grad_clip)
    state = jax.eval_shape(lambda: create_train_state(model.init(jax.random.key(0)), optimizer))
    lowered = make_train_step(model.train_loss, optimizer, donate=False).lower(state, batch, jax.random.key(0))
    analysis = lowered.cost_analysis()
    if isinstance(analysis, list):  # some JAX versions return one dict per program
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan"))) if analysis else float("nan")


def make_batch(rng: np.random.Generator, obs_shape: tuple[int, ...], b: int, t: int, a: int) -> Batch:
    return Batch(
        jnp.asarray(rng.standard_normal((b, t, *obs_shape), dtype=np.float32)),
        jnp.asarray(rng.uniform(-1, 1, (b, t, a)).astype(np.float32)),
        jnp.asarray(rng.standard_normal((b, t), dtype=np.float32)),
        jnp.asarray((rng.random((b, t)) < 0.05).astype(np.float32)),
    )


def bench_jax(config: DreamerV3Config, batch: Batch, steps: int) -> dict[str, float]:
    model = DreamerV3(config)
    optimizer = make_optimizer(config.learning_rate, config.grad_clip)
    state = create_train_state(model.init(jax.random.key(0)), optimizer)
    step_fn = make_train_step(model.train_loss, optimizer)
    key = jax.random.key(1)

    start = time.perf_counter()
    compiled = step_fn.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - start
    flops = step_flops(config, batch)

    state, metrics = compiled(state, batch, key)  # warm-up
    _block(metrics)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batch, jax.random.fold_in(key, i))
        _block(metrics)
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)

    b = batch.obs.shape[0]
    actions = jnp.swapaxes(batch.actions[:, :ROLLOUT_STEPS], 0, 1)
    if actions.shape[0] < ROLLOUT_STEPS:
        actions = jnp.zeros((ROLLOUT_STEPS, b, config.action_dim))

    @jax.jit
    def encode_rollout(params: Any, obs: jax.Array, actions: jax.Array, key: jax.Array) -> Any:
        k1, k2 = jax.random.split(key)
        start_state = model.encode(params, obs, k1)
        return model.rollout(params, start_state, actions, k2)

    _block(encode_rollout(state.params, batch.obs[:, 0], actions, key))
    rollout_times = []
    for i in range(max(steps, 5)):
        start = time.perf_counter()
        _block(encode_rollout(state.params, batch.obs[:, 0], actions, jax.random.fold_in(key, i)))
        rollout_times.append(time.perf_counter() - start)
    return {
        "compile_s": compile_s,
        "step_s": step_s,
        "flops": flops,
        "rollout_s": statistics.median(rollout_times),
        "loss": float(metrics["loss"]),
    }


def bench_torch(config: DreamerV3Config, batch: Batch, steps: int) -> dict[str, float] | None:
    try:
        import torch

        from benchmarks.torch_dreamer import TorchDreamerV3
    except ImportError as err:  # the torch replica is optional for this script
        print(f"  torch baseline unavailable: {err}")
        return None
    torch.manual_seed(0)
    model = TorchDreamerV3(config.to_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    obs, actions, rewards, terms = (torch.from_numpy(np.asarray(x)) for x in batch)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        total, _ = model.loss(obs, actions, rewards, terms, sampling="sample")
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        times.append(time.perf_counter() - start)
    rollout_times = []
    with torch.no_grad():
        act = actions[:, :ROLLOUT_STEPS].transpose(0, 1).contiguous()
        for _ in range(max(steps, 3)):
            start = time.perf_counter()
            model.rollout(model.encode(obs[:, 0], sampling="sample"), act, sampling="sample")
            rollout_times.append(time.perf_counter() - start)
    return {"step_s": statistics.median(times), "rollout_s": statistics.median(rollout_times)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="size12m")
    parser.add_argument("--obs", nargs="+", default=["image", "vector"], choices=sorted(OBS_SHAPES))
    parser.add_argument("--steps", type=int, default=5, help="timed JAX steps (after compile + warm-up)")
    parser.add_argument("--torch-steps", type=int, default=1, help="timed torch steps (0 to skip)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=50)
    parser.add_argument("--action-dim", type=int, default=6)
    args = parser.parse_args(argv)

    print(f"devices: {jax.devices()}  jax {jax.__version__}")
    rng = np.random.default_rng(0)
    for kind in args.obs:
        config = DreamerV3Config.from_size(args.preset, obs_shape=OBS_SHAPES[kind], action_dim=args.action_dim)
        batch = make_batch(rng, config.obs_shape, args.batch, args.seq, args.action_dim)
        print(
            f"\n== dreamerv3:{args.preset} {kind} obs {config.obs_shape}, A={args.action_dim}, "
            f"B={args.batch}, T={args.seq}"
        )
        r = bench_jax(config, batch, args.steps)
        transitions = args.batch * args.seq
        print(
            f"  jax   compile {r['compile_s']:.1f} s | train step {r['step_s']:.3f} s "
            f"({1 / r['step_s']:.2f} steps/s, {transitions / r['step_s']:.0f} transitions/s)"
        )
        print(
            f"        step FLOPs {r['flops'] / 1e9:.1f} GFLOP -> {r['flops'] / r['step_s'] / 1e9:.1f} GFLOP/s "
            f"| encode + {ROLLOUT_STEPS}-step rollout {r['rollout_s'] * 1e3:.1f} ms"
        )
        if args.torch_steps > 0:
            t = bench_torch(config, batch, args.torch_steps)
            if t is not None:
                print(f"  torch train step {t['step_s']:.3f} s | encode + rollout {t['rollout_s'] * 1e3:.1f} ms")
                print(
                    f"  speed-up (torch / jax): train step {t['step_s'] / r['step_s']:.1f}x, "
                    f"rollout {t['rollout_s'] / r['rollout_s']:.1f}x"
                )


if __name__ == "__main__":
    main()
