"""Trainer throughput: ``Trainer.train`` steps/s against the bare train step, measured in one run.

    python benchmarks/trainer.py [--quick] [--steps 20] [--warmup 3] [--rounds 3]
                                 [--cases dreamer-image dreamer-vector tdmpc2]

Cases (action_dim 6): ``dreamerv3:size12m`` with image obs (3, 64, 64) and with vector obs (39,) (MLP
encoder/decoder), batch 16 x sequence 50; ``tdmpc2:5m`` with obs (39,), batch 16 x sequence 6. ``--quick``
uses the ``ci`` presets (batch 4; sequence 8 for DreamerV3) and a few steps, to check the script works.

For each case it prints the bare step's steps/s (one pre-sampled batch already on the device, the step
called in a loop, compile excluded), ``Trainer.train``'s steps/s (replay-buffer sampling, conversion,
callbacks, logging and the default checkpointing included; timed from ``runtime_profile()`` of further
``train`` calls, so compilation and the final checkpoint are excluded) and their ratio. The two are timed in
alternating rounds (``--rounds``, default 3) and the medians compared.

Only the documented WorldFlux API is used for the Trainer side (``create_world_model``,
``create_random_buffer``, ``Trainer``, ``TrainingConfig``), so the script runs unchanged against the
reference torch package as well as against worldflux-jax. The bare step is the jitted
``worldflux_jax.train.make_train_step`` when the model has a JAX core (``model.core``), else an eager
torch loop (``model.loss(batch).loss.backward()``, gradient clipping, AdamW) over ``model.parameters()``.
Note: the reference Trainer's default ``CheckpointCallback`` saves ``checkpoint_best.pt`` on every step that
improves the loss; worldflux-jax compares (and saves asynchronously) at log intervals only.
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

if str(_Path(__file__).resolve().parents[1]) not in _sys.path:  # `python benchmarks/X.py`: repo root importable
    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from worldflux import create_world_model
from worldflux.training import Trainer, TrainingConfig
from worldflux.training.data import create_random_buffer

ACTION_DIM = 6
LEARNING_RATE = 3e-4
GRAD_CLIP = 100.0

CASES: dict[str, dict[str, Any]] = {
    "dreamer-image": {"preset": "dreamerv3:size12m", "quick": "dreamer:ci", "obs": (3, 64, 64), "seq": 50},
    "dreamer-vector": {"preset": "dreamerv3:size12m", "quick": "dreamer:ci", "obs": (39,), "seq": 50},
    "tdmpc2": {"preset": "tdmpc2:5m", "quick": "tdmpc2:ci", "obs": (39,), "seq": 6},
}


def make_model(preset: str, obs_shape: tuple[int, ...]) -> Any:
    """The model on the device the Trainer will use (``TrainingConfig().resolve_device()``)."""
    kwargs: dict[str, Any] = {}
    if preset.startswith("dreamer") and len(obs_shape) == 1:
        kwargs = {"encoder_type": "mlp", "decoder_type": "mlp"}  # the reference needs them for vector obs
    device = TrainingConfig().resolve_device()
    return create_world_model(preset, obs_shape=obs_shape, action_dim=ACTION_DIM, device=device, **kwargs)


def bare_runner(model: Any, batch: Any, warmup: int) -> Callable[[int], float]:
    """``run(steps) -> steps/s`` of the bare train step on one pre-sampled batch (compile and warm-up done
    here, excluded from the timings)."""
    if hasattr(model, "core") and hasattr(model, "params"):
        return _bare_jax(model, batch, warmup)
    return _bare_torch(model, batch, warmup)


def _bare_jax(model: Any, batch: Any, warmup: int) -> Callable[[int], float]:
    import importlib

    import jax
    import jax.numpy as jnp
    import optax

    from worldflux_jax.train import create_train_state, make_train_step

    core = model.core
    batch_cls = importlib.import_module(type(core).__module__).Batch
    device = next(iter(jax.tree.leaves(model.params)[0].devices()))
    fields = ("obs", "actions", "rewards", "terminations")
    device_batch = jax.device_put(batch_cls(*(np.asarray(getattr(batch, name)) for name in fields)), device)
    optimizer = optax.chain(optax.clip_by_global_norm(GRAD_CLIP), optax.adamw(LEARNING_RATE, weight_decay=0.0))
    params = jax.tree.map(jnp.copy, model.params)  # the step donates its state
    extras = None if model.extras is None else jax.tree.map(jnp.copy, model.extras)
    state = jax.device_put(create_train_state(params, optimizer, extras=extras), device)  # committed: no retrace
    step = make_train_step(core.train_loss, optimizer, post_update=getattr(core, "target_update", None))
    key = jax.device_put(jax.random.key(0), device)
    carry = {"state": state}

    def run(steps: int) -> float:
        state = carry["state"]
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = step(state, device_batch, key)
        jax.block_until_ready((state, metrics))
        carry["state"] = state
        return steps / (time.perf_counter() - start)

    run(max(2, warmup))
    return run


def _bare_torch(model: Any, batch: Any, warmup: int) -> Callable[[int], float]:
    import torch

    device = next(model.parameters()).device
    batch = batch.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=0.0)

    def one_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss(batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()
        hook = getattr(model, "on_after_optimizer_step", None)
        if callable(hook):
            hook()

    def run(steps: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            one_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return steps / (time.perf_counter() - start)

    model.train()
    run(max(2, warmup))
    return run


def trainer_runner(model: Any, buffer: Any, batch: int, seq: int, warmup: int, out: str) -> Callable[[int], float]:
    """``run(steps) -> steps/s`` of ``Trainer.train`` continuing for ``steps`` more steps (each call timed from
    ``runtime_profile()``, so compilation and the final checkpoint are excluded); a ``warmup``-step ``train``
    call is made here."""
    config = TrainingConfig(
        total_steps=10**9,
        batch_size=batch,
        sequence_length=seq,
        learning_rate=LEARNING_RATE,
        grad_clip=GRAD_CLIP,
        log_interval=10,
        save_interval=10**9,
        output_dir=out,
    )
    trainer = Trainer(model, config)
    trainer.train(buffer, num_steps=max(1, warmup))

    def run(steps: int) -> float:
        done = trainer.state.global_step
        trainer.train(buffer, num_steps=done + steps)
        return (trainer.state.global_step - done) / trainer.runtime_profile()["elapsed_sec"]

    return run


def run_case(name: str, quick: bool, steps: int, warmup: int, rounds: int) -> dict[str, Any]:
    """Bare step and Trainer measured alternately for ``rounds`` rounds of ``steps`` steps (so drift in the
    machine's speed affects both alike); medians reported."""
    spec = CASES[name]
    preset = spec["quick"] if quick else spec["preset"]
    obs_shape = spec["obs"]
    batch_size = 4 if quick else 16
    seq = min(spec["seq"], 8) if quick else spec["seq"]
    capacity = 400 if len(obs_shape) == 3 else 5000
    buffer = create_random_buffer(capacity=capacity, obs_shape=obs_shape, action_dim=ACTION_DIM,
                                  num_episodes=max(4, capacity // 100), episode_length=100, seed=0)
    bare = bare_runner(make_model(preset, obs_shape), buffer.sample(batch_size, seq), warmup)
    with tempfile.TemporaryDirectory() as out:
        trained = trainer_runner(make_model(preset, obs_shape), buffer, batch_size, seq, warmup, out)
        bare_rates, trainer_rates = [], []
        for _ in range(rounds):
            bare_rates.append(bare(steps))
            trainer_rates.append(trained(steps))
    bare_rate, trainer_rate = statistics.median(bare_rates), statistics.median(trainer_rates)
    return {
        "case": name,
        "preset": preset,
        "obs_shape": list(obs_shape),
        "batch": batch_size,
        "seq": seq,
        "rounds": rounds,
        "bare_steps_per_sec": bare_rate,
        "trainer_steps_per_sec": trainer_rate,
        "trainer_over_bare": trainer_rate / bare_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="ci presets, small batches, few steps")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (compilation)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating bare/Trainer rounds (median)")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--json", action="store_true", help="print one JSON object per case instead")
    args = parser.parse_args()
    steps = args.steps if args.steps is not None else (10 if args.quick else 20)
    warmup = args.warmup if args.warmup is not None else 2
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    import worldflux

    print(f"worldflux {getattr(worldflux, '__version__', '?')} ({worldflux.__file__})")
    for name in args.cases:
        result = run_case(name, args.quick, steps, warmup, rounds)
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"{result['case']:15s} {result['preset']:18s} obs={tuple(result['obs_shape'])!s:12s} "
                f"B={result['batch']:<3d} T={result['seq']:<3d} bare {result['bare_steps_per_sec']:8.2f} steps/s | "
                f"Trainer.train {result['trainer_steps_per_sec']:8.2f} steps/s | "
                f"ratio {result['trainer_over_bare']:.2f}"
            )


if __name__ == "__main__":
    main()
