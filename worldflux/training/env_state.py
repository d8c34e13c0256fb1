"""Environment snapshots for exact online resume, as plain JSON (no pickle: a checkpoint must not run code).

``snapshot(adapter)`` records, for each sub-env of a ``SyncVectorEnv`` (what ``VectorEnvAdapter`` builds from an
id or an ``Env``), everything that decides its future given the same actions:

* the physical state: MuJoCo's ``qpos`` / ``qvel`` (restored through ``set_state``), or the ``state`` array of the
  classic-control envs (CartPole, Pendulum, Acrobot, MountainCar; with CartPole's ``steps_beyond_terminated``);
* the env's random generator (``np_random``'s bit-generator state: the next resets draw the same starts);
* every wrapper's ``_elapsed_steps`` (``TimeLimit``: the episode ends at the same step);
* the vector env's pending autoresets (``NEXT_STEP`` mode).

``restore(adapter, snap)`` writes them back into a freshly reset adapter. Envs of other kinds (an
``AsyncVectorEnv``, envs without a ``state`` array or MuJoCo data) give ``None``: the caller then restarts the
envs, as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["restore", "snapshot"]


def _chain(env: Any) -> list[Any]:
    """The wrapper chain from ``env`` down to the unwrapped env."""
    chain = [env]
    while hasattr(chain[-1], "env") and chain[-1].env is not chain[-1]:
        chain.append(chain[-1].env)
    return chain


def _physics(unwrapped: Any) -> dict[str, Any] | None:
    data = getattr(unwrapped, "data", None)
    if data is not None and callable(getattr(unwrapped, "set_state", None)) and hasattr(data, "qpos"):
        return {"kind": "mujoco", "qpos": np.asarray(data.qpos).tolist(), "qvel": np.asarray(data.qvel).tolist()}
    state = getattr(unwrapped, "state", None)
    if state is None:
        return None
    array = np.asarray(state)
    if array.dtype.kind not in "biuf":
        return None
    out: dict[str, Any] = {"kind": "state", "state": array.tolist(), "dtype": str(array.dtype)}
    if hasattr(unwrapped, "steps_beyond_terminated"):
        out["steps_beyond_terminated"] = unwrapped.steps_beyond_terminated
    return out


def _sub_envs(adapter: Any) -> list[Any] | None:
    envs = getattr(adapter.env, "envs", None)  # SyncVectorEnv holds its sub-envs; AsyncVectorEnv does not
    return list(envs) if isinstance(envs, list | tuple) else None


def snapshot(adapter: Any) -> dict[str, Any] | None:
    """A JSON-able snapshot of the adapter's envs, or None when they cannot be captured."""
    envs = _sub_envs(adapter)
    if envs is None:
        return None
    subs = []
    for env in envs:
        chain = _chain(env)
        physics = _physics(chain[-1])
        if physics is None:
            return None
        subs.append(
            {
                "physics": physics,
                "rng": chain[-1].np_random.bit_generator.state,
                "elapsed": [getattr(w, "_elapsed_steps", None) for w in chain],
            }
        )
    autoreset = getattr(adapter.env, "_autoreset_envs", None)
    return {
        "envs": subs,
        "autoreset": None if autoreset is None else np.asarray(autoreset, bool).tolist(),
        "pending": np.asarray(adapter._pending, bool).tolist(),  # noqa: SLF001 - the adapter's own state
    }


def restore(adapter: Any, snap: dict[str, Any]) -> bool:
    """Write ``snap`` into ``adapter``'s envs (already reset); False when it does not fit them."""
    envs = _sub_envs(adapter)
    if envs is None or len(envs) != len(snap.get("envs", ())):
        return False
    for env, sub in zip(envs, snap["envs"], strict=True):
        chain = _chain(env)
        if len(chain) != len(sub["elapsed"]):
            return False
        unwrapped = chain[-1]
        physics = sub["physics"]
        if physics["kind"] == "mujoco":
            unwrapped.set_state(np.asarray(physics["qpos"]), np.asarray(physics["qvel"]))
        else:
            unwrapped.state = np.asarray(physics["state"], dtype=physics["dtype"])
            if "steps_beyond_terminated" in physics:
                unwrapped.steps_beyond_terminated = physics["steps_beyond_terminated"]
        unwrapped.np_random.bit_generator.state = sub["rng"]
        for wrapper, elapsed in zip(chain, sub["elapsed"], strict=True):
            if elapsed is not None:
                wrapper._elapsed_steps = elapsed  # noqa: SLF001 - TimeLimit's counter
    if snap.get("autoreset") is not None and hasattr(adapter.env, "_autoreset_envs"):
        adapter.env._autoreset_envs = np.asarray(snap["autoreset"], bool)  # noqa: SLF001
    adapter._pending = np.asarray(snap["pending"], bool)  # noqa: SLF001
    return True
