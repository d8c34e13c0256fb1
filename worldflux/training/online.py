"""``train_online``: collect experience from gymnasium environments with an agent while training the model.

The loop alternates two phases until ``total_env_steps`` transitions were collected:

* collecting: ``collect_steps_per_update`` vector steps (``num_envs`` transitions each) with the agent
  (``make_agent(model, policy)``; uniform random actions until ``warmup_transitions``). Finished episodes go
  into the ``ReplayBuffer`` as whole episodes of ``length + 1`` rows: row t holds the observation o_t, the action
  taken at it, and the reward and termination flag that arrived with o_t (0 / False for the first row; the last
  row is the final observation with a zero action), which is what both losses expect (DreamerV3 predicts r_t
  from its state at t, TD-MPC2 r_{t+1} from (z_t, a_t)). The buffer's ``dones`` hold terminations only, so a truncated
  episode (time limit) keeps its boundary in the episode index without being marked terminal. Every episode
  is a line of ``output_dir/episodes.jsonl`` (index, return, length, env_steps, terminated, truncated).
* training: ``updates_per_collect`` jitted updates through the ``Trainer`` public API
  (``trainer.train(buffer, num_steps=global_step + k, final_checkpoint=False)``: callbacks, periodic
  checkpoints and ``run_manifest.json`` as usual; ``checkpoint_final.pt`` once, at the end). Default: one
  update per two collected transitions.

Evaluation (``eval_every`` env steps): ``eval_episodes`` greedy episodes in separate envs, built from the env id
or from the env's gymnasium spec (envs made by ``gymnasium.make`` / ``make_vec``).
Online hooks of CONTRACTS §5 (``on_phase_change``, ``on_episode_end``, ``on_eval_end``, ``on_env_frame``,
``on_imagination``) are called on every callback that defines them; ordinary trainer hooks reach the
callbacks through the Trainer (``on_train_begin`` once at the start and ``on_train_end`` once at the end).

Resume: ``output_dir/online_checkpoint/`` (``worldflux.training.online_checkpoint``; written after an update phase
and its evaluation whenever ``global_step`` crosses a multiple of ``config.save_interval``, and at the end) holds
the trainer checkpoint, the replay buffer with its episode index, the logs, the env-step counter and the loop in
flight (observations, episodes in progress, agent states and key counters, and a JSON snapshot of the
environments). ``resume_from=<that directory>`` continues from it; on CPU with the same seed the resumed run
equals the uninterrupted one. Environments that cannot be snapshotted restart instead (episodes in progress are
dropped).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worldflux.agents import make_agent
from worldflux.core.exceptions import ConfigurationError

from . import online_checkpoint
from .callbacks import Callback
from .config import TrainingConfig
from .data import ReplayBuffer
from .envs import VectorEnvAdapter
from .trainer import Trainer

__all__ = ["OnlineResult", "train_online"]

ONLINE_CHECKPOINT = online_checkpoint.ONLINE_CHECKPOINT
logger = logging.getLogger("worldflux.training")
PHASES = ("collecting", "training", "evaluating", "done")


@dataclass
class OnlineResult:
    """What ``train_online`` returns: the trained ``model``, ``episode_returns`` / ``episode_lengths`` of every
    training episode in order, ``eval_returns`` (the mean return of each evaluation, in order) with
    ``eval_history`` (dicts with env_steps, returns, mean_return), the collected ``env_steps``, the number of
    ``updates``, the ``buffer`` and the files written."""

    model: Any
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    eval_returns: list[float] = field(default_factory=list)
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    env_steps: int = 0
    updates: int = 0
    buffer: ReplayBuffer | None = None
    output_dir: str = ""
    episodes_path: str = ""
    wall_time_sec: float = 0.0


class _TrainerHooks(Callback):
    """Forwards the Trainer's hooks to the user's callbacks, except that the per-phase ``train`` calls open and
    close the run only once (``on_train_begin`` at the first phase; ``on_train_end`` is sent by train_online)."""

    def __init__(self, callbacks: list[Any]) -> None:
        self.callbacks = callbacks
        self.begun = False

    def _call(self, hook: str, trainer: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if callable(fn):
                fn(trainer)

    def on_train_begin(self, trainer: Any) -> None:
        if not self.begun:
            self.begun = True
            self._call("on_train_begin", trainer)

    def on_step_begin(self, trainer: Any) -> None:
        self._call("on_step_begin", trainer)

    def on_step_end(self, trainer: Any) -> None:
        self._call("on_step_end", trainer)

    def on_epoch_begin(self, trainer: Any) -> None:
        self._call("on_epoch_begin", trainer)

    def on_epoch_end(self, trainer: Any) -> None:
        self._call("on_epoch_end", trainer)


def _notify(callbacks: list[Any], hook: str, *args: Any) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if callable(fn):
            fn(*args)


def _check_positive(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _Episodes:
    """Per-env partial episodes (rows ``(obs_t, a_t, r_t, terminal_t)``) and the reward that arrives with the
    next observation; finished ones go to the buffer, the log and the callbacks."""

    def __init__(self, num_envs: int) -> None:
        self.rows: list[list[tuple[np.ndarray, np.ndarray, float, bool]]] = [[] for _ in range(num_envs)]
        self.incoming = np.zeros(num_envs, np.float32)


def train_online(
    model: Any,
    env: Any,
    total_env_steps: int,
    *,
    num_envs: int = 1,
    warmup_transitions: int = 512,
    collect_steps_per_update: int = 64,
    updates_per_collect: int | None = None,
    max_episode_steps: int | None = None,
    policy: str = "agent",
    config: TrainingConfig | None = None,
    callbacks: list[Any] | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 5,
    resume_from: str | None = None,
    seed: int | None = None,
    agent_kwargs: dict[str, Any] | None = None,
) -> OnlineResult:
    """Train ``model`` online on ``env`` (a gymnasium id, ``Env`` or vector env) for ``total_env_steps``
    transitions; see the module docstring. ``config`` (a ``TrainingConfig``) gives the batch size, sequence
    length, optimizer, ``output_dir`` and intervals; its ``total_steps`` is ignored. ``agent_kwargs`` go to
    ``make_agent`` (planner settings such as ``iterations``, ``num_samples``, ``horizon``) for collection and
    evaluation alike.

    Raises:
        ConfigurationError: an unsupported env / space, an unknown ``policy`` or a bad argument (named).
    """
    started = time.time()
    total_env_steps = _check_positive("total_env_steps", total_env_steps)
    num_envs = _check_positive("num_envs", num_envs)
    warmup_transitions = _check_positive("warmup_transitions", warmup_transitions, 0)
    collect_steps_per_update = _check_positive("collect_steps_per_update", collect_steps_per_update)
    if updates_per_collect is None:
        updates_per_collect = max(1, collect_steps_per_update * num_envs // 2)
    updates_per_collect = _check_positive("updates_per_collect", updates_per_collect, 0)
    eval_env: Any = None
    if eval_every is not None:
        eval_every = _check_positive("eval_every", eval_every)
        # Evaluation runs in separate envs, rebuilt from the id or from the env's gymnasium spec.
        eval_env = env if isinstance(env, str) else getattr(env, "spec", None)
        if eval_env is None:
            raise ConfigurationError(
                "eval_every needs env to be a gymnasium id, or an env made by gymnasium.make / make_vec (one that "
                f"has a spec to build evaluation envs from); {type(env).__name__} has no spec"
            )
    eval_episodes = _check_positive("eval_episodes", eval_episodes)
    config = config if config is not None else TrainingConfig()
    if not isinstance(config, TrainingConfig):
        raise ConfigurationError(f"config must be a TrainingConfig, got {type(config).__name__}")
    seed = int(config.seed if seed is None else seed)
    user_callbacks = list(callbacks or [])
    wants_frames = [cb for cb in user_callbacks if getattr(cb, "wants_frames", False)]

    mcfg = model.config
    obs_shape = tuple(mcfg.obs_shape)
    adapter = VectorEnvAdapter(
        env,
        obs_shape=obs_shape,
        action_dim=int(mcfg.action_dim),
        num_envs=num_envs,
        max_episode_steps=max_episode_steps,
        render=bool(wants_frames),
    )
    if adapter.discrete != (mcfg.action_type == "discrete"):
        adapter.close()
        raise ConfigurationError(
            f"the env's action space is {'discrete' if adapter.discrete else 'continuous'} but the model's "
            f"action_type is {mcfg.action_type!r}"
        )
    if agent_kwargs is not None and not isinstance(agent_kwargs, dict):
        raise ConfigurationError(
            f"agent_kwargs must be a dict of make_agent keywords, got {type(agent_kwargs).__name__}"
        )
    agent_kwargs = dict(agent_kwargs or {})
    agent = make_agent(model, policy, seed=seed, **agent_kwargs)
    explorer = make_agent(model, "random", seed=seed + 1)
    os.makedirs(config.output_dir, exist_ok=True)
    episodes_path = os.path.join(config.output_dir, "episodes.jsonl")
    # Each episode adds its final observation as an extra row: at most 2 rows per env step.
    capacity = max(2 * total_env_steps, config.batch_size * config.sequence_length)
    # Absorbing padding past terminations: short failed episodes are sampled, and endings as often as other steps.
    buffer = ReplayBuffer(
        capacity=capacity, obs_shape=obs_shape, action_dim=int(mcfg.action_dim), absorbing_terminals=True
    )
    buffer.rng = None
    hooks = _TrainerHooks(user_callbacks)
    trainer = Trainer(model, config, callbacks=[hooks])
    result = OnlineResult(model=model, buffer=buffer, output_dir=config.output_dir, episodes_path=episodes_path)
    episode_table: list[tuple[int, int, bool]] = []  # (logical start row, length, terminated)

    saved: dict[str, Any] | None = None
    if resume_from:
        saved = online_checkpoint.load(resume_from, trainer, buffer, result, episode_table)
    else:
        open(episodes_path, "w").close()
    obs = adapter.reset(seed=seed + result.env_steps)
    first = np.ones(num_envs, bool)
    agent_state: Any = None
    random_state: Any = None
    acting_random = result.env_steps < warmup_transitions
    partial = _Episodes(num_envs)
    flight = None if saved is None else online_checkpoint.restore_loop(saved, adapter, agent, explorer)
    if flight is not None:  # continue the episodes in progress exactly where the save left them
        obs, first, agent_state, random_state = flight.obs, flight.first, flight.agent_state, flight.random_state
        acting_random = flight.acting_random
        partial.rows, partial.incoming = flight.rows, flight.incoming
        agent._calls, explorer._calls = flight.agent_calls, flight.explorer_calls  # noqa: SLF001 - key streams

    def in_flight() -> online_checkpoint.Loop:
        return online_checkpoint.Loop(
            obs,
            first,
            partial.rows,
            partial.incoming,
            agent_state,
            random_state,
            acting_random,
            agent._calls,
            explorer._calls,  # noqa: SLF001
        )

    frame_every = min((int(getattr(cb, "frame_every", 1) or 1) for cb in wants_frames), default=1)
    next_eval = None if eval_every is None else (result.env_steps // eval_every + 1) * eval_every
    warned_short = False
    next_save = (trainer.state.global_step // config.save_interval + 1) * config.save_interval
    progress = _progress(total_env_steps, result.env_steps)

    _notify(user_callbacks, "on_phase_change", "collecting")
    try:
        while result.env_steps < total_env_steps:
            for _ in range(collect_steps_per_update):
                if result.env_steps >= total_env_steps:
                    break
                if acting_random and result.env_steps >= warmup_transitions:
                    acting_random = False
                    agent_state = None  # the agent starts every env from a fresh latent state
                if acting_random:
                    actions, random_state = explorer.act(obs, random_state, first)
                else:
                    actions, agent_state = agent.act(obs, agent_state, first, explore=True)
                actions = np.asarray(actions, np.float32)
                step = adapter.step(actions)
                done = step.terminated | step.truncated
                for i in range(num_envs):
                    if not step.valid[i]:
                        continue
                    # Row t: o_t, the action taken at it, and the reward / terminal flag that arrived WITH o_t
                    # (the losses' convention: DreamerV3 predicts r_t from the state at t, TD-MPC2 r_{t+1} from
                    # (z_t, a_t)). The episode's last observation is a row of its own (zero action).
                    partial.rows[i].append((obs[i], actions[i], float(partial.incoming[i]), False))
                    partial.incoming[i] = step.reward[i]
                    result.env_steps += 1
                    if done[i]:
                        last = (
                            step.final_obs[i],
                            np.zeros_like(actions[i]),
                            float(step.reward[i]),
                            bool(step.terminated[i]),
                        )
                        partial.rows[i].append(last)
                        short = len(partial.rows[i]) < config.sequence_length and not step.terminated[i]
                        if short and not warned_short:
                            warned_short = True
                            message = _short_episode_message(len(partial.rows[i]), config.sequence_length)
                            warnings.warn(message, UserWarning, stacklevel=2)
                        _finish(partial.rows[i], bool(step.truncated[i]), buffer, result, episode_table, user_callbacks)
                        partial.rows[i] = []
                        partial.incoming[i] = 0.0
                        progress.set_postfix(ret=f"{result.episode_returns[-1]:.1f}", refresh=False)
                progress.update(int(step.valid.sum()))
                first = done | ~step.valid
                obs = step.obs
                if wants_frames and result.env_steps % frame_every < num_envs:
                    frame = adapter.render()
                    if frame is not None:
                        _notify(wants_frames, "on_env_frame", frame)
            ready = result.env_steps >= warmup_transitions and len(buffer) >= config.sequence_length
            if ready and updates_per_collect > 0:
                _notify(user_callbacks, "on_phase_change", "training")
                target = trainer.state.global_step + updates_per_collect
                trainer.train(buffer, num_steps=target, final_checkpoint=False)
                result.updates = trainer.state.global_step
                loss = trainer.state.metrics.get("loss") if trainer.state.metrics else None
                if loss is not None:
                    progress.set_postfix(ret=_last(result.episode_returns), loss=f"{float(loss):.3f}", refresh=False)
                _notify(user_callbacks, "on_phase_change", "collecting")
            if next_eval is not None and result.env_steps >= next_eval:
                next_eval = (result.env_steps // eval_every + 1) * eval_every
                _notify(user_callbacks, "on_phase_change", "evaluating")
                _evaluate(
                    model,
                    eval_env,
                    policy,
                    seed,
                    eval_episodes,
                    max_episode_steps,
                    result,
                    user_callbacks,
                    agent_kwargs,
                )
                _notify(user_callbacks, "on_phase_change", "collecting")
            if trainer.state.global_step >= next_save:  # after evaluation: a resumed run repeats nothing
                next_save = (trainer.state.global_step // config.save_interval + 1) * config.save_interval
                online_checkpoint.save(config.output_dir, trainer, buffer, result, episode_table, in_flight(), adapter)
        result.updates = trainer.state.global_step
        if result.updates:
            trainer.save_checkpoint(os.path.join(config.output_dir, "checkpoint_final.pt"))
        online_checkpoint.save(config.output_dir, trainer, buffer, result, episode_table, in_flight(), adapter)
    finally:
        progress.close()
        adapter.close()
    _notify(user_callbacks, "on_train_end", trainer)
    _notify(user_callbacks, "on_phase_change", "done")
    result.wall_time_sec = time.time() - started
    return result


def _short_episode_message(rows: int, seq_len: int) -> str:
    return (
        f"An episode was truncated after {rows - 1} env steps ({rows} rows), fewer than sequence_length={seq_len}: "
        "training windows never cross episode boundaries and only terminated episodes are padded past their end, "
        "so episodes this short are stored but never sampled. Lower TrainingConfig.sequence_length (or raise "
        "max_episode_steps) if such episodes matter."
    )


def _last(values: list[float]) -> str:
    return f"{values[-1]:.1f}" if values else "-"


def _progress(total: int, start: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="env steps", unit="step", disable=None, leave=False)


def _finish(
    rows: list[tuple[np.ndarray, np.ndarray, float, bool]],
    truncated: bool,
    buffer: ReplayBuffer,
    result: OnlineResult,
    table: list[tuple[int, int, bool]],
    callbacks: list[Any],
) -> None:
    """Store one finished episode: buffer (dones = terminations), log line, callbacks."""
    obs = np.stack([r[0] for r in rows])
    actions = np.stack([r[1] for r in rows])
    rewards = np.asarray([r[2] for r in rows], np.float32)
    dones = np.asarray([r[3] for r in rows], np.float32)
    terminated = bool(dones[-1] > 0)
    start = buffer._total  # noqa: SLF001 - the logical row the episode starts at (for the saved episode index)
    buffer.add_episode(obs, actions, rewards, dones)
    table.append((start, len(rows), terminated))
    info = {
        "index": len(result.episode_returns),
        "return": float(rewards.sum()),
        "length": int(len(rows) - 1),  # env steps (the buffer holds length + 1 observations)
        "env_steps": int(result.env_steps),
        "terminated": terminated,
        "truncated": bool(truncated and not terminated),
    }
    result.episode_returns.append(info["return"])
    result.episode_lengths.append(info["length"])
    with open(result.episodes_path, "a") as f:
        f.write(json.dumps(info) + "\n")
    _notify(callbacks, "on_episode_end", info)


def _evaluate(
    model: Any,
    env_id: Any,
    policy: str,
    seed: int,
    episodes: int,
    max_episode_steps: int | None,
    result: OnlineResult,
    callbacks: list[Any],
    agent_kwargs: dict[str, Any],
) -> None:
    """``episodes`` greedy episodes (one per env of a fresh vector env); hooks ``on_eval_end``."""
    mcfg = model.config
    adapter = VectorEnvAdapter(
        env_id,
        obs_shape=tuple(mcfg.obs_shape),
        action_dim=int(mcfg.action_dim),
        num_envs=episodes,
        max_episode_steps=max_episode_steps,
    )
    agent = make_agent(model, policy, seed=seed + 7919 + result.env_steps, **agent_kwargs)
    try:
        obs = adapter.reset(seed=seed + 10**6 + result.env_steps)
        returns = np.zeros(episodes)
        running = np.ones(episodes, bool)
        state = None
        frames_real: list[np.ndarray] = []
        actions_taken: list[np.ndarray] = []
        while running.any():
            actions, state = agent.act(obs, state, None, explore=False)
            actions = np.asarray(actions, np.float32)
            if len(frames_real) < 16:
                frames_real.append(obs[0])
                actions_taken.append(actions[0])
            step = adapter.step(actions)
            returns += np.where(running & step.valid, step.reward, 0.0)
            running &= ~(step.terminated | step.truncated)
            obs = step.obs
    finally:
        adapter.close()
    info = {"env_steps": int(result.env_steps), "returns": returns.tolist(), "mean_return": float(returns.mean())}
    result.eval_returns.append(info["mean_return"])
    result.eval_history.append(info)
    _notify(callbacks, "on_eval_end", info)
    imagining = [cb for cb in callbacks if getattr(cb, "wants_imagination", False)]
    if imagining and len(frames_real) > 1:
        _notify(imagining, "on_imagination", _imagination(model, np.stack(frames_real), np.stack(actions_taken)))


def _imagination(model: Any, real: np.ndarray, actions: np.ndarray) -> dict[str, np.ndarray]:
    """Open-loop imagination from the first real observation with the actions taken: ``real [T, ...]`` and
    ``imagined [T, ...]`` (decoded observations when the model decodes them, else latent vectors)."""
    import torch

    state = model.encode(torch.as_tensor(real[:1]))
    traj = model.rollout(state, torch.as_tensor(actions[:-1, None]))
    imagined = []
    for s in traj.states:
        try:
            out = model.decode(s).predictions.get("obs")
        except Exception:  # noqa: BLE001 - a model without an observation decoder
            out = None
        if out is None:
            out = next(iter(s.tensors.values()))
        imagined.append(np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out)[0])
    imagined_arr = np.stack(imagined)
    if imagined_arr.shape[1:] != real.shape[1:]:
        imagined_arr = imagined_arr.reshape(len(imagined), -1)
    return {"real": real, "imagined": imagined_arr}
