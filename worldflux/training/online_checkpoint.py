"""``output_dir/online_checkpoint/``: everything ``train_online`` needs to continue a run exactly.

Written atomically (a ``.tmp`` directory renamed over the old one) after an update phase:

* ``trainer/``: the trainer checkpoint (parameters, optimizer state, step, keys);
* ``replay.npz``: the replay buffer's stored episodes, and ``online_state.json`` their index, the env-step
  and update counters and the episode / evaluation logs;
* ``loop.npz`` and ``online_state.json["loop"]``: the collection loop in flight: the current observations, the
  episodes in progress, the agents' carried states and key counters, and the environments' snapshot
  (``worldflux.training.env_state``: physics, random generators, time limits, as JSON, no pickle).

A resumed run on CPU with the same seed then equals the uninterrupted one. Environments that cannot be
snapshotted (e.g. an ``AsyncVectorEnv``) restart instead; the episodes in progress are then dropped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from worldflux.core.exceptions import ConfigurationError

from . import env_state

ONLINE_CHECKPOINT = "online_checkpoint"
logger = logging.getLogger("worldflux.training")


@dataclass
class Loop:
    """The collection loop's state between two steps (see the module docstring)."""

    obs: np.ndarray
    first: np.ndarray
    rows: list[list[tuple[np.ndarray, np.ndarray, float, bool]]]
    incoming: np.ndarray
    agent_state: Any
    random_state: Any
    acting_random: bool
    agent_calls: int
    explorer_calls: int


def beside(path: str) -> str:
    """The online checkpoint directory next to a trainer checkpoint `path` (a file or an orbax directory)."""
    return os.path.join(os.path.dirname(os.path.normpath(path)), ONLINE_CHECKPOINT)


def _loop_files(loop: Loop, adapter: Any) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    snap = env_state.snapshot(adapter)
    if snap is None:
        return None, {}
    arrays: dict[str, np.ndarray] = {"obs": np.asarray(loop.obs), "first": loop.first, "incoming": loop.incoming}
    lengths = []
    for i, rows in enumerate(loop.rows):
        lengths.append(len(rows))
        if rows:
            arrays[f"rows{i}_obs"] = np.stack([r[0] for r in rows])
            arrays[f"rows{i}_actions"] = np.stack([r[1] for r in rows])
            arrays[f"rows{i}_rewards"] = np.asarray([r[2] for r in rows], np.float32)
            arrays[f"rows{i}_dones"] = np.asarray([r[3] for r in rows], bool)
    for name, tree in (("agent", loop.agent_state), ("random", loop.random_state)):
        for j, leaf in enumerate(jax.tree.leaves(tree)):
            arrays[f"{name}_{j}"] = np.asarray(jax.device_get(leaf))
    meta = {
        "envs": snap,
        "lengths": lengths,
        "acting_random": bool(loop.acting_random),
        "agent_calls": int(loop.agent_calls),
        "explorer_calls": int(loop.explorer_calls),
        "has_agent_state": loop.agent_state is not None,
        "has_random_state": loop.random_state is not None,
    }
    return meta, arrays


def save(
    output_dir: str,
    trainer: Any,
    buffer: Any,
    result: Any,
    table: list[tuple[int, int, bool]],
    loop: Loop | None = None,
    adapter: Any = None,
) -> None:
    """Write ``output_dir/online_checkpoint/`` atomically (``loop`` and ``adapter``: the loop in flight)."""
    final = os.path.join(output_dir, ONLINE_CHECKPOINT)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    trainer.save_checkpoint(os.path.join(tmp, "trainer"))
    buffer.save(os.path.join(tmp, "replay.npz"))
    oldest = buffer._total - len(buffer)  # noqa: SLF001 - episodes still stored
    kept = [(s - oldest, n, t) for s, n, t in table if s >= oldest]
    state = {
        "env_steps": result.env_steps,
        "updates": trainer.state.global_step,
        "episode_returns": result.episode_returns,
        "episode_lengths": result.episode_lengths,
        "eval_returns": result.eval_returns,
        "eval_history": result.eval_history,
        "episodes": kept,
    }
    if loop is not None and adapter is not None:
        meta, arrays = _loop_files(loop, adapter)
        if meta is not None:
            np.savez(os.path.join(tmp, "loop.npz"), **arrays)
            state["loop"] = meta
    with open(os.path.join(tmp, "online_state.json"), "w") as f:
        json.dump(state, f)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(tmp, final)


def resolve(path: str) -> str:
    """The online checkpoint directory for ``resume_from``: itself, the one inside a run directory, or the one
    beside a trainer checkpoint of an online run."""
    if os.path.basename(os.path.normpath(path)) != ONLINE_CHECKPOINT and os.path.isdir(
        os.path.join(path, ONLINE_CHECKPOINT)
    ):
        return os.path.join(path, ONLINE_CHECKPOINT)
    if os.path.exists(path) and os.path.isdir(beside(path)):
        # A Trainer checkpoint of an online run: the run's collection state (buffer, env steps) is kept beside
        # it, written at the same save points, so resume from that complete state.
        online = beside(path)
        logger.warning("resume_from=%s is a trainer checkpoint of an online run; resuming from %s", path, online)
        return online
    return path


def load(path: str, trainer: Any, buffer: Any, result: Any, table: list[tuple[int, int, bool]]) -> dict[str, Any]:
    """Load the trainer, buffer and counters of ``path`` (see :func:`resolve`); returns the saved state dict
    (with ``"loop"`` when the loop in flight was saved; :func:`restore_loop` applies it)."""
    path = resolve(path)
    state_path = os.path.join(path, "online_state.json")
    if not os.path.isfile(state_path):
        raise ConfigurationError(f"resume_from={path!r} is not an online checkpoint (no online_state.json)")
    with open(state_path) as f:
        state = json.load(f)
    trainer.load_checkpoint(os.path.join(path, "trainer"))
    with np.load(os.path.join(path, "replay.npz")) as saved:
        obs, actions, rewards, dones = saved["obs"], saved["actions"], saved["rewards"], saved["dones"]
    for start, length, terminated in state["episodes"]:
        sl = slice(start, start + length)
        table.append((buffer._total, length, bool(terminated)))  # noqa: SLF001
        buffer.add_episode(obs[sl], actions[sl], rewards[sl], dones[sl])
    result.env_steps = int(state["env_steps"])
    result.updates = int(state["updates"])
    result.episode_returns = [float(x) for x in state["episode_returns"]]
    result.episode_lengths = [int(x) for x in state["episode_lengths"]]
    result.eval_returns = [float(x) for x in state["eval_returns"]]
    result.eval_history = list(state["eval_history"])
    # The log keeps the episodes the checkpoint knows of (later ones are collected again).
    lines: list[str] = []
    if os.path.isfile(result.episodes_path):
        with open(result.episodes_path) as f:
            lines = f.readlines()[: len(result.episode_returns)]
    if len(lines) != len(result.episode_returns):
        pairs = zip(result.episode_returns, result.episode_lengths, strict=True)
        lines = [json.dumps({"index": i, "return": r, "length": n}) + "\n" for i, (r, n) in enumerate(pairs)]
    with open(result.episodes_path, "w") as f:
        f.writelines(lines)
    state["path"] = path
    return state


def restore_loop(state: dict[str, Any], adapter: Any, agent: Any, explorer: Any) -> Loop | None:
    """The saved loop in flight, written back into the freshly reset ``adapter``; None when the checkpoint has
    none or its environments do not fit (the caller then starts the envs afresh)."""
    meta = state.get("loop")
    loop_path = os.path.join(state["path"], "loop.npz")
    if meta is None or not os.path.isfile(loop_path):
        return None
    with np.load(loop_path) as saved:
        arrays = {k: saved[k] for k in saved.files}
    n = adapter.num_envs
    if len(meta["lengths"]) != n or arrays["obs"].shape[0] != n or not env_state.restore(adapter, meta["envs"]):
        logger.warning("the saved environments do not fit this run's; they restart (episodes in progress dropped)")
        return None
    rows: list[list[tuple[np.ndarray, np.ndarray, float, bool]]] = []
    for i, length in enumerate(meta["lengths"]):
        if not length:
            rows.append([])
            continue
        o, a = arrays[f"rows{i}_obs"], arrays[f"rows{i}_actions"]
        r, d = arrays[f"rows{i}_rewards"], arrays[f"rows{i}_dones"]
        rows.append([(o[t], a[t], float(r[t]), bool(d[t])) for t in range(length)])

    def tree(name: str, present: bool, template: Any) -> Any:
        if not present:
            return None
        leaves, treedef = jax.tree.flatten(template)
        return jax.tree.unflatten(treedef, [jax.numpy.asarray(arrays[f"{name}_{j}"]) for j in range(len(leaves))])

    return Loop(
        obs=arrays["obs"],
        first=arrays["first"].astype(bool),
        rows=rows,
        incoming=arrays["incoming"].astype(np.float32),
        agent_state=tree("agent", meta["has_agent_state"], agent.initial_state(n)),
        random_state=tree("random", meta["has_random_state"], explorer.initial_state(n)),
        acting_random=bool(meta["acting_random"]),
        agent_calls=int(meta["agent_calls"]),
        explorer_calls=int(meta["explorer_calls"]),
    )
