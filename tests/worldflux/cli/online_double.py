"""A minimal TEST DOUBLE of ``worldflux.training.train_online`` (CONTRACTS §5), for the CLI's online path on
branches where the real one is missing. It is never part of the package.

It keeps the contract's signature and hooks: random-policy collection from the env in chunks (calling
``on_phase_change``, ``on_episode_end``, ``on_env_frame`` for callbacks with ``wants_frames``), Trainer
updates between chunks with the same callbacks, one evaluation (``on_eval_end``) and an ``on_imagination``
call for callbacks with ``wants_imagination``; ``output_dir/episodes.jsonl`` records every episode.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CALLS: list[dict[str, Any]] = []  # the keyword arguments of each call, for assertions


@dataclass
class OnlineResultDouble:
    model: Any
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    eval_returns: list[float] = field(default_factory=list)
    env_steps: int = 0


def _each(callbacks: list[Any], hook: str, *args: Any) -> None:
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if callable(method):
            method(*args)


def train_online(model: Any, env: Any, total_env_steps: int, *, num_envs: int = 1, warmup_transitions: int = 512,
                 collect_steps_per_update: int = 64, updates_per_collect: int | None = None,
                 max_episode_steps: int | None = None, policy: str = "agent", config: Any = None,
                 callbacks: list[Any] | None = None, eval_every: int | None = None, eval_episodes: int = 3,
                 resume_from: str | None = None, seed: int | None = None) -> OnlineResultDouble:
    from worldflux.cli.envs import model_obs, space_info, to_env_action
    from worldflux.training import ReplayBuffer, Trainer

    CALLS.append({"total_env_steps": total_env_steps, "warmup_transitions": warmup_transitions,
                  "collect_steps_per_update": collect_steps_per_update, "max_episode_steps": max_episode_steps,
                  "resume_from": resume_from, "seed": seed})
    callbacks = list(callbacks or [])
    info = space_info(env)
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(capacity=max(total_env_steps, 1), obs_shape=info.obs_shape, action_dim=info.action_dim)
    result = OnlineResultDouble(model)
    trainer = Trainer(model, config, callbacks=callbacks)
    trainer.data_mode = "online_env_collection"
    episodes_path = os.path.join(config.output_dir, "episodes.jsonl")
    obs, _ = env.reset(seed=seed)
    episode: dict[str, list[Any]] = {"obs": [], "actions": [], "rewards": []}
    updates = 0
    while result.env_steps < total_env_steps:
        _each(callbacks, "on_phase_change", "collecting")
        for _ in range(collect_steps_per_update):
            action = (np.eye(info.action_dim, dtype=np.float32)[rng.integers(info.action_dim)] if info.discrete
                      else rng.uniform(-1, 1, info.action_dim).astype(np.float32))
            next_obs, reward, terminated, truncated, _ = env.step(to_env_action(action, info))
            episode["obs"].append(model_obs(obs, info))
            episode["actions"].append(action)
            episode["rewards"].append(float(reward))
            result.env_steps += 1
            for callback in callbacks:
                if getattr(callback, "wants_frames", False) and result.env_steps % getattr(callback, "frame_every",
                                                                                             1) == 0:
                    callback.on_env_frame(np.asarray(env.render(), np.uint8))
            obs = next_obs
            if terminated or truncated or len(episode["rewards"]) >= (max_episode_steps or 10**9):
                n = len(episode["rewards"])
                dones = np.zeros(n, np.float32)
                dones[-1] = 1.0
                buffer.add_episode(np.stack(episode["obs"]), np.stack(episode["actions"]),
                                   np.asarray(episode["rewards"], np.float32), dones)
                record = {"index": len(result.episode_returns), "return": float(sum(episode["rewards"])),
                          "length": n, "env_steps": result.env_steps, "terminated": bool(terminated)}
                result.episode_returns.append(record["return"])
                result.episode_lengths.append(n)
                with open(episodes_path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record) + "\n")
                _each(callbacks, "on_episode_end", record)
                episode = {"obs": [], "actions": [], "rewards": []}
                obs, _ = env.reset()
            if result.env_steps >= total_env_steps:
                break
        if result.env_steps >= warmup_transitions and buffer.num_episodes > 0:
            _each(callbacks, "on_phase_change", "training")
            updates += updates_per_collect or 5
            trainer.train(buffer, num_steps=updates)
    _each(callbacks, "on_phase_change", "evaluating")
    result.eval_returns = [float(np.mean(result.episode_returns or [0.0]))]
    _each(callbacks, "on_eval_end", {"env_steps": result.env_steps, "returns": result.eval_returns,
                                     "mean_return": result.eval_returns[0]})
    for callback in callbacks:
        if getattr(callback, "wants_imagination", False):
            callback.on_imagination({"real": np.zeros((5, 2)), "imagined": np.ones((5, 2))})
    _each(callbacks, "on_phase_change", "done")
    return result
