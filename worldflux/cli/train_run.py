"""``worldflux train``: run a project as its ``worldflux.toml`` says.

Data (``[data] source``):

* ``"random"``: synthetic random episodes (``dataset.py``'s ``build_replay_buffer`` when present), trained by
  the ``Trainer``; ``data_mode = "random_replay"``.
* ``"gym"`` with ``[online_collection] enabled = true``: ``worldflux.training.train_online`` collects with the
  agent while training; ``data_mode = "online_env_collection"``.
* ``"gym"`` with ``enabled = false``: random-policy episodes from the environment fill the replay buffer, then
  the ``Trainer`` trains on it; ``data_mode = "env_random_policy_replay"``.

Never a silent fallback: when the environment cannot be made the run stops with the cause (exit 2 for an
unknown id, 1 otherwise), unless ``[data] fallback_to_random = true``, in which case it says why, trains on
random replay and records ``degraded_modes = ["env_collection_unavailable", "random_replay_fallback"]`` in
``run_manifest.json``.

Outputs under ``[training] output_dir``: the Trainer's checkpoints and ``run_manifest.json``,
``episodes.jsonl``, ``model/`` (``save_pretrained``), ``dashboard.json`` and ``training_curves.png``.
"""

from __future__ import annotations

import os
import time
import warnings
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldflux.config_loader import ProjectConfig
from worldflux.dashboard import DashboardCallback, DashboardServer, DashboardState

from . import envs, report
from .progress import TerminalProgress
from .project import build_model, load_helper, training_config

__all__ = ["CLIError", "RunSummary", "train_project"]


class CLIError(Exception):
    """A failure the CLI reports without a traceback; ``code`` is the exit code (2 usage/config, 1 runtime)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class RunSummary:
    """What a ``worldflux train`` run did and where its outputs are."""

    output_dir: Path
    data_mode: str
    degraded_modes: list[str] = field(default_factory=list)
    train_steps: int = 0
    env_steps: int = 0
    episodes: int = 0
    dashboard_url: str | None = None
    plot: Path | None = None
    seconds: float = 0.0


def _say(console: Any, text: str, style: str | None = None) -> None:
    if console is not None:
        console.print(text, markup=False, highlight=False, style=style)


def _open_env(config: ProjectConfig, dataset: Any, console: Any) -> tuple[Any, Any, list[str]]:
    """(env or None, SpaceInfo or None, degraded_modes) for a gym run; raises CLIError when no fallback."""
    env_id = config.env_id
    gameplay = bool(config["gameplay"]["enabled"] and config["visualization"]["enabled"])
    max_steps = int(config["online_collection"]["max_episode_steps"])
    maker = getattr(dataset, "make_env", None) if dataset is not None else None
    try:
        env = (maker or envs.make_env)(env_id, render=gameplay, max_episode_steps=max_steps)
        return env, envs.space_info(env), []
    except envs.EnvUnavailable as exc:
        if not config["data"]["fallback_to_random"]:
            hint = "check data.gym_env" if exc.unknown_id else "install what it needs"
            raise CLIError(
                f"cannot collect from the environment (data.gym_env = {env_id!r}): {exc}. Stopping: {hint}, or set "
                "[data] fallback_to_random = true to train on random replay instead (recorded in run_manifest.json).",
                code=2 if exc.unknown_id else 1,
            ) from exc
        _say(console, f"environment {env_id!r} unavailable: {exc}\nfalling back to random replay because [data] "
                      "fallback_to_random = true; degraded_modes recorded in run_manifest.json", style="yellow")
        return None, None, [report.DEGRADED_ENV, report.DEGRADED_RANDOM]
    except ValueError as exc:
        raise CLIError(f"data.gym_env = {env_id!r}: {exc}", code=2) from exc


def _imagination(model: Any, buffer: Any, horizon: int, state: DashboardState) -> None:
    """Record predicted vs real rewards along one stored sequence (encode the first observation, roll the
    model out with the stored actions)."""
    with warnings.catch_warnings():  # short episodes: the window may cross an episode boundary
        warnings.simplefilter("ignore", UserWarning)
        batch = buffer.sample(1, horizon + 1)
    obs, actions, rewards = batch.obs, batch.actions, batch.rewards
    start = model.encode(obs[:, 0])
    trajectory = model.rollout(start, actions[:, :horizon].transpose(0, 1))
    imagined = np.asarray(trajectory.rewards.detach().cpu().numpy())[:, 0]
    real = np.asarray(rewards.detach().cpu().numpy())[0, :horizon]
    state.record_imagination(real, imagined, label="rewards along a stored sequence")


def _train_offline(config: ProjectConfig, ctx: dict[str, Any]) -> tuple[int, int]:
    from worldflux.training import Trainer

    state: DashboardState = ctx["state"]
    env, dataset = ctx["env"], ctx["dataset"]
    seed = int(config["training"]["seed"])
    state.set_phase("collecting")
    if dataset is not None and hasattr(dataset, "build_replay_buffer"):
        buffer, records = dataset.build_replay_buffer(config, ctx["obs_shape"], ctx["action_dim"], seed, env=env)
    elif env is not None:
        data = config["data"]
        buffer, records = envs.collect_random_episodes(
            env, data["num_episodes"], data["episode_length"], data["buffer_capacity"], seed=seed
        )
    else:
        from worldflux.training.data import create_random_buffer

        data = config["data"]
        buffer = create_random_buffer(capacity=data["buffer_capacity"], obs_shape=tuple(ctx["obs_shape"]),
                                      action_dim=ctx["action_dim"], num_episodes=data["num_episodes"],
                                      episode_length=data["episode_length"], seed=seed)
        records = []
    for record in records:  # the collection's episodes reach the dashboard and the progress bar
        for callback in ctx["callbacks"]:
            hook = getattr(callback, "on_episode_end", None)
            if callable(hook):
                hook(record)
    if records and not ctx["resume"]:
        report.append_episodes(ctx["output_dir"], records)
    trainer = Trainer(ctx["model"], ctx["tconfig"], callbacks=ctx["callbacks"])
    trainer.data_mode = ctx["data_mode"]
    trainer.degraded_modes = list(ctx["degraded"])
    state.set_phase("training")
    trainer.train(buffer, resume_from=ctx["resume"])
    state.set_phase("evaluating")
    horizon = max(1, min(int(config["inference"]["horizon"]), int(config["data"]["episode_length"]) // 2 - 1))
    _imagination(ctx["model"], buffer, horizon, state)
    return int(trainer.state.global_step), int(records[-1]["env_steps"]) if records else 0


def _train_online(config: ProjectConfig, ctx: dict[str, Any]) -> tuple[int, int]:
    try:
        from worldflux.training import train_online
    except ImportError as exc:
        raise CLIError(
            "[online_collection] enabled = true needs worldflux.training.train_online, which this installation "
            f"lacks ({exc}); set [online_collection] enabled = false to train on random-policy episodes",
            code=1,
        ) from exc
    oc = config["online_collection"]
    steps = int(ctx["tconfig"].total_steps)
    result = train_online(
        ctx["model"],
        ctx["env"],
        steps,
        warmup_transitions=int(oc["warmup_transitions"]),
        collect_steps_per_update=int(oc["collect_steps_per_update"]),
        updates_per_collect=int(oc["updates_per_collect"]) or None,
        max_episode_steps=int(oc["max_episode_steps"]),
        config=ctx["tconfig"],
        callbacks=ctx["callbacks"],
        eval_every=int(oc["eval_every"]) or None,
        eval_episodes=int(oc["eval_episodes"]),
        resume_from=ctx["resume"],
        seed=int(config["training"]["seed"]),
    )
    env_steps = int(getattr(result, "env_steps", steps) or steps)
    state: DashboardState = ctx["state"]
    state.record_env_steps(env_steps)
    return int(state.train_step), env_steps


def train_project(
    config: ProjectConfig,
    *,
    steps: int | None = None,
    resume: str | None = None,
    console: Any = None,
    keep_serving: bool = False,
) -> RunSummary:
    """Run ``worldflux train`` for a loaded project; see the module docstring. Raises CLIError."""
    started = time.perf_counter()
    output_dir = config.resolve(config["training"]["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    if resume is not None:
        resume_path = Path(os.path.expanduser(resume))
        if not resume_path.is_absolute() and not resume_path.exists():
            resume_path = config.root / resume_path
        if not resume_path.exists():
            raise CLIError(f"--resume: checkpoint not found: {resume}", code=2)
        resume = os.fspath(resume_path)
    dataset = load_helper(config, "dataset")
    dashboard_helper = load_helper(config, "local_dashboard")
    vis, gameplay = config["visualization"], config["gameplay"]
    state = DashboardState(vis["history_max_points"], gameplay["max_frames"], title=config[""]["project_name"])

    env = space = None
    degraded: list[str] = []
    if config["data"]["source"] == "gym":
        env, space, degraded = _open_env(config, dataset, console)
    online = env is not None and bool(config["online_collection"]["enabled"])
    if space is not None:
        obs_shape, action_dim = space.obs_shape, space.action_dim
        data_mode = "online_env_collection" if online else "env_random_policy_replay"
    else:
        obs_shape, action_dim = tuple(config["architecture"]["obs_shape"]), int(config["architecture"]["action_dim"])
        data_mode = "random_replay"
    model = build_model(config, obs_shape, action_dim, agent=online, discrete=None if space is None else space.discrete)
    tconfig = training_config(config, output_dir, steps)
    state.set_info(model=config.model, environment=config.env_id if env is not None else "(none)",
                   data_mode=data_mode, obs_shape=list(obs_shape), action_dim=action_dim,
                   parameters=f"{model.num_parameters():,}", degraded_modes=", ".join(degraded) or "none")

    if dashboard_helper is not None and hasattr(dashboard_helper, "create_dashboard"):
        dash_callback = dashboard_helper.create_dashboard(config, state)
    else:
        dash_callback = DashboardCallback(state, frames=gameplay["enabled"], fps=gameplay["fps"])
    if not vis["enabled"]:
        dash_callback.wants_frames = False  # no page to show frames on: never ask the loop to render
    progress = TerminalProgress(console, online=online, total=int(tconfig.total_steps))
    server = None
    if vis["enabled"]:
        try:
            server = DashboardServer(state, host=vis["host"], port=vis["port"], refresh_ms=vis["refresh_ms"])
        except OSError as exc:
            raise CLIError(f"visualization.port = {vis['port']}: {exc}; choose another port (0 = any free one)",
                           code=1) from exc
        _say(console, f"dashboard: {server.url}", style="bold")
        if vis["open_browser"]:
            webbrowser.open(server.url, new=2)
    _say(console, f"training {config.model} ({model.num_parameters():,} parameters) on "
                  f"{config.env_id if env is not None else 'random replay'} (data mode {data_mode}) -> {output_dir}")
    ctx = {
        "state": state, "env": env, "space": space, "dataset": dataset, "model": model, "tconfig": tconfig,
        "callbacks": [progress, dash_callback], "resume": resume, "output_dir": output_dir,
        "obs_shape": obs_shape, "action_dim": action_dim, "data_mode": data_mode, "degraded": degraded,
    }
    summary = RunSummary(output_dir, data_mode, list(degraded))
    try:
        train_steps, env_steps = (_train_online if online else _train_offline)(config, ctx)
        summary.train_steps, summary.env_steps = train_steps, env_steps
        model.save_pretrained(os.fspath(output_dir / "model"))
        state.set_phase("done")
    except BaseException as exc:
        state.set_status(f"failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        progress.close()
        if env is not None:
            env.close()
        snapshot = state.snapshot()
        report.write_json(output_dir / "dashboard.json", snapshot)
        summary.plot = report.write_training_plot(snapshot, output_dir / "training_curves.png",
                                                  subtitle=f"({config.model}, {data_mode})")
        report.update_manifest(output_dir, data_mode, degraded,
                               project={"config": os.fspath(config.path) if config.path else None,
                                        "model": config.model, "environment": config.env_id or None,
                                        "episodes": state.episodes, "env_steps": state.env_steps})
        summary.episodes = state.episodes
        summary.seconds = time.perf_counter() - started
        if server is not None:
            summary.dashboard_url = server.url
            if keep_serving:
                _say(console, f"training finished; the dashboard keeps serving at {server.url} (Ctrl+C to exit)")
                try:
                    while True:
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    pass
            server.close()
    return summary
