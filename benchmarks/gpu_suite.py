"""GPU suite: our Trainer step vs the bare core step vs the torch implementation of the same architecture.

    python benchmarks/gpu_suite.py [--out results/gpu_suite] [--steps 30]      # on a GPU host (< 8 min on an H200)
    python benchmarks/gpu_suite.py --quick                                      # CPU smoke run on the ci presets

Cases: DreamerV3 `size12m` (image (3, 64, 64) and vector (39,)), `size50m` (image), TD-MPC2 `5m` and `48m`
(vector (39,)), each in float32 and bfloat16, batch 16 (DreamerV3 sequence 50, TD-MPC2 horizon + 1). For each:

- bare: `worldflux_jax.step.make_train_step` on device-resident arrays (the core's ceiling);
- trainer: `worldflux.training.Trainer` on a `ReplayBuffer` (host sampling, prefetch, transfer, callbacks),
  the median interval between consecutive steps after warm-up;
- torch: the eager torch implementation in `benchmarks/` (`torch_dreamer.py`, `torch_tdmpc2.py`) on the same
  device (float32; bfloat16 through `torch.autocast`).

Compile time (first step) is reported separately. Writes `OUT.json` and `OUT.md` (a markdown table with the
ratios trainer/bare and torch/bare). Targets on the GPU: bare >= 5x faster than torch at size12m; trainer within
5% of bare. `--quick` runs the ci presets on CPU with few steps (a test runs it so the suite never rots).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # `python benchmarks/gpu_suite.py`: repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

FULL_CASES = [
    ("dreamerv3", "size12m", (3, 64, 64)),
    ("dreamerv3", "size12m", (39,)),
    ("dreamerv3", "size50m", (3, 64, 64)),
    ("tdmpc2", "5m", (39,)),
    ("tdmpc2", "48m", (39,)),
]
QUICK_CASES = [("dreamerv3", "ci", (39,)), ("tdmpc2", "ci", (39,))]
ACTION_DIM = 6
BATCH = 16


def _seq(family: Any) -> int:
    return int(family.config.horizon) + 1 if family.family == "tdmpc2" else 50


def _median_time(fn: Any, steps: int) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_bare(family: Any, precision: str, seq: int, steps: int) -> dict[str, float]:
    from worldflux_jax.optim import OptimizerSpec, build_optimizer
    from worldflux_jax.step import create_train_state, init_guard, make_train_step

    cfg = family.config
    optimizer = build_optimizer(OptimizerSpec(learning_rate=3e-4, grad_clip=100.0))
    step = make_train_step(family, optimizer, precision=None if precision == "f32" else "bf16")
    params = family.init(jax.random.key(0))
    state = create_train_state(params, optimizer, family.init_extras(params), init_guard(1))
    rng = np.random.default_rng(0)
    batch = jax.device_put(
        {
            "obs": rng.standard_normal((BATCH, seq, *cfg.obs_shape)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (BATCH, seq, cfg.action_dim)).astype(np.float32),
            "rewards": rng.standard_normal((BATCH, seq)).astype(np.float32),
            "terminations": np.zeros((BATCH, seq), np.float32),
        }
    )
    key = jax.random.key(1)
    holder = {"state": state}

    def run() -> Any:
        holder["state"], metrics = step(holder["state"], batch, key)
        return metrics["loss"]

    start = time.perf_counter()
    jax.block_until_ready(run())
    compile_s = time.perf_counter() - start
    run()
    return {"bare_ms": 1e3 * _median_time(run, steps), "compile_s": compile_s}


class _Intervals:
    """Callback: wall-clock interval between consecutive step ends."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_step_end(self, trainer: Any) -> None:
        self.stamps.append(time.perf_counter())


def bench_trainer(model_id: str, obs_shape: tuple[int, ...], precision: str, seq: int, steps: int) -> float:
    from worldflux import create_world_model
    from worldflux.training import Trainer, TrainingConfig
    from worldflux.training.callbacks import Callback
    from worldflux.training.data import create_random_buffer

    class Intervals(_Intervals, Callback):
        pass

    model = create_world_model(model_id, obs_shape=obs_shape, action_dim=ACTION_DIM)
    buffer = create_random_buffer(
        capacity=max(4000, 4 * BATCH * seq),
        obs_shape=obs_shape,
        action_dim=ACTION_DIM,
        num_episodes=max(8, 4 * BATCH * seq // 100),
        episode_length=100,
        seed=0,
    )
    timer = Intervals()
    with tempfile.TemporaryDirectory() as out:
        config = TrainingConfig(
            total_steps=steps + 5,
            batch_size=BATCH,
            sequence_length=seq,
            log_interval=10**6,
            save_interval=10**6,
            output_dir=out,
            mixed_precision=precision == "bf16",
            auto_quality_check=False,
        )
        Trainer(model, config, callbacks=[timer]).train(buffer)
    intervals = np.diff(timer.stamps[4:])  # after compile + warm-up
    return 1e3 * float(np.median(intervals))


def bench_torch(family_name: str, config: Any, precision: str, seq: int, steps: int) -> float | None:
    try:
        import torch

        from benchmarks.torch_dreamer import TorchDreamerV3
        from benchmarks.torch_tdmpc2 import TorchTDMPC2, torch_train_step
    except ImportError as err:
        print(f"  torch unavailable: {err}")
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    obs = torch.from_numpy(rng.standard_normal((BATCH, seq, *config.obs_shape)).astype(np.float32)).to(device)
    act = torch.from_numpy(rng.uniform(-1, 1, (BATCH, seq, config.action_dim)).astype(np.float32)).to(device)
    rew = torch.from_numpy(rng.standard_normal((BATCH, seq)).astype(np.float32)).to(device)
    term = torch.zeros(BATCH, seq, device=device)
    if family_name == "tdmpc2":
        model = TorchTDMPC2(config.to_dict()).to(device)

        def loss_step(opt: Any) -> None:
            torch_train_step(model, opt, (obs, act, rew, term), 100.0)
    else:
        model = TorchDreamerV3(config.to_dict()).to(device)

        def loss_step(opt: Any) -> None:
            opt.zero_grad(set_to_none=True)
            total, _ = model.loss(obs, act, rew, term, sampling="sample")
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
            opt.step()

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)

    def run() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss_step(opt)
        if device == "cuda":
            torch.cuda.synchronize()

    run()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="ci presets on CPU, few steps")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--torch-steps", type=int, default=None)
    parser.add_argument("--cases", default=None, help="comma-separated family[:preset] filter, e.g. tdmpc2")
    parser.add_argument("--precisions", default="f32,bf16")
    parser.add_argument("--out", default="gpu_suite", help="output path prefix (writes .json and .md)")
    args = parser.parse_args(argv)
    from worldflux_jax.family import config_from_id, family_for

    cases = QUICK_CASES if args.quick else FULL_CASES
    if args.cases:
        wanted = args.cases.split(",")
        cases = [c for c in cases if any(f"{c[0]}:{c[1]}".startswith(w) for w in wanted)]
    steps = args.steps or (3 if args.quick else 30)
    torch_steps = args.torch_steps if args.torch_steps is not None else (2 if args.quick else 10)
    device = jax.devices()[0]
    rows = []
    for family_name, preset, obs_shape in cases:
        config = config_from_id(f"{family_name}:{preset}", obs_shape=obs_shape, action_dim=ACTION_DIM)
        family = family_for(config)
        seq = 6 if args.quick and family_name == "dreamerv3" else _seq(family)
        for precision in args.precisions.split(","):
            bare = bench_bare(family, precision, seq, steps)
            trainer_ms = bench_trainer(f"{family_name}:{preset}", obs_shape, precision, seq, steps)
            torch_ms = bench_torch(family_name, config, precision, seq, torch_steps) if torch_steps > 0 else None
            row = {
                "model": f"{family_name}:{preset}",
                "obs": list(obs_shape),
                "precision": precision,
                "batch": BATCH,
                "seq": seq,
                **bare,
                "trainer_ms": trainer_ms,
                "torch_ms": torch_ms,
                "trainer_over_bare": trainer_ms / bare["bare_ms"],
                "torch_over_bare": None if torch_ms is None else torch_ms / bare["bare_ms"],
            }
            rows.append(row)
            print(json.dumps(row))
    result = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "device_kind": getattr(device, "device_kind", device.platform),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "quick": bool(args.quick),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"GPU suite, {result['date']}, {result['device_kind']} ({result['device']}), jax {result['jax']}",
        "",
        "| model | obs | precision | B x T | bare ms | trainer ms | torch ms | trainer/bare | torch/bare | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        torch_ms = "-" if r["torch_ms"] is None else f"{r['torch_ms']:.2f}"
        ratio = "-" if r["torch_over_bare"] is None else f"{r['torch_over_bare']:.1f}x"
        lines.append(
            f"| {r['model']} | {tuple(r['obs'])} | {r['precision']} | {r['batch']} x {r['seq']} | {r['bare_ms']:.2f} | "
            f"{r['trainer_ms']:.2f} | {torch_ms} | {r['trainer_over_bare']:.2f} | {ratio} | {r['compile_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
