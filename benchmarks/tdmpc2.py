"""TD-MPC2 speed: jitted train step and planner latency, against an eager torch step measured in the same run.

    python benchmarks/tdmpc2.py [--preset 5m] [--steps 50] [--torch-steps 20]

Prints steady-state train-step time (compile excluded and reported separately) for obs `(39,)`,
action_dim 6, at batch 16 x sequence 6 (horizon + 1) and at TD-MPC2's own batch 256, the same step of the
torch implementation of the same architecture (`benchmarks/torch_tdmpc2.py`, eager, same machine, same run)
with the speed-up ratio, and the latency of one planning call (one action per environment) for CEM and
MPPI at N = 1 and N = 16 environments.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # `python benchmarks/tdmpc2.py`: repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from worldflux_jax.config import TDMPC2Config
from worldflux_jax.tdmpc2 import TDMPC2, Batch
from worldflux_jax.train import make_optimizer, make_train_step


def bench_torch(cfg: TDMPC2Config, batch_size: int, seq: int, steps: int) -> float | None:
    """Median eager torch step (loss, backward, clip, Adam, target EMA) of the same architecture, seconds."""
    try:
        import torch

        from benchmarks.torch_tdmpc2 import TorchTDMPC2, torch_train_step
    except ImportError as err:
        print(f"  torch baseline unavailable: {err}")
        return None
    torch.manual_seed(0)
    model = TorchTDMPC2(cfg.to_dict())
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    rng = np.random.default_rng(0)
    batch = (
        torch.from_numpy(rng.standard_normal((batch_size, seq, *cfg.obs_shape), dtype=np.float32)),
        torch.from_numpy(rng.uniform(-1, 1, (batch_size, seq, cfg.action_dim)).astype(np.float32)),
        torch.from_numpy(rng.standard_normal((batch_size, seq), dtype=np.float32)),
        torch.zeros(batch_size, seq),
    )
    torch_train_step(model, optimizer, batch, cfg.grad_clip)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        torch_train_step(model, optimizer, batch, cfg.grad_clip)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time(fn: Any, *args: Any, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_train(model: TDMPC2, batch_size: int, seq: int, steps: int) -> dict[str, float]:
    cfg = model.config
    rng = np.random.default_rng(0)
    batch = Batch(
        jnp.asarray(rng.standard_normal((batch_size, seq, *cfg.obs_shape), dtype=np.float32)),
        jnp.asarray(rng.uniform(-1, 1, (batch_size, seq, cfg.action_dim)).astype(np.float32)),
        jnp.asarray(rng.standard_normal((batch_size, seq), dtype=np.float32)),
        jnp.zeros((batch_size, seq), jnp.float32),
    )
    optimizer = make_optimizer(cfg.learning_rate, cfg.grad_clip)
    state = model.make_train_state(jax.random.key(0), optimizer)
    step_fn = make_train_step(model.train_loss, optimizer, post_update=model.target_update)
    key = jax.random.key(1)
    start = time.perf_counter()
    compiled = step_fn.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - start
    state, metrics = compiled(state, batch, key)
    jax.block_until_ready(metrics)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batch, jax.random.fold_in(key, i))
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return {"compile_s": compile_s, "step_s": statistics.median(times)}


def bench_planners(model: TDMPC2, num_envs: int, repeats: int) -> dict[str, float]:
    from worldflux_jax.planners import make_cem_planner, make_mppi_planner

    cfg = model.config
    params = model.init(jax.random.key(0))
    obs = jnp.asarray(np.random.default_rng(1).standard_normal((num_envs, *cfg.obs_shape), dtype=np.float32))
    state = model.encode(params, obs)
    pm = model.planning_model()
    common = dict(
        horizon=cfg.horizon, action_dim=cfg.action_dim, num_samples=cfg.num_samples, num_elites=cfg.num_elites
    )
    cem = make_cem_planner(pm, iterations=6, action_low=-1.0, action_high=1.0, **common)
    mppi = make_mppi_planner(
        pm, temperature=cfg.temperature, momentum=cfg.momentum, gamma=cfg.gamma, iterations=6, **common
    )
    key = jax.random.key(2)
    return {
        "cem_s": _time(cem, params, state, key, repeats=repeats),
        "mppi_s": _time(mppi, params, state, key, repeats=repeats),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="5m")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--torch-steps", type=int, default=20, help="timed torch steps (0 skips the torch side)")
    parser.add_argument("--no-planners", action="store_true")
    args = parser.parse_args(argv)

    cfg = TDMPC2Config.from_size(args.preset, obs_shape=(39,), action_dim=6)
    model = TDMPC2(cfg)
    seq = cfg.horizon + 1
    print(f"devices: {jax.devices()}  jax {jax.__version__}")
    print(
        f"== tdmpc2:{args.preset} obs (39,), A=6, latent {cfg.latent_dim}, hidden {cfg.hidden_dim}, "
        f"Q x{cfg.num_q_networks}"
    )
    for batch_size in (16, 256):
        r = bench_train(model, batch_size, seq, args.steps)
        line = (
            f"  train step B={batch_size:3d} x T={seq}: {r['step_s'] * 1e3:7.2f} ms "
            f"({1 / r['step_s']:.0f} steps/s, compile {r['compile_s']:.1f} s)"
        )
        torch_s = bench_torch(cfg, batch_size, seq, args.torch_steps) if args.torch_steps > 0 else None
        if torch_s is not None:
            line += f" | torch (same run) {torch_s * 1e3:.1f} ms -> {torch_s / r['step_s']:.1f}x"
        print(line)
    if not args.no_planners:
        for n in (1, 16):
            p = bench_planners(model, n, repeats=10)
            print(
                f"  planning N={n:2d} envs ({cfg.num_samples} samples, 6 iterations, H={cfg.horizon}): "
                f"CEM {p['cem_s'] * 1e3:.1f} ms, MPPI {p['mppi_s'] * 1e3:.1f} ms per action "
                f"({p['mppi_s'] / n * 1e3:.2f} ms per env)"
            )


if __name__ == "__main__":
    main()
