"""A scaffolded project as the CLI uses it: its helper modules, its model and its trained weights."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from worldflux.config_loader import ProjectConfig

__all__ = ["build_model", "load_helper", "load_trained_model", "training_config"]


def load_helper(config: ProjectConfig, name: str) -> ModuleType | None:
    """The project's ``<name>.py`` (``dataset`` / ``local_dashboard``) imported from the project directory, or
    None when the file is absent. Import errors propagate (a broken helper must not be skipped silently)."""
    path = config.root / f"{name}.py"
    if not path.is_file():
        return None
    module_name = f"_worldflux_project_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def build_model(
    config: ProjectConfig,
    obs_shape: tuple[int, ...],
    action_dim: int,
    *,
    agent: bool = False,
    discrete: bool | None = None,
) -> Any:
    """``create_world_model(config.model, obs_shape, action_dim, hidden_dim=[architecture] hidden_dim)``.

    With ``agent=True`` (online runs, where the model must also act), configs that have an ``actor_critic``
    field get ``actor_critic=True`` (behaviour learning in the same train step) with ``behavior_profile="paper"``
    (and ``actor_gradient="dynamics"`` for continuous actions) and ``replay_critic=0.3`` (the critic also learns
    from real terminations): DreamerV3's settings that learn the benchmark tasks; others act by planning, and
    configs with an ``objective`` field get ``objective="symlog"`` (TD-MPC2: scale-free value learning).
    ``discrete`` (the environment's action space, when there is one) sets the model's ``action_type``.
    """
    from worldflux import create_world_model
    from worldflux.factory import get_config

    overrides: dict[str, Any] = {"hidden_dim": int(config["architecture"]["hidden_dim"])}
    if agent:
        fields = get_config(config.model, obs_shape=tuple(obs_shape), action_dim=int(action_dim))
        if hasattr(fields, "actor_critic"):
            overrides["actor_critic"] = True
        if hasattr(fields, "objective"):  # returns of real envs reach hundreds: the scale-free objective
            overrides["objective"] = "symlog"
        if hasattr(fields, "behavior_profile"):  # the profile that learns the benchmark tasks (decisions.md)
            overrides["behavior_profile"] = "paper"
            if discrete is False and hasattr(fields, "actor_gradient"):
                overrides["actor_gradient"] = "dynamics"
            if hasattr(fields, "replay_critic"):
                overrides["replay_critic"] = 0.3
    if discrete is not None:
        overrides["action_type"] = "discrete" if discrete else "continuous"
    return create_world_model(config.model, obs_shape=tuple(obs_shape), action_dim=int(action_dim), **overrides)


def training_config(config: ProjectConfig, output_dir: Path, total_steps: int | None = None) -> Any:
    """The ``TrainingConfig`` of ``[training]`` (``output_dir`` resolved against the project directory)."""
    from worldflux.training import TrainingConfig

    t = config["training"]
    return TrainingConfig(
        total_steps=int(total_steps or t["total_steps"]),
        batch_size=t["batch_size"],
        sequence_length=t["sequence_length"],
        learning_rate=t["learning_rate"],
        device=t["device"],
        backend=t["backend"],
        backend_profile=t["backend_profile"],
        output_dir=os.fspath(output_dir),
        seed=t["seed"],
        log_interval=t["log_interval"],
        save_interval=t["save_interval"],
        distributed_mode=t["distributed_mode"],
        distributed_world_size=t["distributed_world_size"],
    )


def load_trained_model(config: ProjectConfig, checkpoint: str | os.PathLike[str]) -> tuple[Any, tuple[int, ...], int]:
    """The trained model of a project: ``(model, obs_shape, action_dim)``.

    ``checkpoint`` is a ``save_pretrained`` directory (``config.json`` inside, e.g. ``outputs/model``) or a
    Trainer checkpoint (``outputs/checkpoint_best.pt``); a relative path is relative to the project directory.
    Raises FileNotFoundError when it does not exist, CheckpointError when it cannot be read.
    """
    from worldflux import create_world_model
    from worldflux.training import Trainer
    from worldflux.training.checkpoint import read_checkpoint_metadata

    path = config.resolve(os.fspath(checkpoint))
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if (path / "config.json").is_file():
        model = create_world_model(os.fspath(path))
        return model, tuple(model.config.obs_shape), int(model.config.action_dim)
    meta = read_checkpoint_metadata(path)
    model_config = meta.get("model_config")
    with tempfile.TemporaryDirectory(prefix="worldflux-load-") as scratch:
        if model_config:  # the exact architecture the checkpoint was trained with
            from worldflux.core.config import WorldModelConfig
            from worldflux.models.registry import build_model as build_registered

            file = Path(scratch) / "config.json"
            file.write_text(json.dumps(model_config), encoding="utf-8")
            model = build_registered(WorldModelConfig.load(file))
        else:
            model = build_model(config, tuple(config["architecture"]["obs_shape"]),
                                int(config["architecture"]["action_dim"]))
        obs_shape, action_dim = tuple(int(d) for d in model.config.obs_shape), int(model.config.action_dim)
        trainer = Trainer(model, training_config(config, Path(scratch) / "run"))
        trainer.load_checkpoint(os.fspath(path))  # writes the parameters into the model
    return model, obs_shape, action_dim
