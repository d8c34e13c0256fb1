"""A replay file (`worldflux.training.ReplayBuffer.save`'s `.npz`) read and sampled in pure numpy, for the script.

Keys: `obs [N, *obs_shape]`, `actions [N, A]`, `rewards [N]`, `dones [N]`, `obs_shape`, `action_dim`, `capacity`.
Windows follow the ReplayBuffer's rule: starts uniform over all window positions inside episodes (split at
`dones`) with at least `seq_len` steps (a window may end on the done step); with none long enough, over all rows.

Several processes draw the SAME global start indices for a step (`default_rng([seed, step])`) and each gathers
only its own rows `[p * B / P, (p + 1) * B / P)`, so a run gives the same global batches, hence the same model,
whatever the number of processes and devices.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from worldflux_jax.errors import ConfigurationError

REQUIRED_KEYS = ("obs", "actions", "rewards", "dones", "obs_shape", "action_dim")


class ReplayFile:
    """The arrays of a replay `.npz` and its window starts."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                missing = [k for k in REQUIRED_KEYS if k not in archive.files]
                if missing:
                    raise ConfigurationError(
                        f"--data {self.path}: missing keys {missing} (expected {list(REQUIRED_KEYS)})"
                    )
                self.obs = np.asarray(archive["obs"])
                self.actions = np.asarray(archive["actions"], np.float32)
                self.rewards = np.asarray(archive["rewards"], np.float32)
                self.dones = np.asarray(archive["dones"], np.float32)
                self.obs_shape = tuple(int(v) for v in np.asarray(archive["obs_shape"]).reshape(-1))
                self.action_dim = int(np.asarray(archive["action_dim"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigurationError(f"--data {self.path}: cannot read the replay file: {exc}") from exc
        n = len(self.obs)
        if (
            self.obs.shape[1:] != self.obs_shape
            or self.actions.shape != (n, self.action_dim)
            or self.rewards.shape != (n,)
            or self.dones.shape != (n,)
        ):
            raise ConfigurationError(
                f"--data {self.path}: inconsistent shapes obs {self.obs.shape}, actions {self.actions.shape}, rewards "
                f"{self.rewards.shape}, dones {self.dones.shape} for obs_shape {self.obs_shape}, action_dim "
                f"{self.action_dim}"
            )
        if self.obs.dtype != np.uint8:
            self.obs = self.obs.astype(np.float32, copy=False)

    def __len__(self) -> int:
        return len(self.obs)

    def starts(self, seq_len: int) -> np.ndarray:
        """Every valid window start for `seq_len`."""
        n = len(self)
        if n < seq_len:
            raise ConfigurationError(f"--seq-len {seq_len} is longer than the {n} rows of --data {self.path}")
        ends = np.flatnonzero(self.dones > 0.5) + 1
        bounds = np.concatenate([[0], ends[ends < n], [n]])
        pairs = zip(bounds[:-1], bounds[1:], strict=True)
        valid = [np.arange(a, b - seq_len + 1) for a, b in pairs if b - a >= seq_len]
        if not valid:
            return np.arange(n - seq_len + 1)
        return np.concatenate(valid)

    def batch(
        self, starts: np.ndarray, seed: int, step: int, batch_size: int, seq_len: int, rows: slice
    ) -> dict[str, Any]:
        """The `rows` slice of step `step`'s global batch (`obs [b, T, ...]`, `actions`, `rewards`, `terminations`)."""
        rng = np.random.default_rng([int(seed), int(step)])
        chosen = starts[rng.integers(0, len(starts), size=batch_size)][rows]
        index = chosen[:, None] + np.arange(seq_len)
        return {
            "obs": self.obs[index],
            "actions": self.actions[index],
            "rewards": self.rewards[index],
            "terminations": self.dones[index],
        }
