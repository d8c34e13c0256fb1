"""VectorEnvAdapter: gymnasium ids / Env / vector envs in model shapes; spaces, rescaling, episode bounds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from worldflux.core.exceptions import ConfigurationError
from worldflux.training.envs import VectorEnvAdapter, resize_frames


@pytest.mark.parametrize(
    ("env_id", "obs_dim", "action_dim", "discrete"),
    [
        ("CartPole-v1", 4, 2, True),
        ("Pendulum-v1", 3, 1, False),
        ("Acrobot-v1", 6, 3, True),
        ("MountainCarContinuous-v0", 2, 1, False),
    ],
)
def test_ids_step_in_model_shapes_and_keep_termination_apart_from_truncation(env_id, obs_dim, action_dim, discrete):
    adapter = VectorEnvAdapter(env_id, obs_shape=(obs_dim,), action_dim=action_dim, num_envs=2, max_episode_steps=15)
    assert adapter.discrete is discrete
    obs = adapter.reset(seed=0)
    assert obs.shape == (2, obs_dim) and obs.dtype == np.float32
    rng = np.random.default_rng(0)
    lengths = np.zeros(2, int)
    ended = []
    for _ in range(40):
        if discrete:
            actions = np.eye(action_dim, dtype=np.float32)[rng.integers(0, action_dim, 2)]
        else:
            actions = rng.uniform(-1, 1, (2, action_dim)).astype(np.float32)
        step = adapter.step(actions)
        assert step.obs.shape == (2, obs_dim) and step.valid.all()  # SAME_STEP autoreset: every step counts
        lengths += 1
        for i in np.flatnonzero(step.terminated | step.truncated):
            ended.append((int(lengths[i]), bool(step.truncated[i] and not step.terminated[i])))
            lengths[i] = 0
    assert ended and all(n <= 15 for n, _ in ended)
    assert all(n == 15 for n, trunc in ended if trunc)  # the time limit truncates, never terminates
    adapter.close()


def test_continuous_actions_are_rescaled_to_the_box_and_discrete_take_the_argmax() -> None:
    adapter = VectorEnvAdapter("Pendulum-v1", obs_shape=(3,), action_dim=1)  # torque in [-2, 2]
    np.testing.assert_allclose(adapter.env_actions(np.array([[-1.0], [0.0], [1.0], [3.0]])).ravel(), [-2, 0, 2, 2])
    adapter.close()
    cart = VectorEnvAdapter("CartPole-v1", obs_shape=(4,), action_dim=2)
    np.testing.assert_array_equal(cart.env_actions(np.array([[0.2, 0.8], [1.0, 0.0]])), [1, 0])
    cart.close()


def test_next_step_vector_env_marks_the_reset_step_invalid() -> None:
    env = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1", max_episode_steps=5)])
    adapter = VectorEnvAdapter(env, obs_shape=(4,), action_dim=2)
    adapter.reset(seed=0)
    valid = [adapter.step(np.array([[1.0, 0.0]], np.float32)).valid[0] for _ in range(6)]
    assert valid == [True] * 5 + [False]
    env.close()


def test_unsupported_spaces_name_the_space() -> None:
    with pytest.raises(ConfigurationError, match="Tuple"):
        VectorEnvAdapter("Blackjack-v1", obs_shape=(3,), action_dim=2)

    class MultiEnv(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (2,))
        action_space = gym.spaces.MultiDiscrete([2, 3])

        def reset(self, *, seed=None, options=None):
            return np.zeros(2, np.float32), {}

        def step(self, action):
            return np.zeros(2, np.float32), 0.0, False, False, {}

    with pytest.raises(ConfigurationError, match="MultiDiscrete"):
        VectorEnvAdapter(MultiEnv(), obs_shape=(2,), action_dim=2)
    with pytest.raises(ConfigurationError, match="action_dim"):
        VectorEnvAdapter("CartPole-v1", obs_shape=(4,), action_dim=3)
    with pytest.raises(ConfigurationError, match="obs_shape"):
        VectorEnvAdapter("CartPole-v1", obs_shape=(5,), action_dim=2)


def test_images_are_resized_to_the_model_obs_shape() -> None:
    frames = np.zeros((2, 400, 600, 3), np.uint8)
    frames[:, :200] = 255
    out = resize_frames(frames, (3, 64, 64))
    assert out.shape == (2, 3, 64, 64) and out.dtype == np.float32
    assert out[:, :, :32].min() == 1.0 and out[:, :, 32:].max() == 0.0
    adapter = VectorEnvAdapter("CartPole-v1", obs_shape=(3, 32, 32), action_dim=2)  # pixels via rgb_array frames
    obs = adapter.reset(seed=0)
    assert obs.shape == (1, 3, 32, 32) and 0.0 <= obs.min() and obs.max() <= 1.0
    adapter.close()
