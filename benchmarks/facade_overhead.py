"""Overhead of the torch-facing ``WorldModel`` facade over the raw jitted JAX core.

For each case, one step = ``model.loss(batch)`` + ``model.rollout(state, actions [15, B, A])`` with torch tensors
in and out (facade), against the same two computations as directly jitted core functions on the same params
(``model.core.loss`` / ``model.core.rollout`` under ``jax.jit``, JAX arrays in). Both sides read their results
the same way, in two patterns:

* ``overlap``: the loss value is read after the rollout call (facade: ``out.loss.item()`` after ``rollout``;
  raw: ``block_until_ready`` of both at the end), so the rollout is dispatched while the loss computes. The
  facade's ``loss`` and ``rollout`` return deferred outputs (``DeferredLossOutput``, ``DeferredTrajectory``)
  for exactly this; the facade reads the loss and the rewards' sum, which converts those two fields only.
* ``serial``: the loss value is read before the rollout is called, on both sides.
* ``states``: ``serial``, and the facade also reads the last imagined state's tensor, which builds the
  trajectory's 16 per-step ``State`` objects (against the raw core's ``serial`` step, which returns stacked
  arrays).

Compile time is excluded (warm-up calls first); reported times are medians over ``--repeats`` steps, facade and
raw core timed alternately (in reverse order every other repeat); the overhead is the median of the per-repeat
facade / raw ratios.

    python -m benchmarks.facade_overhead            # dreamerv3:size12m (vector (39,), image (3,64,64)), tdmpc2:5m
    python -m benchmarks.facade_overhead --quick    # the same cases on the ci presets (smoke test)

Cases: A = 6, batch 16, sequence length ``--seq-len`` (default 16), imagination horizon 15.
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

if str(_Path(__file__).resolve().parents[1]) not in _sys.path:  # `python benchmarks/X.py`: repo root importable
    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from worldflux import create_world_model
from worldflux.core import Batch

ACTION_DIM = 6
BATCH = 16
HORIZON = 15


def _paired_seconds(fns: list[Callable[[], Any]], repeats: int, warmup: int = 2) -> list[list[float]]:
    """Seconds per call of each of `fns` in each repeat. The calls of one repeat run back to back, so that
    drift in the machine's speed (other processes, clocks) affects all of them alike; odd repeats run them in
    reverse order, so that no function always runs right after the same other one."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    for repeat in range(repeats):
        for i in order if repeat % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return times


def _raw_step(
    model: Any, batch_arrays: dict[str, jax.Array], state: dict[str, jax.Array], actions: jax.Array, serial: bool
) -> Callable[[], Any]:
    """The loss + rollout of `model` as directly jitted core calls (same params, same sampling); with `serial`
    the loss is read before the rollout is dispatched."""
    core = model.core
    batch = model.core_batch(batch_arrays)
    if model.model_type == "dreamer":
        jitted_loss = jax.jit(lambda p, b, k: core.loss(p, b, k, "sample"))
        jitted_rollout = jax.jit(lambda p, s, a, k: core.rollout(p, s, a, k, "sample"))
        keys = iter(jax.random.split(jax.random.key(0), 100_000))

        def loss() -> Any:
            return jitted_loss(model.params, batch, next(keys))

        def rollout() -> Any:
            return jitted_rollout(model.params, state, actions, next(keys))
    else:
        jitted_loss = jax.jit(lambda p, t, b: core.loss(p, t, b))
        jitted_rollout = jax.jit(lambda p, s, a: core.rollout(p, s, a))

        def loss() -> Any:
            return jitted_loss(model.params, model.extras, batch)

        def rollout() -> Any:
            return jitted_rollout(model.params, state, actions)

    def step() -> Any:
        out = loss()
        if serial:
            float(out[0])
        return jax.block_until_ready((out, rollout()))

    return step


def run_case(model_id: str, obs_shape: tuple[int, ...], seq_len: int, repeats: int) -> dict[str, float]:
    """Median ms per step of the facade and of the raw core for one model, and the overhead in %, for each
    pattern (keys ``{overlap,serial,states}_{facade_ms,raw_ms,overhead_pct}``)."""
    model = create_world_model(model_id, obs_shape=obs_shape, action_dim=ACTION_DIM)
    gen = np.random.default_rng(0)
    obs = gen.standard_normal((BATCH, seq_len, *obs_shape)).astype(np.float32)
    acts = gen.uniform(-1, 1, (BATCH, seq_len, ACTION_DIM)).astype(np.float32)
    rewards = gen.standard_normal((BATCH, seq_len)).astype(np.float32)
    terms = np.zeros((BATCH, seq_len), np.float32)
    plan = gen.uniform(-1, 1, (HORIZON, BATCH, ACTION_DIM)).astype(np.float32)

    t_batch = Batch(
        obs=torch.from_numpy(obs),
        actions=torch.from_numpy(acts),
        rewards=torch.from_numpy(rewards),
        terminations=torch.from_numpy(terms),
    )
    t_state = model.encode(torch.from_numpy(obs[:, 0]))
    t_plan = torch.from_numpy(plan)

    def facade_overlap() -> Any:
        out = model.loss(t_batch)  # deferred: returns once the loss is dispatched
        trajectory = model.rollout(t_state, t_plan)
        return out.loss.item(), float(trajectory.rewards.sum())

    def facade_serial() -> Any:
        loss = model.loss(t_batch).loss.item()
        return loss, float(model.rollout(t_state, t_plan).rewards.sum())

    def facade_states() -> Any:
        loss = model.loss(t_batch).loss.item()
        trajectory = model.rollout(t_state, t_plan)
        last = trajectory.states[-1]
        return loss, float(trajectory.rewards.sum()), float(next(iter(last.tensors.values())).sum())

    required = model.io_contract().required_state_keys
    j_state = {k: jnp.asarray(t_state.tensors[k].numpy()) for k in required}
    j_batch = {
        "obs": jnp.asarray(obs),
        "actions": jnp.asarray(acts),
        "rewards": jnp.asarray(rewards),
        "terminations": jnp.asarray(terms),
    }
    raw_overlap, raw_serial = (_raw_step(model, j_batch, j_state, jnp.asarray(plan), s) for s in (False, True))

    times = _paired_seconds([facade_overlap, raw_overlap, facade_serial, raw_serial, facade_states], repeats)
    row = {}
    pairs = (("overlap", times[0], times[1]), ("serial", times[2], times[3]), ("states", times[4], times[3]))
    for name, facade_s, raw_s in pairs:
        # The median of the per-repeat ratios: a slow spell of the machine scales both calls of a repeat, so
        # it cancels in their ratio but not in a ratio of separate medians.
        ratio = statistics.median(f / r for f, r in zip(facade_s, raw_s, strict=True))
        row[f"{name}_facade_ms"] = statistics.median(facade_s) * 1e3
        row[f"{name}_raw_ms"] = statistics.median(raw_s) * 1e3
        row[f"{name}_overhead_pct"] = 100.0 * (ratio - 1.0)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run every case and print one line per case and pattern."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ci presets instead of size12m / 5m")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed steps per case (default 20 for DreamerV3, 300 for the 25 ms TD-MPC2 step; quick 5)",
    )
    parser.add_argument("--seq-len", type=int, default=None, help="batch sequence length (default 16, quick 4)")
    args = parser.parse_args(argv)
    seq_len = args.seq_len or (4 if args.quick else 16)
    dreamer, tdmpc2 = ("dreamerv3:ci", "tdmpc2:ci") if args.quick else ("dreamerv3:size12m", "tdmpc2:5m")
    # TD-MPC2's step is 50x shorter than DreamerV3's, and its overhead (about 0.5 ms) needs more samples to
    # resolve against the machine's noise (single steps vary by 10%).
    cases = [(dreamer, (39,), 20), (dreamer, (3, 64, 64), 20), (tdmpc2, (39,), 300)]
    print(
        f"device={jax.default_backend()} batch={BATCH} seq_len={seq_len} horizon={HORIZON} A={ACTION_DIM} "
        "(median ms per loss+rollout step)"
    )
    print(f"{'model':<20} {'obs':<12} {'pattern':<8} {'repeats':>7} {'facade_ms':>10} {'raw_ms':>10} {'overhead':>9}")
    for model_id, obs_shape, default_repeats in cases:
        repeats = args.repeats or (5 if args.quick else default_repeats)
        row = run_case(model_id, obs_shape, seq_len, repeats)
        for pattern in ("overlap", "serial", "states"):
            print(
                f"{model_id:<20} {str(obs_shape):<12} {pattern:<8} {repeats:>7} "
                f"{row[f'{pattern}_facade_ms']:10.2f} {row[f'{pattern}_raw_ms']:10.2f} "
                f"{row[f'{pattern}_overhead_pct']:8.1f}%"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
