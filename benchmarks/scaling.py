"""Data-parallel scaling of the core train step at a fixed global batch: 1, 2, 4 devices.

    python benchmarks/scaling.py [--preset ci] [--family tdmpc2] [--batch 16] [--seq 6] [--steps 20]

Each device count runs in its own subprocess (`XLA_FLAGS=--xla_force_host_platform_device_count=N` on CPU, so
the devices are simulated and share the CPU cores; on a GPU/TPU host the real devices are used, 1..N of them).
Prints the median step time (wall clock after `block_until_ready`), the compile time, and the ratio to the
1-device step, measured in this run. On simulated CPU devices the ratio measures the sharding overhead (the
target is <= 1.3x), not a speed-up: the devices share the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/scaling.py` puts benchmarks/ (not the repo root) on the path
    sys.path.insert(0, str(ROOT))


def measure(family_name: str, preset: str, batch: int, seq: int, steps: int, devices: int) -> dict[str, float]:
    """Run in the child: time the core step on the first `devices` devices."""
    import jax
    import numpy as np

    from worldflux_jax.family import config_from_id, family_for
    from worldflux_jax.optim import OptimizerSpec, build_optimizer
    from worldflux_jax.parallel import training_mesh
    from worldflux_jax.step import create_train_state, init_guard, make_train_step, replicate, shard_batch

    obs_shape, action_dim = (39,), 6
    config = config_from_id(f"{family_name}:{preset}", obs_shape=obs_shape, action_dim=action_dim)
    family = family_for(config)
    optimizer = build_optimizer(OptimizerSpec(learning_rate=3e-4, grad_clip=100.0))
    mesh = training_mesh(jax.devices()[:devices], batch)
    step = make_train_step(family, optimizer, mesh=mesh)
    params = family.init(jax.random.key(0))
    state = replicate(create_train_state(params, optimizer, family.init_extras(params), init_guard(1)), mesh)
    key = replicate(jax.random.key_data(jax.random.key(1)), mesh)
    rng = np.random.default_rng(0)
    host = {
        "obs": rng.standard_normal((batch, seq, *obs_shape)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (batch, seq, action_dim)).astype(np.float32),
        "rewards": rng.standard_normal((batch, seq)).astype(np.float32),
        "terminations": np.zeros((batch, seq), np.float32),
    }
    data = shard_batch(host, mesh)
    start = time.perf_counter()
    state, metrics = step(state, data, key)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = step(state, data, key)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return {
        "devices": devices,
        "step_ms": 1e3 * statistics.median(times),
        "compile_s": compile_s,
        "traces": step.trace_count,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="tdmpc2", choices=("tdmpc2", "dreamerv3"))
    parser.add_argument("--preset", default="ci")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--devices", default="1,2,4")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.family, args.preset, args.batch, args.seq, args.steps, args.child)))
        return {}
    counts = [int(c) for c in args.devices.split(",")]
    rows = []
    for count in counts:
        env = dict(os.environ)
        import jax

        if jax.default_backend() == "cpu":
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
            env["JAX_PLATFORMS"] = "cpu"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            str(count),
            "--family",
            args.family,
            "--preset",
            args.preset,
            "--batch",
            str(args.batch),
            "--seq",
            str(args.seq),
            "--steps",
            str(args.steps),
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["step_ms"]
    print(f"{args.family}:{args.preset}, global batch {args.batch} x {args.seq}, backend {jax.default_backend()}")
    print(f"{'devices':>8} {'step ms':>10} {'vs 1 dev':>9} {'compile s':>10}")
    for row in rows:
        row["ratio"] = row["step_ms"] / base
        print(f"{row['devices']:>8} {row['step_ms']:>10.2f} {row['ratio']:>8.2f}x {row['compile_s']:>10.1f}")
    result = {
        "family": args.family,
        "preset": args.preset,
        "batch": args.batch,
        "seq": args.seq,
        "backend": jax.default_backend(),
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
