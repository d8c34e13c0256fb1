"""gymnasium environments for the CLI: making one by id (with the reason when it cannot be made), the model
shapes its spaces imply, and random-policy episodes into a ``ReplayBuffer``.

Actions are stored as the model sees them: one-hot for ``Discrete`` spaces, rescaled to [-1, 1] for ``Box``
spaces (the same conventions as the online loop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "EnvUnavailable",
    "SpaceInfo",
    "collect_random_episodes",
    "make_env",
    "model_obs",
    "space_info",
    "to_env_action",
]


class EnvUnavailable(RuntimeError):
    """The environment cannot be made. ``unknown_id`` tells a bad id (a config error) from a missing extra or
    a failing constructor (a runtime problem)."""

    def __init__(self, message: str, *, unknown_id: bool) -> None:
        super().__init__(message)
        self.unknown_id = unknown_id


def make_env(env_id: str, *, render: bool = False, max_episode_steps: int | None = None) -> Any:
    """``gymnasium.make(env_id)`` (``render_mode="rgb_array"`` when ``render``), or EnvUnavailable with the cause."""
    try:
        import gymnasium as gym
    except ImportError as exc:
        raise EnvUnavailable(
            "gymnasium is not installed (pip install 'worldflux-jax[envs]')", unknown_id=False
        ) from exc
    kwargs: dict[str, Any] = {}
    if render:
        from worldflux.training.envs import offscreen_rendering

        kwargs["render_mode"] = "rgb_array"
        offscreen_rendering()
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(max_episode_steps)
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.UnregisteredEnv as exc:  # NameNotFound, VersionNotFound, NamespaceNotFound, ...
        raise EnvUnavailable(f"unknown gymnasium environment {env_id!r}: {exc}", unknown_id=True) from exc
    except gym.error.DependencyNotInstalled as exc:
        raise EnvUnavailable(f"environment {env_id!r} needs a package that is not installed: {exc}",
                             unknown_id=False) from exc
    except Exception as exc:  # noqa: BLE001 - constructors fail in many ways (missing binaries, ...)
        raise EnvUnavailable(f"environment {env_id!r} could not be made: {type(exc).__name__}: {exc}",
                             unknown_id=False) from exc


@dataclass(frozen=True)
class SpaceInfo:
    """Model shapes implied by an environment: ``obs_shape`` (as the model sees it), ``action_dim`` and
    whether actions are discrete; ``low``/``high`` bound a continuous action space."""

    obs_shape: tuple[int, ...]
    action_dim: int
    discrete: bool
    low: np.ndarray | None = None
    high: np.ndarray | None = None


def space_info(env: Any) -> SpaceInfo:
    """SpaceInfo of a gymnasium env; ValueError naming the space when it is not Box/Discrete."""
    from gymnasium import spaces

    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, spaces.Box):
        raise ValueError(f"observation space {obs_space} is not supported (Box observations only)")
    obs_shape = tuple(int(d) for d in obs_space.shape)
    if len(obs_shape) == 3 and obs_shape[-1] in (1, 3):  # HWC images -> the model's CHW
        obs_shape = (obs_shape[-1], obs_shape[0], obs_shape[1])
    if isinstance(act_space, spaces.Discrete):
        return SpaceInfo(obs_shape, int(act_space.n), True)
    if isinstance(act_space, spaces.Box):
        low = np.asarray(act_space.low, np.float32).reshape(-1)
        high = np.asarray(act_space.high, np.float32).reshape(-1)
        return SpaceInfo(obs_shape, int(math.prod(act_space.shape)), False, low, high)
    raise ValueError(f"action space {act_space} is not supported (Box or Discrete actions only)")


def to_env_action(action: np.ndarray, info: SpaceInfo) -> Any:
    """A model action [A] (one-hot or in [-1, 1]) -> the env's action."""
    if info.discrete:
        return int(np.argmax(action))
    assert info.low is not None and info.high is not None
    scaled = info.low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (info.high - info.low)
    return scaled.astype(np.float32)


def model_obs(obs: Any, info: SpaceInfo) -> np.ndarray:
    """An env observation as the model sees it (HWC uint8 images -> CHW in [0, 1])."""
    array = np.asarray(obs, np.float32)
    if array.ndim == 3 and array.shape[-1] in (1, 3) and array.shape != info.obs_shape:
        array = np.transpose(array, (2, 0, 1)) / 255.0
    return array.reshape(info.obs_shape)


def collect_random_episodes(
    env: Any, num_episodes: int, max_steps: int, capacity: int, seed: int = 0
) -> tuple[Any, list[dict[str, Any]]]:
    """Random-policy episodes (each cut at ``max_steps``) in a ``ReplayBuffer`` of ``capacity``.

    Returns ``(buffer, episodes)`` with one record per episode: index, return, length, env_steps, terminated.
    """
    from worldflux.training import ReplayBuffer

    info = space_info(env)
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(capacity=capacity, obs_shape=info.obs_shape, action_dim=info.action_dim)
    records: list[dict[str, Any]] = []
    env_steps = 0
    env.action_space.seed(seed)
    for index in range(num_episodes):
        obs, _ = env.reset(seed=seed + index)
        observations, actions, rewards = [], [], []
        terminated = False
        for _ in range(max_steps):
            if info.discrete:
                action = np.eye(info.action_dim, dtype=np.float32)[rng.integers(info.action_dim)]
            else:
                action = rng.uniform(-1.0, 1.0, info.action_dim).astype(np.float32)
            next_obs, reward, terminated, truncated, _ = env.step(to_env_action(action, info))
            observations.append(model_obs(obs, info))
            actions.append(action)
            rewards.append(float(reward))
            obs = next_obs
            env_steps += 1
            if terminated or truncated:
                break
        dones = np.zeros(len(rewards), np.float32)
        dones[-1] = 1.0
        buffer.add_episode(np.stack(observations), np.stack(actions), np.asarray(rewards, np.float32), dones)
        records.append({"index": index, "return": float(sum(rewards)), "length": len(rewards),
                        "env_steps": env_steps, "terminated": bool(terminated)})
    return buffer, records
