"""``worldflux verify --quick``: checks that the project's model (or a default TD-MPC2 / DreamerV3 pair when
run outside a project) builds on our backend, trains a few steps with finite losses, and comes back from
``save_pretrained`` with identical predictions."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_quick_checks"]

Check = tuple[str, bool, str]


def _targets(project: Any) -> list[tuple[str, tuple[int, ...], int, dict[str, Any], tuple[int, int]]]:
    """(model id, obs_shape, action_dim, config overrides, (batch_size, sequence_length)) to check."""
    if project is None:
        return [("tdmpc2:ci", (8,), 2, {}, (4, 8)), ("dreamer:ci", (8,), 2, {}, (4, 8))]
    arch, training = project["architecture"], project["training"]
    obs_shape, action_dim = tuple(arch["obs_shape"]), int(arch["action_dim"])
    shape = (min(int(training["batch_size"]), 16), min(int(training["sequence_length"]), 16))
    return [(project.model, obs_shape, action_dim, {"hidden_dim": int(arch["hidden_dim"])}, shape)]


def _check_model(
    model_id: str, obs_shape: tuple[int, ...], action_dim: int, overrides: dict[str, Any], shape: tuple[int, int]
) -> list[Check]:
    import torch

    from worldflux import create_world_model
    from worldflux.training import Trainer, TrainingConfig
    from worldflux.training.data import create_random_buffer

    checks: list[Check] = []
    model = create_world_model(model_id, obs_shape=obs_shape, action_dim=action_dim, **overrides)
    checks.append((f"{model_id}: builds", True, f"{model.num_parameters():,} parameters, obs {obs_shape}"))
    buffer = create_random_buffer(capacity=4000, obs_shape=obs_shape, action_dim=action_dim, num_episodes=40,
                                  episode_length=2 * shape[1] + 2, seed=0)
    with tempfile.TemporaryDirectory(prefix="worldflux-verify-") as scratch:
        config = TrainingConfig(total_steps=20, batch_size=shape[0], sequence_length=shape[1], log_interval=5,
                                save_interval=1000, learning_rate=3e-4,
                                output_dir=os.fspath(Path(scratch) / "run"), auto_quality_check=False)
        losses: list[float] = []

        class _Record:
            def on_step_end(self, trainer: Any) -> None:
                if getattr(trainer, "metrics_synced", True):
                    losses.append(float(trainer.state.metrics["loss"]))

        trainer = Trainer(model, config, callbacks=[_Record()])
        trainer.train(buffer)
        finite = bool(losses) and all(math.isfinite(v) for v in losses)
        checks.append((f"{model_id}: trains", finite, f"20 steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}"
                       if losses else "no loss recorded"))
        obs = torch.as_tensor(np.random.default_rng(0).standard_normal((2, *obs_shape)).astype(np.float32))
        actions = torch.zeros(3, 2, action_dim)
        before = model.rollout(model.encode(obs, deterministic=True), actions, deterministic=True).rewards
        saved = Path(scratch) / "model"
        model.save_pretrained(os.fspath(saved))
        reloaded = create_world_model(os.fspath(saved))
        after = reloaded.rollout(reloaded.encode(obs, deterministic=True), actions, deterministic=True).rewards
        diff = float((before - after).abs().max())
        checks.append((f"{model_id}: save/load round trip", diff <= 1e-5, f"max |reward difference| {diff:.2e}"))
    return checks


def run_quick_checks(project: Any) -> list[Check]:
    """(name, passed, detail) for each quick check; exceptions become failed checks."""
    results: list[Check] = []
    backend = project["verify"]["backend"] if project is not None else "native_torch"
    results.append(("backend", backend in ("native_torch", "native_jax"), f"{backend} (in-process JAX)"))
    for model_id, obs_shape, action_dim, overrides, shape in _targets(project):
        try:
            results += _check_model(model_id, obs_shape, action_dim, overrides, shape)
        except Exception as exc:  # noqa: BLE001 - a failing check is reported, not raised
            results.append((f"{model_id}", False, f"{type(exc).__name__}: {exc}"))
    return results
