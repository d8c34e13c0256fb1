"""Environment snapshots (JSON, no pickle) used by exact online resume."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from worldflux.training.env_state import restore, snapshot
from worldflux.training.envs import VectorEnvAdapter


def _adapter(env_id: str, action_dim: int, obs_dim: int) -> VectorEnvAdapter:
    return VectorEnvAdapter(env_id, obs_shape=(obs_dim,), action_dim=action_dim, num_envs=2, max_episode_steps=40)


@pytest.mark.parametrize(
    "env_id, action_dim, obs_dim, discrete",
    [("CartPole-v1", 2, 4, True), ("Pendulum-v1", 1, 3, False), ("Acrobot-v1", 3, 6, True),
     ("MountainCarContinuous-v0", 1, 2, False)],
)
def test_a_restored_env_continues_exactly(env_id, action_dim, obs_dim, discrete) -> None:
    rng = np.random.default_rng(0)

    def actions(n: int) -> list[np.ndarray]:
        if discrete:
            return [np.eye(action_dim, dtype=np.float32)[rng.integers(0, action_dim, 2)] for _ in range(n)]
        return [rng.uniform(-1, 1, (2, action_dim)).astype(np.float32) for _ in range(n)]

    first = _adapter(env_id, action_dim, obs_dim)
    first.reset(seed=3)
    for a in actions(25):
        first.step(a)
    snap = json.loads(json.dumps(snapshot(first)))  # it must survive JSON
    future = actions(60)  # past the 40-step time limit and into autoresets (the env's generator)
    expected = [first.step(a) for a in future]

    second = _adapter(env_id, action_dim, obs_dim)
    second.reset(seed=99)
    assert restore(second, snap)
    for a, want in zip(future, expected, strict=True):
        got = second.step(a)
        np.testing.assert_array_equal(got.obs, want.obs)
        np.testing.assert_array_equal(got.reward, want.reward)
        np.testing.assert_array_equal(got.truncated, want.truncated)
        np.testing.assert_array_equal(got.terminated, want.terminated)


def test_envs_without_a_state_array_cannot_be_snapshotted() -> None:
    class Opaque(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(3, np.float32), {}

        def step(self, action):
            return np.zeros(3, np.float32), 0.0, False, False, {}

    adapter = VectorEnvAdapter(Opaque(), obs_shape=(3,), action_dim=1)
    adapter.reset(seed=0)
    assert snapshot(adapter) is None
