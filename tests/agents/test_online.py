"""train_online: a short run on a tiny model leaves a consistent buffer, manifest and episodes.jsonl; resume."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from worldflux import create_world_model
from worldflux.core.exceptions import ConfigurationError
from worldflux.training import TrainingConfig, train_online


class Recorder:
    def __init__(self) -> None:
        self.phases: list[str] = []
        self.episodes: list[dict] = []
        self.begins = 0
        self.ends = 0
        self.steps = 0

    def on_phase_change(self, phase: str) -> None:
        if not self.phases or self.phases[-1] != phase:
            self.phases.append(phase)

    def on_episode_end(self, info: dict) -> None:
        self.episodes.append(info)

    def on_train_begin(self, trainer) -> None:
        self.begins += 1

    def on_train_end(self, trainer) -> None:
        self.ends += 1

    def on_step_end(self, trainer) -> None:
        self.steps += 1


def _model():
    return create_world_model("tdmpc2:ci", obs_shape=(3,), action_dim=1, num_samples=32, num_elites=4, horizon=3)


def _run(tmp_path, total: int, recorder: Recorder, resume_from=None):
    config = TrainingConfig(batch_size=4, sequence_length=8, output_dir=str(tmp_path), log_interval=5, save_interval=5)
    return train_online(
        _model(),
        "Pendulum-v1",
        total,
        num_envs=2,
        warmup_transitions=60,
        collect_steps_per_update=30,
        updates_per_collect=5,
        max_episode_steps=30,
        config=config,
        callbacks=[recorder],
        resume_from=resume_from,
        seed=3,
    )


def test_online_run_leaves_consistent_buffer_manifest_and_episode_log_then_resumes(tmp_path) -> None:
    rec = Recorder()
    result = _run(tmp_path, 200, rec)
    assert result.env_steps == 200
    # 2 envs x 100 steps: 3 finished 30-step episodes each (the last 10 steps are in progress).
    assert result.episode_lengths == [30] * 6
    # Each episode stores its 31 observations: row t = (o_t, a_t, reward arriving with o_t, terminal flag).
    assert len(result.buffer) == sum(n + 1 for n in result.episode_lengths) == 186
    rewards = np.asarray(result.buffer._rewards[:31])
    assert rewards[0] == 0.0 and rewards[1:].sum() == pytest.approx(result.episode_returns[0], rel=1e-5)
    assert np.all(np.asarray(result.buffer._actions[30]) == 0.0)  # the final observation has no action
    assert result.buffer.num_episodes == 6
    assert float(np.asarray(result.buffer._dones).sum()) == 0.0  # time-limit truncation is not termination
    lines = [json.loads(x) for x in open(os.path.join(tmp_path, "episodes.jsonl"))]
    assert [x["index"] for x in lines] == list(range(6))
    assert [x["return"] for x in lines] == pytest.approx(result.episode_returns)
    assert all(x["truncated"] and not x["terminated"] for x in lines)
    assert rec.episodes == lines
    manifest = json.load(open(os.path.join(tmp_path, "run_manifest.json")))
    assert result.updates > 0 and rec.steps == result.updates
    assert json.dumps(manifest).count(str(result.updates)) >= 1
    assert rec.begins == 1 and rec.ends == 1
    assert rec.phases[0] == "collecting" and "training" in rec.phases and rec.phases[-1] == "done"

    # Continue to 260 steps: the envs, the episodes in progress and the agents' keys come back from the checkpoint.
    rec2 = Recorder()
    resumed = _run(tmp_path, 260, rec2, resume_from=os.path.join(tmp_path, "online_checkpoint"))
    assert resumed.env_steps == 260
    assert resumed.updates > result.updates
    assert resumed.episode_returns[:6] == pytest.approx(result.episode_returns)
    lines = open(os.path.join(tmp_path, "episodes.jsonl")).read().splitlines()
    assert len(lines) == len(resumed.episode_returns) == 8  # the two episodes in progress at 200 finished at 220


def test_resume_equals_the_uninterrupted_run(tmp_path) -> None:
    """Stop after 4 collect/update rounds (240 steps), resume to 360 == 360 steps straight: same episodes,
    same parameters, bit for bit (CPU, fixed seed)."""
    import jax

    straight = _run(tmp_path / "straight", 360, Recorder())
    _run(tmp_path / "split", 240, Recorder())
    resumed = _run(tmp_path / "split", 360, Recorder(), resume_from=str(tmp_path / "split"))
    assert resumed.episode_returns == straight.episode_returns
    assert resumed.episode_lengths == straight.episode_lengths
    assert resumed.updates == straight.updates
    assert len(resumed.buffer) == len(straight.buffer)
    for a, b in zip(jax.tree.leaves(resumed.model.params), jax.tree.leaves(straight.model.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_arguments_are_configuration_errors(tmp_path) -> None:
    model = _model()
    with pytest.raises(ConfigurationError, match="total_env_steps"):
        train_online(model, "Pendulum-v1", 0)
    with pytest.raises(ConfigurationError, match="observation space"):
        train_online(model, "CartPole-v1", 10, config=TrainingConfig(output_dir=str(tmp_path)))
    import gymnasium as gym

    class Unregistered(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    with pytest.raises(ConfigurationError, match="eval_every needs .* has no spec"):
        train_online(model, Unregistered(), 10, eval_every=5)
    with pytest.raises(ConfigurationError, match="agent_kwargs must be a dict"):
        train_online(model, "Pendulum-v1", 10, agent_kwargs=[("iterations", 2)])
    with pytest.raises(ConfigurationError, match="cannot build"):
        train_online(model, "Pendulum-v1", 10, agent_kwargs={"no_such_setting": 1})


def test_an_env_instance_is_evaluated_through_its_spec_with_the_agent_settings(tmp_path) -> None:
    import gymnasium as gym

    env = gym.make("Pendulum-v1", max_episode_steps=20)
    config = TrainingConfig(batch_size=4, sequence_length=4, output_dir=str(tmp_path), log_interval=100)
    result = train_online(
        _model(), env, 40, warmup_transitions=20, collect_steps_per_update=20, updates_per_collect=2,
        eval_every=40, eval_episodes=2, config=config, agent_kwargs={"iterations": 2}, seed=0,
    )
    assert len(result.eval_history) == 1 and len(result.eval_history[0]["returns"]) == 2
    assert all(-20 * 16.3 <= r <= 0 for r in result.eval_history[0]["returns"])  # 20-step episodes of the spec
    assert (tmp_path / "checkpoint_final.pt").is_dir()  # once, at the end
    assert not list(tmp_path.glob("checkpoint_[0-9]*"))


def test_episodes_shorter_than_the_training_window_warn_once(tmp_path) -> None:
    config = TrainingConfig(batch_size=2, sequence_length=8, output_dir=str(tmp_path), log_interval=100)
    with pytest.warns(UserWarning, match="fewer than sequence_length=8") as caught:
        result = train_online(
            _model(), "Pendulum-v1", 20, warmup_transitions=100, max_episode_steps=5, policy="random",
            config=config, seed=0,
        )
    assert len(result.episode_returns) == 4 and result.updates == 0
    assert sum("fewer than sequence_length" in str(w.message) for w in caught) == 1


def test_terminated_short_episodes_are_padded_not_warned_about(tmp_path) -> None:
    import warnings

    model = create_world_model("tdmpc2:ci", obs_shape=(4,), action_dim=2, action_type="discrete", horizon=3)
    config = TrainingConfig(batch_size=2, sequence_length=40, output_dir=str(tmp_path), log_interval=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        result = train_online(model, "CartPole-v1", 60, warmup_transitions=100, policy="random", config=config, seed=0)
    assert result.buffer.absorbing_terminals and result.episode_returns
    batch = result.buffer.sample(8, 40)  # every random CartPole episode is shorter than 40 steps
    assert (batch.terminations[:, -1] == 1).all() and batch.rewards[:, -1].eq(0).all()
