"""A tiny stand-in for ``python -m worldflux_jax.train`` (CONTRACTS §1) used ONLY by the delegated-mode
lifecycle test: same flags, stdout log lines, ``metrics.jsonl``, atomically written checkpoints under
``OUT/checkpoints/<step>/``, ``--resume``, SIGTERM/SIGINT -> stop at the next step boundary with exit code
143/130, exit 2 on bad arguments. ``STANDIN_STEP_SECONDS`` sets the time per step."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

stop = {"code": 0}


def on_signal(signum, _frame):
    stop["code"] = 143 if signum == signal.SIGTERM else 130


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--model", "--data", "--out"):
        parser.add_argument(flag, required=True)
    for flag in ("--steps", "--batch-size", "--seq-len"):
        parser.add_argument(flag, type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--log-every", type=int, default=100)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with np.load(args.data) as data:
        rows = int(data["obs"].shape[0])
    out = Path(args.out)
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    step = 0
    if args.resume:
        done = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
        if done:
            step = int(np.load(checkpoints / str(done[-1]) / "state.npz")["step"])
    print(f"training {args.model} on {rows} transitions from step {step}", flush=True)
    delay = float(os.environ.get("STANDIN_STEP_SECONDS", "0.01"))
    while step < args.steps:
        if stop["code"]:
            print(f"stopping at step {step}", flush=True)
            return stop["code"]
        time.sleep(delay)
        step += 1
        loss = 1.0 / step
        if step % args.log_every == 0:
            print(f"step {step} loss {loss:.4f}", flush=True)
            with open(out / "metrics.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": step, "loss": loss}) + "\n")
        if step % args.checkpoint_every == 0:
            tmp = checkpoints / f".tmp-{step}"
            tmp.mkdir()
            np.savez(tmp / "state.npz", step=step, params=np.full(3, loss))
            os.replace(tmp, checkpoints / str(step))
    (out / "model").mkdir(exist_ok=True)
    (out / "model" / "config.json").write_text(json.dumps({"model_type": args.model.split(":")[0]}))
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
