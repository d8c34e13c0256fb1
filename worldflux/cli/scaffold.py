"""``worldflux init``: write a project (``worldflux.toml``, ``dataset.py``, ``local_dashboard.py``,
``inference.py``) that ``worldflux train`` runs as is.

The TOML is rendered from :data:`worldflux.config_loader.SCHEMA` (every documented key, with its description
as a comment), with the values chosen by the flags or prompts; the helper files are small, editable Python
files that ``worldflux train`` imports when present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worldflux.config_loader import CONFIG_FILENAME, SCHEMA, parse_config

__all__ = ["PROJECT_FILES", "existing_project_files", "render_toml", "write_project"]

PROJECT_FILES = (CONFIG_FILENAME, "dataset.py", "local_dashboard.py", "inference.py")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a TOML basic string: JSON's escapes minus surrogate pairs, DEL escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def render_toml(values: dict[str, dict[str, Any]]) -> str:
    """TOML text for ``values[section][key]`` (top-level keys under ``""``), every key commented."""
    lines = ["# worldflux.toml - read by `worldflux train` (strict: unknown keys are errors).",
             "# `worldflux config schema` prints the JSON schema of this file.", ""]
    for section, keys in SCHEMA.items():
        if not keys:
            continue
        if section:
            lines += ["", f"[{section}]"]
        for key, spec in keys.items():
            value = values.get(section, {}).get(key, spec.default)
            lines.append(f"{key} = {_toml_value(value)}  # {spec.doc}")
    return "\n".join(lines) + "\n"


DATASET_PY = '''"""Training data for `worldflux train` (this file is used when present; edit it to bring your own data).

`make_env` builds the environment of `[data] source = "gym"`; `build_replay_buffer` fills the replay buffer
that offline runs train on (`[data] source = "random"`, or "gym" with `[online_collection] enabled = false`).
"""

from worldflux.cli.envs import collect_random_episodes, make_env as _make_env
from worldflux.training.data import create_random_buffer


def make_env(env_id, render=False, max_episode_steps=None):
    """A gymnasium environment (raises worldflux.cli.envs.EnvUnavailable with the cause when it cannot be made)."""
    return _make_env(env_id, render=render, max_episode_steps=max_episode_steps)


def build_replay_buffer(config, obs_shape, action_dim, seed, env=None):
    """A ReplayBuffer and the list of episode records (dicts with index, return, length, env_steps, terminated).

    With an environment: random-policy episodes from it. Without: synthetic random episodes.
    """
    data = config["data"]
    if env is not None:
        return collect_random_episodes(
            env, data["num_episodes"], data["episode_length"], data["buffer_capacity"], seed=seed
        )
    buffer = create_random_buffer(
        capacity=data["buffer_capacity"],
        obs_shape=tuple(obs_shape),
        action_dim=action_dim,
        num_episodes=data["num_episodes"],
        episode_length=data["episode_length"],
        seed=seed,
    )
    return buffer, []
'''

LOCAL_DASHBOARD_PY = '''"""The local dashboard of this project (`worldflux train` uses `create_dashboard` when present).

    python local_dashboard.py      # serve the last run's dashboard (outputs/dashboard.json) again
"""

from worldflux.dashboard import DashboardCallback, DashboardServer, DashboardState


def create_dashboard(config, state: DashboardState) -> DashboardCallback:
    """The training callback that feeds the dashboard page (add your own records here)."""
    gameplay = config["gameplay"]
    return DashboardCallback(state, frames=gameplay["enabled"], fps=gameplay["fps"])


if __name__ == "__main__":
    import json
    import time
    from pathlib import Path

    from worldflux.config_loader import load_config

    config = load_config("worldflux.toml")
    vis = config["visualization"]
    state = DashboardState.from_snapshot(
        json.loads((config.resolve(config["training"]["output_dir"]) / "dashboard.json").read_text())
    )
    server = DashboardServer(state, host=vis["host"], port=vis["port"], refresh_ms=vis["refresh_ms"])
    print(f"dashboard at {server.url} (Ctrl+C to stop)")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        server.close()
'''

INFERENCE_PY = '''"""Imagine with the trained model: encode a start observation and roll the world model out for
`[inference] horizon` steps (`python inference.py [CHECKPOINT]`).
"""

import sys

import torch

from worldflux.cli.project import load_trained_model
from worldflux.config_loader import load_config


def main(checkpoint=None):
    config = load_config("worldflux.toml")
    model, obs_shape, action_dim = load_trained_model(config, checkpoint or config["inference"]["checkpoint"])
    horizon = config["inference"]["horizon"]
    state = model.encode(torch.zeros(1, *obs_shape))
    trajectory = model.rollout(state, torch.zeros(horizon, 1, action_dim))
    rewards = trajectory.rewards
    print(f"imagined {horizon} steps; predicted rewards: {[round(float(r), 4) for r in rewards.reshape(-1)]}")
    return trajectory


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
'''

_HELPERS = {"dataset.py": DATASET_PY, "local_dashboard.py": LOCAL_DASHBOARD_PY, "inference.py": INFERENCE_PY}


def existing_project_files(directory: Path) -> list[str]:
    """The project files that already exist in ``directory``."""
    return [name for name in PROJECT_FILES if (directory / name).exists()]


def write_project(directory: Path, values: dict[str, dict[str, Any]]) -> list[Path]:
    """Validate ``values`` with the strict loader, then write the four project files; returns their paths."""
    text = render_toml(values)
    import tomllib

    parse_config(tomllib.loads(text))  # what we write must load
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    (directory / CONFIG_FILENAME).write_text(text, encoding="utf-8")
    written.append(directory / CONFIG_FILENAME)
    for name, body in _HELPERS.items():
        (directory / name).write_text(body, encoding="utf-8")
        written.append(directory / name)
    return written
