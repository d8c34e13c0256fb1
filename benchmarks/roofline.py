"""What this machine can do at best, and the floors it puts under the DreamerV3 ``size12m`` targets.

Measures, in one run, with XLA (the backend our steps run on):

- ``peak``: float32 GFLOP/s of a large square matmul (``--matmul`` N, default 4096; XLA or numpy, the better);
- ``stream``: GB/s of reading a large float32 array once (a jitted sum over ``--stream-mb`` MB);
- ``gru``: GB/s at which a ``lax.scan`` of batch-16 steps ``h <- tanh(h W^T)`` streams the DreamerV3
  recurrent weight ``W [3 * deter, deter]`` (torch layout, as ``nn.GRUCell``; the access pattern of the
  filtering loop and of imagination: each step must read all of ``W`` before the next can start);
- ``wgrad``: GFLOP/s of the GRU's weight-gradient product over a whole sequence,
  ``dgates [B*T, 3*deter]^T @ inputs [B*T, deter + stoch]``.

Then it prints lower bounds on the workloads the issues set targets for: the larger of their FLOPs at the
``peak`` rate (the step's XLA cost analysis, from ``benchmarks/dreamerv3_train_step.py``; for imagination, the
GRU matmuls alone) and the bytes they must read from memory (the recurrent weights, once per sequential step)
at the ``stream`` rate. The bounds are also given at the issues' own figure for this CPU (275 GFLOP/s). A
target below its floor cannot be met by any schedule of the same float32 computation. ``gru`` shows how far
the batch-16 recurrent matmul, the dominant operation of the vector step and of imagination, is from both.

A second, tighter bound for the vector step (``kernel floor``) times its GRU work at the speeds just
measured for those exact shapes: 50 forward and 50 input-gradient steps of the batch-16 product at the
``gru`` rate, and the weight gradients at the ``wgrad`` rate; the step's other FLOPs (encoder, decoder,
heads, posterior and prior nets) count at the ``peak`` rate, and memory-bound work (the optimizer) not at
all. With XLA:CPU's kernels on this machine the step cannot run faster than that. Targets are those of
issue #2 (5x the reference's bare step, 10x its rollout) and issue #5 (5x the reference's ``Trainer``).

    python -m benchmarks.roofline
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

if str(_Path(__file__).resolve().parents[1]) not in _sys.path:  # `python benchmarks/X.py`: repo root importable
    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))

import argparse
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from worldflux_jax.config import DreamerV3Config
from worldflux_jax.nn import dot_nt

# FLOPs per size12m train step (batch 16 x 50), XLA cost analysis with the time scans unrolled
# (benchmarks/dreamerv3_train_step.py prints them; docs/performance.md records them).
STEP_GFLOP = {"vector": 88.8, "image": 725.0}
# The issues' reference timings (torch WorldFlux 0.1.1 on this 2-core CPU) and the targets derived from them.
REFERENCE_S = {
    "step vector": 3.72,
    "step image": 23.9,
    "rollout vector": 0.23,
    "rollout image": 1.02,
    "trainer vector": 4.16,
    "trainer image": 24.8,
}
SPEEDUP = {"step": 5.0, "rollout": 10.0, "trainer": 5.0}
# "The same CPU does about 275 GFLOP/s on a large float32 matmul" (issue #2).
ISSUE_PEAK_GFLOPS = 275.0


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall-clock seconds of `fn` over `repeats` calls, after one warm-up call (the best run is the
    machine's capability; medians would mix in other tenants' load)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def peak_gflops(n: int, repeats: int) -> float:
    """float32 GFLOP/s of an ``[n, n] @ [n, n]`` matmul: the better of XLA under jit and numpy's BLAS (the
    machine's capability, not one library's)."""
    key = jax.random.key(0)
    a = jax.random.normal(key, (n, n), jnp.float32)
    b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    host_a, host_b = np.asarray(a), np.asarray(b)
    best = min(_best_seconds(lambda: matmul(a, b), repeats), _best_seconds(lambda: host_a @ host_b, repeats))
    return 2.0 * n**3 / best / 1e9


def stream_gbps(megabytes: int, repeats: int) -> float:
    """GB/s of reading a ``megabytes`` float32 array once (jitted sum)."""
    x = jnp.ones((megabytes * 2**20 // 4,), jnp.float32)
    total = jax.jit(jnp.sum)
    return x.nbytes / _best_seconds(lambda: total(x), repeats) / 1e9


def gru_stream_gbps(deter: int, batch: int, steps: int, repeats: int) -> float:
    """GB/s at which a scan of dependent batch-`batch` steps reads the recurrent weight ``[3*deter, deter]``."""
    key = jax.random.key(0)
    w = jax.random.normal(key, (3 * deter, deter), jnp.float32) / np.sqrt(deter)  # torch layout, as GRUCell
    h0 = jax.random.normal(jax.random.fold_in(key, 1), (batch, deter), jnp.float32)

    @jax.jit
    def loop(w: jax.Array, h: jax.Array) -> jax.Array:
        def body(h: jax.Array, _: None) -> tuple[jax.Array, None]:
            gates = dot_nt(h, w)
            return jnp.tanh(gates[:, :deter] + gates[:, deter:2 * deter] * gates[:, 2 * deter:]), None

        return jax.lax.scan(body, h, None, length=steps)[0]

    return steps * w.nbytes / _best_seconds(lambda: loop(w, h0), repeats) / 1e9


def weight_grad_gflops(deter: int, stoch: int, rows: int, repeats: int) -> float:
    """GFLOP/s of ``dgates [rows, 3*deter]^T @ inputs [rows, deter + stoch]`` (the GRU's weight gradients for a
    whole sequence, `rows` = batch x time), as the filtering loop's backward pass forms them."""
    key = jax.random.key(0)
    g = jax.random.normal(key, (rows, 3 * deter), jnp.float32)
    x = jax.random.normal(jax.random.fold_in(key, 1), (rows, deter + stoch), jnp.float32)
    product = jax.jit(lambda g, x: jax.lax.dot_general(g, x, (((0,), (0,)), ((), ()))))
    return 2.0 * rows * 3 * deter * (deter + stoch) / _best_seconds(lambda: product(g, x), repeats) / 1e9


def vector_step_kernel_floor(gru_gflops: float, wgrad_gflops: float, peak: float) -> float:
    """Seconds of the size12m vector step at the measured kernel speeds (see the docstring): per sequential
    step, forward and input gradient, ``[16, deter + stoch] x [deter + stoch, 3 deter]`` at `gru_gflops`; once,
    the weight gradients ``[3 deter, 800] x [800, deter + stoch]`` at `wgrad_gflops`; the step's other FLOPs
    at `peak`."""
    cfg = DreamerV3Config.from_size("size12m", obs_shape=(39,), action_dim=6)
    deter, stoch = cfg.deter_dim, cfg.stoch_discrete * cfg.stoch_classes
    batch, seq = 16, 50
    loop_gflop = 2 * seq * 2 * batch * (deter + stoch) * 3 * deter / 1e9
    wgrad_gflop = 2 * batch * seq * 3 * deter * (deter + stoch) / 1e9
    rest_gflop = STEP_GFLOP["vector"] - loop_gflop - wgrad_gflop
    return loop_gflop / gru_gflops + wgrad_gflop / wgrad_gflops + rest_gflop / peak


def floors(peak: float, stream: float) -> dict[str, float]:
    """Lower bounds in seconds on the size12m workloads (batch 16, sequence 50, 15 imagination steps): the
    larger of their FLOPs at `peak` GFLOP/s and their unavoidable memory reads at `stream` GB/s."""
    cfg = DreamerV3Config.from_size("size12m", obs_shape=(39,), action_dim=6)
    deter, stoch = cfg.deter_dim, cfg.stoch_discrete * cfg.stoch_classes
    batch, seq, horizon, action_dim = 16, 50, 15, 6
    recurrent_bytes = deter * 3 * deter * 4  # W_hh: read by every sequential step (50 MB: not cache-resident)
    out = {}
    for obs in ("vector", "image"):
        # 50 forward steps and 50 input-gradient steps (dgates @ W_hh) must each read W_hh.
        out[f"step {obs}"] = max(STEP_GFLOP[obs] / peak, 2 * seq * recurrent_bytes / (stream * 1e9))
    # Imagination: every step is a GRU step on [stoch, action, deter] (the reference's GRUCell), whose matmul
    # [B, stoch + action + deter] x [stoch + action + deter, 3 deter] reads all of W_ih and W_hh.
    gru_in = stoch + action_dim + deter
    imagine_gflop = horizon * 2 * batch * gru_in * 3 * deter / 1e9
    imagine_bytes = horizon * gru_in * 3 * deter * 4
    out["rollout vector"] = max(imagine_gflop / peak, imagine_bytes / (stream * 1e9))
    # The image encoder on the 16 start frames: four 4x4 stride-2 convs (cnn_depth 48), 118 MFLOP a frame.
    out["rollout image"] = max((imagine_gflop + batch * 0.118) / peak, imagine_bytes / (stream * 1e9))
    out["trainer vector"], out["trainer image"] = out["step vector"], out["step image"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure, then print the floors against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matmul", type=int, default=4096, help="square matmul size for the peak")
    parser.add_argument("--stream-mb", type=int, default=512, help="array size for the streaming read")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    cfg = DreamerV3Config.from_size("size12m", obs_shape=(39,), action_dim=6)
    peak = peak_gflops(args.matmul, args.repeats)
    stream = stream_gbps(args.stream_mb, args.repeats)
    gru = gru_stream_gbps(cfg.deter_dim, 16, 50, args.repeats)
    gru_gflops = 2 * 16 * cfg.deter_dim * 3 * cfg.deter_dim / (cfg.deter_dim * 3 * cfg.deter_dim * 4) * gru
    stoch = cfg.stoch_discrete * cfg.stoch_classes
    wgrad = weight_grad_gflops(cfg.deter_dim, stoch, 16 * 50, args.repeats)
    kernel_floor = vector_step_kernel_floor(gru_gflops, wgrad, peak)
    print(f"device={jax.default_backend()} x{jax.local_device_count()}  (best of {args.repeats})")
    print(f"peak   {args.matmul}^3 matmul        {peak:8.1f} GFLOP/s")
    print(f"stream {args.stream_mb} MB read            {stream:8.1f} GB/s")
    print(f"gru    [16,{cfg.deter_dim}]x[{3 * cfg.deter_dim},{cfg.deter_dim}]^T scan {gru:8.1f} GB/s "
          f"({gru_gflops:.1f} GFLOP/s)")
    print(f"wgrad  [800,{3 * cfg.deter_dim}]^T x [800,{cfg.deter_dim + stoch}]   {wgrad:8.1f} GFLOP/s")
    print(f"{'size12m workload':<18} {'reference':>10} {'target':>9} {'floor':>9} {'floor@275':>10}  "
          "target >= floor (floor@275: at the issues' figure of 275 GFLOP/s for this CPU)")
    at_issue_peak = floors(ISSUE_PEAK_GFLOPS, stream)
    for name, floor in floors(peak, stream).items():
        reference = REFERENCE_S[name]
        target = reference / SPEEDUP[name.split()[0]]
        print(f"{name:<18} {reference:9.3f}s {target:8.3f}s {floor:8.3f}s {at_issue_peak[name]:9.3f}s  "
              f"{'yes' if target >= floor else 'NO'} / {'yes' if target >= at_issue_peak[name] else 'NO'}")
    print(f"kernel floor of the vector step (GRU work at the gru and wgrad rates, the rest at peak): "
          f"{kernel_floor:.3f}s; "
          f"targets {REFERENCE_S['step vector'] / SPEEDUP['step']:.3f}s (step), "
          f"{REFERENCE_S['trainer vector'] / SPEEDUP['trainer']:.3f}s (Trainer)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
