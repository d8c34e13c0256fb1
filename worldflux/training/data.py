"""Replay storage and batch providers for world-model training.

``ReplayBuffer`` keeps transitions in preallocated, contiguous ring arrays (numpy, host memory) and samples
fixed-length windows with one vectorised gather: all start indices are drawn at once and rows are taken with
``storage[(starts[:, None] + arange(T)) % capacity]``. Sampled arrays are handed to torch with
``torch.from_numpy`` (zero copy), so a ``Batch`` of torch tensors comes out as the documented API promises.

Decisions recorded here (see the reference notes, section 6.5 and the divergence summary):

* ``ReplayBuffer.load`` ACCEPTS the 6-key ``.npz`` layout documented in the Training API page (no ``capacity``
  key); the capacity then defaults to ``max(N, 1)`` where N is the number of stored rows. Files with a
  ``capacity`` key are validated exactly as the reference does. ``save`` always writes the 7 keys.
* ``num_transitions`` exists and equals ``len(buffer)`` (documented in the Training API page, absent in the
  reference code).
* Episode bookkeeping is exact: the index keeps each episode's logical (monotonic) start, and once a write
  overwrites any row of an indexed episode that episode is dropped, oldest first, stopping at the first
  surviving one. Episodes that straddle the physical end of the ring stay sampleable until overwritten (the
  reference drops them on its next clean-up); sampled windows therefore never cross an episode boundary.
* ``save``/``to_parquet`` write the stored rows oldest first (identical to the reference until the ring has
  wrapped; afterwards the reference writes physical order, which splits the episode at the write head).
* ``sample(device=...)``: the tensors are moved with ``.to(device)`` when torch can place them there; a device
  torch cannot use in this process (e.g. ``"cuda"`` with a CPU-only torch next to a JAX GPU backend, or
  ``"tpu"``) keeps the batch in host memory and warns once per device name. The JAX trainer moves host batches
  to its own device.
* Randomness: sampling draws from numpy's global RNG unless ``buffer.rng`` is set to a ``np.random.Generator``
  (so ``worldflux.set_seed`` makes sampling reproducible, as in the reference). ``create_random_buffer`` uses a
  local ``np.random.default_rng(seed)`` and never reseeds the global RNG (the reference calls
  ``np.random.seed``); with ``seed=None`` the local generator is seeded from one draw of the global RNG.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from worldflux.core.batch import Batch
from worldflux.core.exceptions import BufferError, ConfigurationError, ShapeMismatchError

from .prefetch import Prefetcher, PrefetchTimeout, sample_call
from .replay_io import arrays_checksum, load_npz, load_parquet

__all__ = [
    "PrefetchBatchProvider",
    "ReplayBuffer",
    "ThreadSafeReplayBuffer",
    "TokenSequenceProvider",
    "TrajectoryDataset",
    "TransitionArrayProvider",
    "create_random_buffer",
]

_BufferT = TypeVar("_BufferT", bound="ReplayBuffer")

_NPZ_KEYS: tuple[str, ...] = ("obs", "actions", "rewards", "dones", "obs_shape", "action_dim", "capacity")
_PARQUET_META_KEY = b"worldflux_replay_meta"
_PARQUET_FORMAT_VERSION = 1

_WARNED_DEVICES: set[str] = set()
_WARNED_LOCK = threading.Lock()


# ---------------------------------------------------------------------------------------------- helpers


def _to_numpy(value: Any, name: str) -> np.ndarray:
    """A numpy view/copy of ``value`` (numpy array, torch tensor, JAX array or nested sequence)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ShapeMismatchError(f"{name} must be array-like, got {type(value).__name__}: {exc}") from exc


def _resolve_torch_device(device: str | torch.device | None) -> torch.device | None:
    """The torch device to move sampled tensors to, or None to keep them in host memory.

    Devices torch cannot use here (unparsable names such as "tpu"/"gpu", CUDA/MPS without torch support) keep
    the batch on the host with a one-time ``UserWarning`` per device name.
    """
    if device is None:
        return None
    name = str(device)
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        target = None
    if target is not None and target.type == "cpu":
        return None
    usable = target is not None and (
        (target.type == "cuda" and torch.cuda.is_available())
        or (target.type == "mps" and torch.backends.mps.is_available())
        or target.type not in ("cuda", "mps")
    )
    if usable:
        return target
    with _WARNED_LOCK:
        first = name not in _WARNED_DEVICES
        _WARNED_DEVICES.add(name)
    if first:
        warnings.warn(
            f"torch cannot place tensors on device {name!r} in this process; sampled batches stay in host "
            "memory (the JAX trainer moves them to its own accelerator)",
            UserWarning,
            stacklevel=3,
        )
    return None


def _tensor(array: np.ndarray, device: torch.device | None) -> torch.Tensor:
    """``torch.from_numpy`` (zero copy) and, for a non-CPU device, ``.to(device)``."""
    tensor = torch.from_numpy(array)
    return tensor if device is None else tensor.to(device)


def _episode_bounds_from_dones(dones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Episode ``(starts, lengths)`` from done flags ``[N]``: split after every ``done > 0.5``; a trailing
    unterminated run is an episode too."""
    n = int(dones.shape[0])
    ends = np.flatnonzero(dones > 0.5) + 1
    if n and (ends.size == 0 or ends[-1] != n):
        ends = np.append(ends, n)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64) if ends.size else np.zeros(0, dtype=np.int64)
    return starts, (ends - starts).astype(np.int64)


def _int_metadata(value: Any, name: str) -> int:
    try:
        array = np.asarray(value)
        if array.size != 1 or array.dtype.kind not in "iuf":
            raise ValueError(f"expected one integer, got {array.tolist()!r}")
        result = float(array.reshape(()).item())
        if not result.is_integer():
            raise ValueError(f"expected an integer, got {result}")
        number = int(result)
    except (TypeError, ValueError) as exc:
        raise BufferError(f"Invalid {name} metadata: {exc}") from exc
    if number <= 0:
        raise BufferError(f"Invalid {name} metadata: {number} (must be a positive integer)")
    return number


def _shape_metadata(value: Any) -> tuple[int, ...]:
    try:
        array = np.asarray(value)
        if array.ndim > 1 or array.dtype.kind not in "iuf":
            raise ValueError(f"expected a 1-D integer array, got {array.tolist()!r}")
        dims = [float(v) for v in np.atleast_1d(array).tolist()]
        if not all(d.is_integer() for d in dims):
            raise ValueError(f"expected integers, got {dims}")
        shape = tuple(int(d) for d in dims)
    except (TypeError, ValueError) as exc:
        raise BufferError(f"Invalid obs_shape metadata: {exc}") from exc
    if not shape or any(dim <= 0 for dim in shape):
        raise BufferError(f"Invalid obs_shape metadata: {shape} (must be a non-empty tuple of positive dims)")
    return shape


def _require_pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a dev dependency here
        raise BufferError(
            "Parquet replay I/O requires the optional 'pyarrow' dependency; install it with `pip install pyarrow`"
        ) from exc
    return pa, pq


# ---------------------------------------------------------------------------------------------- replay buffer


class ReplayBuffer:
    """Efficient trajectory storage for world-model training.

    Transitions live in preallocated ring arrays: ``obs [capacity, *obs_shape]`` (``obs_dtype``),
    ``actions [capacity, action_dim]``, ``rewards [capacity]`` and ``dones [capacity]`` (float32). Episodes are
    indexed so that ``sample`` draws windows that never cross an episode boundary.

    Not thread-safe: use ``ThreadSafeReplayBuffer`` (same API behind a read/write lock) when one thread adds
    episodes while others sample.

    Args:
        capacity: maximum number of transitions stored (older ones are overwritten).
        obs_shape: shape of one observation, e.g. ``(3, 64, 64)`` or ``(4,)``.
        action_dim: action vector width A.
        obs_dtype: numpy dtype of the observation storage (``np.uint8`` keeps images compact).
        absorbing_terminals: let windows run past the end of a *terminated* episode (last ``done`` = 1) into
            absorbing rows: the final observation again, zero action, zero reward, ``done`` = 1. Episodes shorter
            than ``seq_len`` can then be sampled, and a terminal step is drawn as often as any other step (with
            windows kept inside episodes it is drawn ``~seq_len`` times less often). Truncated episodes are
            never padded. Off by default (the reference's sampler); ``train_online`` turns it on.

    Raises:
        ConfigurationError: non-positive ``capacity``/``action_dim`` or an empty/non-positive ``obs_shape``.

    Example:
        >>> buffer = ReplayBuffer(capacity=1000, obs_shape=(4,), action_dim=2)
        >>> buffer.add_episode(np.zeros((20, 4)), np.zeros((20, 2)), np.zeros(20))
        >>> buffer.sample(batch_size=8, seq_len=10).obs.shape
        torch.Size([8, 10, 4])
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        obs_dtype: type = np.float32,
        *,
        absorbing_terminals: bool = False,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer) or capacity <= 0:
            raise ConfigurationError(f"capacity must be a positive integer, got {capacity!r}")
        try:
            shape = tuple(int(dim) for dim in obs_shape)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"obs_shape must be a tuple of positive integers, got {obs_shape!r}") from exc
        if not shape or any(dim <= 0 for dim in shape):
            raise ConfigurationError(f"obs_shape must have positive dimensions, got {obs_shape!r}")
        if isinstance(action_dim, bool) or not isinstance(action_dim, int | np.integer) or action_dim <= 0:
            raise ConfigurationError(f"action_dim must be a positive integer, got {action_dim!r}")
        try:
            dtype = np.dtype(obs_dtype)
        except TypeError as exc:
            raise ConfigurationError(f"obs_dtype must be a numpy dtype, got {obs_dtype!r}") from exc

        self.capacity = int(capacity)
        self.obs_shape: tuple[int, ...] = shape
        self.action_dim = int(action_dim)
        self.obs_dtype = dtype.type
        self.absorbing_terminals = bool(absorbing_terminals)
        self.data_provenance: dict[str, Any] = {}
        # Optional generator for sampling; None draws from numpy's global RNG (seeded by ``set_seed``).
        self.rng: np.random.Generator | None = None

        self._obs = np.zeros((self.capacity, *shape), dtype=dtype)
        self._actions = np.zeros((self.capacity, self.action_dim), dtype=np.float32)
        self._rewards = np.zeros(self.capacity, dtype=np.float32)
        self._dones = np.zeros(self.capacity, dtype=np.float32)

        # Logical (monotonic) write counter: row ``i`` lives at ``i % capacity`` and is stored iff
        # ``i >= _total - capacity``. Episodes are kept as logical ``(start, length)``, oldest first.
        self._total = 0
        self._episodes: deque[tuple[int, int]] = deque()
        self._episode_cache: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ introspection

    @property
    def _size(self) -> int:
        return min(self._total, self.capacity)

    @property
    def _position(self) -> int:
        return self._total % self.capacity

    def __len__(self) -> int:
        """Number of transitions stored."""
        return self._size

    @property
    def num_transitions(self) -> int:
        """Number of transitions stored (same as ``len(buffer)``)."""
        return self._size

    @property
    def num_episodes(self) -> int:
        """Number of episodes indexed (after ``load``: done-terminated runs plus a trailing unterminated one)."""
        return len(self._episodes)

    def ready_for_sequence(self, *, batch_size: int, seq_len: int) -> bool:
        """True once at least ``batch_size * seq_len`` transitions are stored."""
        return self._size >= batch_size * seq_len

    def batch_layout(self) -> dict[str, str]:
        """Axis layout of sampled batches."""
        return {"obs": "BT...", "actions": "BT...", "rewards": "BT", "terminations": "BT"}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self._size}/{self.capacity}, episodes={len(self._episodes)}, "
            f"obs_shape={self.obs_shape}, action_dim={self.action_dim})"
        )

    # ------------------------------------------------------------------ writing

    def add_episode(
        self,
        obs: np.ndarray | torch.Tensor,
        actions: np.ndarray | torch.Tensor,
        rewards: np.ndarray | torch.Tensor,
        dones: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Append one complete episode (numpy arrays or torch tensors).

        Args:
            obs: ``[L, *obs_shape]``.
            actions: ``[L, action_dim]``.
            rewards: ``[L]``.
            dones: ``[L]`` done flags; None marks only the last step done.

        An empty episode (L = 0) is ignored. An episode with ``L >= capacity`` keeps its newest ``capacity`` rows
        and replaces everything stored. Otherwise rows are written at the write head (wrapping around), and every
        indexed episode with an overwritten row is dropped from the index, oldest first.

        Raises:
            ShapeMismatchError: ``obs.shape[1:] != obs_shape``, ``actions`` not ``[L, action_dim]``, ``rewards`` or
                ``dones`` not 1-D of length L.
        """
        obs_np = _to_numpy(obs, "obs")
        if obs_np.ndim == 0:
            raise ShapeMismatchError("obs must have shape [L, *obs_shape], got a scalar", expected=self.obs_shape)
        length = int(obs_np.shape[0])
        if length == 0:
            return
        actions_np = _to_numpy(actions, "actions")
        rewards_np = _to_numpy(rewards, "rewards")
        dones_np = None if dones is None else _to_numpy(dones, "dones")

        if tuple(obs_np.shape[1:]) != self.obs_shape:
            raise ShapeMismatchError(
                "Observation shape mismatch (obs must be [L, *obs_shape])",
                expected=self.obs_shape,
                got=tuple(obs_np.shape[1:]),
            )
        if actions_np.ndim != 2 or actions_np.shape[1] != self.action_dim:
            raise ShapeMismatchError(
                "Action shape mismatch (actions must be [L, action_dim])",
                expected=(length, self.action_dim),
                got=tuple(actions_np.shape),
            )
        if actions_np.shape[0] != length:
            raise ShapeMismatchError(
                "Action length mismatch", expected=(length, self.action_dim), got=tuple(actions_np.shape)
            )
        if rewards_np.ndim != 1 or rewards_np.shape[0] != length:
            raise ShapeMismatchError(
                "Rewards must be a 1-D array of the episode length", expected=(length,), got=tuple(rewards_np.shape)
            )
        if dones_np is None:
            dones_np = np.zeros(length, dtype=np.float32)
            dones_np[-1] = 1.0
        elif dones_np.ndim != 1 or dones_np.shape[0] != length:
            raise ShapeMismatchError(
                "Dones must be a 1-D array of the episode length", expected=(length,), got=tuple(dones_np.shape)
            )
        self._write_episode(obs_np, actions_np, rewards_np, dones_np)

    def _write_episode(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        length = int(obs.shape[0])
        capacity = self.capacity
        if length >= capacity:
            # Keep the newest ``capacity`` rows; they replace everything, starting at row 0.
            obs, actions, rewards, dones = obs[-capacity:], actions[-capacity:], rewards[-capacity:], dones[-capacity:]
            self._obs[:] = obs
            self._actions[:] = actions
            self._rewards[:] = rewards
            self._dones[:] = dones
            self._total = capacity
            self._episodes = deque([(0, capacity)])
            self._episode_cache = None
            return

        start = self._total % capacity
        first = min(length, capacity - start)
        rest = length - first
        self._obs[start : start + first] = obs[:first]
        self._actions[start : start + first] = actions[:first]
        self._rewards[start : start + first] = rewards[:first]
        self._dones[start : start + first] = dones[:first]
        if rest:
            self._obs[:rest] = obs[first:]
            self._actions[:rest] = actions[first:]
            self._rewards[:rest] = rewards[first:]
            self._dones[:rest] = dones[first:]

        self._episodes.append((self._total, length))
        self._total += length
        oldest_stored = self._total - capacity
        while self._episodes and self._episodes[0][0] < oldest_stored:
            self._episodes.popleft()
        self._episode_cache = None

    def _set_contents(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        """Replace the contents with ``N <= capacity`` rows (oldest first); episodes are rebuilt from dones."""
        size = int(obs.shape[0])
        self._obs[:size] = obs
        self._actions[:size] = actions
        self._rewards[:size] = rewards
        self._dones[:size] = dones
        self._total = size
        starts, lengths = _episode_bounds_from_dones(self._dones[:size])
        self._episodes = deque(zip(starts.tolist(), lengths.tolist(), strict=True))
        self._episode_cache = None

    def _stored_rows(self) -> np.ndarray:
        """Physical indices ``[size]`` of the stored rows, oldest first."""
        size = self._size
        return (np.arange(self._total - size, self._total, dtype=np.int64)) % self.capacity

    # ------------------------------------------------------------------ sampling

    def _episode_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._episode_cache is None:
            if self._episodes:
                table = np.asarray(self._episodes, dtype=np.int64)
                self._episode_cache = (table[:, 0].copy(), table[:, 1].copy())
            else:
                empty = np.zeros(0, dtype=np.int64)
                self._episode_cache = (empty, empty)
        return self._episode_cache

    def _integers(self, high: int | np.ndarray, size: int) -> np.ndarray:
        """``size`` uniform integers in ``[0, high)`` from ``self.rng`` or numpy's global RNG."""
        if self.rng is not None:
            return self.rng.integers(0, high, size=size, dtype=np.int64)
        return np.random.randint(0, high, size=size).astype(np.int64, copy=False)

    def _sample_windows(self, batch_size: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Logical window starts ``[batch_size]`` and the last readable row of each window ``[batch_size]``.

        Windows stay inside one episode when possible; with ``absorbing_terminals`` a window may start anywhere
        in a terminated episode but its last row (rows past the episode's end read as absorbing rows).
        """
        ep_starts, ep_lengths = self._episode_arrays()
        counts = ep_lengths - seq_len + 1
        if self.absorbing_terminals and ep_starts.size:
            terminal = self._dones[(ep_starts + ep_lengths - 1) % self.capacity] > 0
            counts = np.where(terminal, np.maximum(counts, ep_lengths - 1), counts)
        eligible = counts > 0
        if not eligible.any():
            if self._size < seq_len:
                raise BufferError(
                    f"Buffer has insufficient data: {self._size} transitions stored, need at least {seq_len} "
                    "for the requested sequence length"
                )
            reason = "no episodes are recorded" if ep_starts.size == 0 else f"no episode has {seq_len}+ steps"
            warnings.warn(
                f"ReplayBuffer.sample: {reason}; sampling uniform windows of {seq_len} steps that may cross "
                "episode boundaries",
                UserWarning,
                stacklevel=3,
            )
            oldest = self._total - self._size
            starts = oldest + self._integers(self._size - seq_len + 1, batch_size)
            return starts, starts + seq_len - 1
        starts, counts, lengths = ep_starts[eligible], counts[eligible], ep_lengths[eligible]
        cumulative = np.cumsum(counts)
        draws = self._integers(int(cumulative[-1]), batch_size)
        episode = np.searchsorted(cumulative, draws, side="right")
        offset = draws - (cumulative[episode] - counts[episode])
        return starts[episode] + offset, starts[episode] + lengths[episode] - 1

    def sample(self, batch_size: int, seq_len: int, device: str | torch.device = "cpu") -> Batch:
        """Sample ``batch_size`` windows of ``seq_len`` consecutive transitions.

        Each start is uniform over all window positions inside indexed episodes with at least ``seq_len`` steps
        (a window may end on the episode's done step). With ``absorbing_terminals`` a terminated episode of ``L``
        rows also offers starts up to its row ``L - 2``, the rows past its end reading as absorbing rows (final
        observation, zero action, zero reward, done 1). If no episode is eligible, a ``UserWarning`` is emitted
        and starts are uniform over the stored rows (windows may cross episodes).

        Returns:
            ``Batch(obs [B, T, *obs_shape] obs_dtype, actions [B, T, A], rewards [B, T], terminations [B, T])``
            (float32 except obs), with ``layouts == batch_layout()`` and ``strict_layout=True``.

        Raises:
            BufferError: fewer than ``seq_len`` transitions are stored (and no padded window is eligible).
            ConfigurationError: ``batch_size`` or ``seq_len`` is not a positive integer.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size <= 0:
            raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int | np.integer) or seq_len <= 0:
            raise ConfigurationError(f"seq_len must be a positive integer, got {seq_len!r}")
        starts, last = self._sample_windows(int(batch_size), int(seq_len))
        logical = starts[:, None] + np.arange(seq_len, dtype=np.int64)  # [B, T]
        rows = np.minimum(logical, last[:, None]) % self.capacity
        actions, rewards = self._actions[rows], self._rewards[rows]  # fancy indexing: copies
        absorbing = logical > last[:, None]
        actions[absorbing] = 0.0
        rewards[absorbing] = 0.0
        target = _resolve_torch_device(device)
        return Batch(
            obs=_tensor(self._obs[rows], target),
            actions=_tensor(actions, target),
            rewards=_tensor(rewards, target),
            terminations=_tensor(self._dones[rows], target),
            layouts=self.batch_layout(),
            strict_layout=True,
        )

    # ------------------------------------------------------------------ npz

    def save(self, path: str | Path) -> None:
        """Write the stored rows (oldest first) with ``np.savez_compressed``.

        Keys: ``obs [N, *obs_shape]``, ``actions [N, A]``, ``rewards [N]``, ``dones [N]``, ``obs_shape`` (int64
        array), ``action_dim`` and ``capacity`` (int64 scalars) and ``checksum`` (see ``replay_io``). Parent
        directories are created.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = self._stored_rows()
        obs, actions, rewards, dones = self._obs[rows], self._actions[rows], self._rewards[rows], self._dones[rows]
        np.savez_compressed(
            path,
            obs=obs,
            actions=actions,
            rewards=rewards,
            dones=dones,
            obs_shape=np.asarray(self.obs_shape, dtype=np.int64),
            action_dim=np.asarray(self.action_dim, dtype=np.int64),
            capacity=np.asarray(self.capacity, dtype=np.int64),
            checksum=np.asarray(arrays_checksum(obs, actions, rewards, dones)),
        )

    @classmethod
    def load(
        cls: type[_BufferT], path: str | Path, *, obs_dtype: type = np.float32, on_nonfinite: str = "warn"
    ) -> _BufferT:
        """Load a ``.npz`` buffer with schema validation (``allow_pickle=False``).

        Required keys: ``obs``, ``actions``, ``rewards``, ``dones``, ``obs_shape``, ``action_dim``; ``capacity``
        is optional (default ``max(N, 1)``, the 6-key layout of the Training API page). Episode boundaries are
        rebuilt from ``dones > 0.5``. Observations are stored as ``obs_dtype`` (float32 as in the reference).
        Untrusted-file checks (sizes before allocation, checksum, dtypes, NaN/inf per ``on_nonfinite`` =
        ``"warn"`` | ``"raise"``): ``worldflux.training.replay_io``.

        Raises:
            BufferError: unreadable or special file, missing keys, invalid ``obs_shape``/``action_dim``/``capacity``
                metadata, ``obs``/``actions``/``rewards``/``dones`` shapes that disagree with the metadata or each
                other, more rows than ``capacity``, sizes over the load limit, a checksum mismatch, or (``"raise"``)
                non-finite obs/rewards; the message names the path.
        """
        return load_npz(cls, path, obs_dtype=obs_dtype, on_nonfinite=on_nonfinite)

    @staticmethod
    def _validate_rows(
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        obs_shape: tuple[int, ...],
        action_dim: int,
    ) -> None:
        if obs.ndim < 2:
            raise BufferError(f"Invalid obs shape: expected [N, *obs_shape], got {obs.shape}")
        if tuple(obs.shape[1:]) != obs_shape:
            raise BufferError(f"obs shape does not match obs_shape metadata: {tuple(obs.shape[1:])} vs {obs_shape}")
        if actions.ndim != 2:
            raise BufferError(f"Invalid actions shape: expected [N, action_dim], got {actions.shape}")
        if actions.shape[1] != action_dim:
            raise BufferError(f"actions shape does not match action_dim metadata: {actions.shape[1]} vs {action_dim}")
        if rewards.ndim != 1:
            raise BufferError(f"Invalid rewards shape: expected [N], got {rewards.shape}")
        if dones.ndim != 1:
            raise BufferError(f"Invalid dones shape: expected [N], got {dones.shape}")
        lengths = (len(obs), len(actions), len(rewards), len(dones))
        if len(set(lengths)) != 1:
            raise BufferError(
                "Inconsistent trajectory lengths in replay buffer file: "
                f"obs={lengths[0]}, actions={lengths[1]}, rewards={lengths[2]}, dones={lengths[3]}"
            )
        for name, array in (("obs", obs), ("actions", actions), ("rewards", rewards), ("dones", dones)):
            if array.dtype.kind not in "biuf":
                raise BufferError(f"Invalid {name} dtype in replay buffer file: {array.dtype} (expected numeric)")

    # ------------------------------------------------------------------ parquet

    def to_parquet(self, path: str | Path, *, compression: str = "zstd") -> None:
        """Write the stored rows (oldest first) as Parquet.

        Columns (float32): ``obs_0 .. obs_{D-1}`` (observations flattened, D = prod(obs_shape)),
        ``action_0 .. action_{A-1}``, ``reward``, ``done``. Schema metadata ``worldflux_replay_meta`` = JSON
        ``{"format_version": 1, "obs_shape": [...], "action_dim": A, "capacity": C}``.

        Raises:
            BufferError: pyarrow is not installed.
        """
        pa, pq = _require_pyarrow()
        rows = self._stored_rows()
        size = int(rows.shape[0])
        obs_t = np.ascontiguousarray(self._obs[rows].reshape(size, -1).T, dtype=np.float32)  # [D, N]
        actions_t = np.ascontiguousarray(self._actions[rows].T)  # [A, N]
        columns = [pa.array(obs_t[i]) for i in range(obs_t.shape[0])]
        columns += [pa.array(actions_t[i]) for i in range(self.action_dim)]
        columns += [pa.array(self._rewards[rows]), pa.array(self._dones[rows])]
        names = [f"obs_{i}" for i in range(obs_t.shape[0])]
        names += [f"action_{i}" for i in range(self.action_dim)] + ["reward", "done"]
        meta = {
            "format_version": _PARQUET_FORMAT_VERSION,
            "obs_shape": list(self.obs_shape),
            "action_dim": self.action_dim,
            "capacity": self.capacity,
            "checksum": arrays_checksum(
                self._obs[rows].astype(np.float32).reshape(size, *self.obs_shape),
                self._actions[rows],
                self._rewards[rows],
                self._dones[rows],
            ),
        }
        schema = pa.schema(
            [pa.field(name, pa.float32()) for name in names], metadata={_PARQUET_META_KEY: json.dumps(meta)}
        )
        table = pa.Table.from_arrays(columns, schema=schema)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression=compression)

    @classmethod
    def from_parquet(cls: type[_BufferT], path: str | Path, *, on_nonfinite: str = "warn") -> _BufferT:
        """Load a buffer written by ``to_parquet``; episodes are rebuilt from ``done > 0.5``.

        Raises:
            BufferError: pyarrow missing, unreadable file, missing/invalid ``worldflux_replay_meta`` metadata
                (format_version, obs_shape, action_dim, capacity), missing or undeclared columns, non-numeric
                columns, more rows than capacity, sizes over the load limit, a checksum mismatch, or (``"raise"``)
                non-finite obs/rewards (see ``worldflux.training.replay_io``).
        """
        return load_parquet(cls, path, on_nonfinite=on_nonfinite)

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_trajectories(
        cls: type[_BufferT],
        trajectories: Sequence[Mapping[str, Any]],
        capacity: int | None = None,
    ) -> _BufferT:
        """A buffer holding each trajectory as one episode.

        Args:
            trajectories: dicts with ``"obs" [L, *obs_shape]``, ``"actions" [L, A]``, ``"rewards" [L]`` and
                optional ``"dones" [L]`` (numpy arrays or torch tensors); obs_shape and A come from the first.
            capacity: buffer capacity; default the total number of transitions (at least 1).

        Raises:
            BufferError: empty list, or a trajectory without one of the required keys.
        """
        if not trajectories:
            raise BufferError("Cannot create buffer from empty trajectories list")
        for index, trajectory in enumerate(trajectories):
            missing = [key for key in ("obs", "actions", "rewards") if key not in trajectory]
            if missing:
                raise BufferError(f"Trajectory {index} is missing required keys {missing}")
        first_obs = _to_numpy(trajectories[0]["obs"], "obs")
        first_actions = _to_numpy(trajectories[0]["actions"], "actions")
        if first_obs.ndim < 2 or first_actions.ndim != 2:
            raise ShapeMismatchError(
                "Trajectory 0 must hold obs [L, *obs_shape] and actions [L, action_dim]",
                expected="obs rank >= 2, actions rank 2",
                got=(tuple(first_obs.shape), tuple(first_actions.shape)),
            )
        if capacity is None:
            capacity = max(sum(len(_to_numpy(t["obs"], "obs")) for t in trajectories), 1)
        buffer = cls(capacity=capacity, obs_shape=tuple(first_obs.shape[1:]), action_dim=int(first_actions.shape[1]))
        for trajectory in trajectories:
            buffer.add_episode(
                obs=trajectory["obs"],
                actions=trajectory["actions"],
                rewards=trajectory["rewards"],
                dones=trajectory.get("dones"),
            )
        return buffer


# ---------------------------------------------------------------------------------------------- thread safety


class _ReadWriteLock:
    """Many concurrent readers or one writer; a waiting writer blocks new readers (no writer starvation).

    Not reentrant: a thread holding the lock must not acquire it again.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._condition:
            while self._writer or self._writers_waiting:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if self._readers == 0:
                    self._condition.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._condition.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._condition:
                self._writer = False
                self._condition.notify_all()


class ThreadSafeReplayBuffer(ReplayBuffer):
    """``ReplayBuffer`` whose methods are guarded by a read/write lock.

    ``add_episode`` takes the write lock; ``sample``, ``save``, ``to_parquet``, ``len`` and the properties take
    the read lock, so several samplers (e.g. a ``PrefetchBatchProvider`` thread and an evaluator) run
    concurrently while an environment thread adds episodes. Sampled batches are copies, never views of the
    ring storage, so they stay valid after the lock is released.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        obs_dtype: type = np.float32,
        *,
        absorbing_terminals: bool = False,
    ) -> None:
        self._lock = _ReadWriteLock()
        super().__init__(capacity, obs_shape, action_dim, obs_dtype, absorbing_terminals=absorbing_terminals)

    def add_episode(
        self,
        obs: np.ndarray | torch.Tensor,
        actions: np.ndarray | torch.Tensor,
        rewards: np.ndarray | torch.Tensor,
        dones: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """``ReplayBuffer.add_episode`` under the write lock."""
        with self._lock.write():
            super().add_episode(obs, actions, rewards, dones)

    def sample(self, batch_size: int, seq_len: int, device: str | torch.device = "cpu") -> Batch:
        """``ReplayBuffer.sample`` under the read lock."""
        with self._lock.read():
            return super().sample(batch_size, seq_len, device)

    def save(self, path: str | Path) -> None:
        """``ReplayBuffer.save`` under the read lock."""
        with self._lock.read():
            super().save(path)

    def to_parquet(self, path: str | Path, *, compression: str = "zstd") -> None:
        """``ReplayBuffer.to_parquet`` under the read lock."""
        with self._lock.read():
            super().to_parquet(path, compression=compression)

    def ready_for_sequence(self, *, batch_size: int, seq_len: int) -> bool:
        """``ReplayBuffer.ready_for_sequence`` under the read lock."""
        with self._lock.read():
            return super().ready_for_sequence(batch_size=batch_size, seq_len=seq_len)

    def __len__(self) -> int:
        with self._lock.read():
            return self._size

    @property
    def num_transitions(self) -> int:
        """Number of transitions stored."""
        with self._lock.read():
            return self._size

    @property
    def num_episodes(self) -> int:
        """Number of episodes indexed."""
        with self._lock.read():
            return len(self._episodes)

    def _set_contents(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        with self._lock.write():
            super()._set_contents(obs, actions, rewards, dones)


# ---------------------------------------------------------------------------------------------- other providers


class TrajectoryDataset(Dataset):
    """torch ``Dataset`` of single, unbatched windows sampled from a ``ReplayBuffer``.

    Item: ``Batch(obs [T, *obs_shape], actions [T, A], rewards [T], terminations [T])`` with layouts
    ``{"obs": "T...", "actions": "T...", "rewards": "T", "terminations": "T"}``. ``len`` is
    ``samples_per_epoch``.
    """

    def __init__(self, buffer: ReplayBuffer, seq_len: int, samples_per_epoch: int = 1000) -> None:
        if seq_len <= 0:
            raise ConfigurationError(f"seq_len must be positive, got {seq_len}")
        if samples_per_epoch <= 0:
            raise ConfigurationError(f"samples_per_epoch must be positive, got {samples_per_epoch}")
        self.buffer = buffer
        self.seq_len = seq_len
        self.samples_per_epoch = samples_per_epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, idx: int) -> Batch:
        batch = self.buffer.sample(batch_size=1, seq_len=self.seq_len, device="cpu")
        if not isinstance(batch.obs, torch.Tensor):
            raise ShapeMismatchError("TrajectoryDataset expects tensor observations")

        def squeeze(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value.squeeze(0)

        return Batch(
            obs=batch.obs.squeeze(0),
            actions=squeeze(batch.actions),
            rewards=squeeze(batch.rewards),
            terminations=squeeze(batch.terminations),
            layouts={"obs": "T...", "actions": "T...", "rewards": "T", "terminations": "T"},
            strict_layout=batch.strict_layout,
        )


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _global_integers(high: int, size: int | tuple[int, ...]) -> np.ndarray:
    return np.random.randint(0, high, size=size).astype(np.int64, copy=False)


class TokenSequenceProvider:
    """Sequence provider over a token matrix ``tokens [N, L]`` (int64) for token world models.

    ``sample(batch_size, seq_len=None)`` picks random rows and random windows of ``seq_len`` (default L)
    tokens: ``Batch(obs [B, T] int64, target [B, T] int64)`` with ``target = roll(obs, -1, axis=1)`` and layout
    ``{"obs": "BT", "target": "BT"}``.
    """

    def __init__(self, tokens: np.ndarray | torch.Tensor) -> None:
        array = _to_numpy(tokens, "tokens")
        if array.ndim != 2:
            raise ConfigurationError(f"tokens must be rank-2 [num_sequences, seq_len], got shape={array.shape}")
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise ConfigurationError(f"tokens must be non-empty, got shape={array.shape}")
        self.tokens = array.astype(np.int64, copy=False)
        self.num_sequences, self.seq_len = (int(d) for d in self.tokens.shape)
        self.data_provenance: dict[str, Any] = {}

    def batch_layout(self) -> dict[str, str]:
        """Axis layout of sampled batches."""
        return {"obs": "BT", "target": "BT"}

    def sample(self, batch_size: int, seq_len: int | None = None, device: str | torch.device = "cpu") -> Batch:
        """``batch_size`` token windows of ``seq_len`` tokens (``[B, T]`` int64 obs and next-token target).

        Raises:
            ConfigurationError: ``batch_size <= 0`` or ``seq_len`` outside ``[1, L]``.
        """
        batch_size = _positive_int(batch_size, "batch_size")
        length = self.seq_len if seq_len is None else int(seq_len)
        if length <= 0 or length > self.seq_len:
            raise ConfigurationError(f"seq_len must be in [1, {self.seq_len}], got {length}")
        rows = _global_integers(self.num_sequences, batch_size)
        starts = _global_integers(self.seq_len - length + 1, batch_size)
        obs = self.tokens[rows[:, None], starts[:, None] + np.arange(length)]
        target = np.roll(obs, shift=-1, axis=1)
        device_ = _resolve_torch_device(device)
        return Batch(
            obs=_tensor(obs, device_),
            target=_tensor(target, device_),
            layouts=self.batch_layout(),
            strict_layout=True,
        )


class TransitionArrayProvider:
    """Transition provider over pre-collected arrays (rows sampled uniformly with replacement).

    Args:
        obs: ``[N, *obs_shape]``; actions: ``[N, *action_shape]``; optional rewards ``[N]``, next_obs
            ``[N, *obs_shape]``, terminations ``[N]`` (all stored as float32).

    ``sample(batch_size)`` returns ``Batch(obs [B, ...], actions [B, ...], ...)`` with layouts ``"B..."``/``"B"``;
    ``seq_len`` is ignored.
    """

    def __init__(
        self,
        *,
        obs: np.ndarray | torch.Tensor,
        actions: np.ndarray | torch.Tensor,
        rewards: np.ndarray | torch.Tensor | None = None,
        next_obs: np.ndarray | torch.Tensor | None = None,
        terminations: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        obs_np = _to_numpy(obs, "obs")
        actions_np = _to_numpy(actions, "actions")
        if obs_np.ndim < 2:
            raise ConfigurationError(f"obs must be rank-2+, got shape={obs_np.shape}")
        if actions_np.ndim < 2:
            raise ConfigurationError(f"actions must be rank-2+, got shape={actions_np.shape}")
        rows = int(obs_np.shape[0])
        if rows == 0:
            raise ConfigurationError("obs must hold at least one row")
        arrays: dict[str, np.ndarray | None] = {"obs": obs_np, "actions": actions_np}
        for name, value in (("rewards", rewards), ("next_obs", next_obs), ("terminations", terminations)):
            arrays[name] = None if value is None else _to_numpy(value, name)
        for name, array in arrays.items():
            if array is not None and (array.ndim == 0 or array.shape[0] != rows):
                raise ShapeMismatchError(
                    f"obs/{name} length mismatch", expected=(rows,), got=tuple(array.shape[:1]) or ()
                )
        if arrays["next_obs"] is not None and arrays["next_obs"].shape != obs_np.shape:
            raise ShapeMismatchError(
                "next_obs must have the shape of obs", expected=obs_np.shape, got=arrays["next_obs"].shape
            )
        for name in ("rewards", "terminations"):
            if arrays[name] is not None and arrays[name].ndim != 1:
                raise ShapeMismatchError(f"{name} must be 1-D [N]", expected=(rows,), got=arrays[name].shape)
        self.obs = obs_np.astype(np.float32, copy=False)
        self.actions = actions_np.astype(np.float32, copy=False)
        self.rewards = None if arrays["rewards"] is None else arrays["rewards"].astype(np.float32, copy=False)
        self.next_obs = None if arrays["next_obs"] is None else arrays["next_obs"].astype(np.float32, copy=False)
        self.terminations = (
            None if arrays["terminations"] is None else arrays["terminations"].astype(np.float32, copy=False)
        )
        self.num_rows = rows
        self.data_provenance: dict[str, Any] = {}

    def batch_layout(self) -> dict[str, str]:
        """Axis layout of sampled batches (no time axis)."""
        layout = {"obs": "B...", "actions": "B..."}
        if self.rewards is not None:
            layout["rewards"] = "B"
        if self.next_obs is not None:
            layout["next_obs"] = "B..."
        if self.terminations is not None:
            layout["terminations"] = "B"
        return layout

    def sample(self, batch_size: int, seq_len: int | None = None, device: str | torch.device = "cpu") -> Batch:
        """``batch_size`` random rows as a transition batch (``seq_len`` is ignored)."""
        batch_size = _positive_int(batch_size, "batch_size")
        idx = _global_integers(self.num_rows, batch_size)
        target = _resolve_torch_device(device)

        def take(array: np.ndarray | None) -> torch.Tensor | None:
            return None if array is None else _tensor(array[idx], target)

        return Batch(
            obs=take(self.obs),
            actions=take(self.actions),
            rewards=take(self.rewards),
            next_obs=take(self.next_obs),
            terminations=take(self.terminations),
            layouts=self.batch_layout(),
            strict_layout=True,
        )


# ---------------------------------------------------------------------------------------------- prefetching


class PrefetchBatchProvider:
    """Sample batches ahead of time on a background thread (overlaps host-side sampling with the device step).

    A daemon thread calls ``base_provider.sample(batch_size, seq_len, device)`` (or ``sample(BatchRequest)`` for
    a single-argument provider) and keeps up to ``prefetch`` batches in a bounded queue. The thread starts on
    the first ``get``/``sample``. An exception raised by the provider is re-raised in the consuming thread by
    the next ``get``/``sample`` (the worker stops). ``close()`` (alias ``stop()``) stops and joins the thread;
    the object is also a context manager.

    Args:
        base_provider: any ``BatchProvider`` (e.g. a ``ReplayBuffer`` or ``ThreadSafeReplayBuffer``; use the
            thread-safe variant if another thread adds episodes meanwhile).
        batch_size: batch size of the prefetched batches.
        seq_len: sequence length of the prefetched batches.
        device: device passed to ``base_provider.sample``.
        prefetch: queue bound (>= 1).

    ``sample(batch_size, seq_len, device)`` makes the prefetcher a ``BatchProvider`` itself: a request matching
    the configured ``(batch_size, seq_len)`` (None = configured) is served from the queue, any other request is
    forwarded synchronously to ``base_provider``. ``get(timeout=10.0)`` raises ``BufferError`` on timeout.

    Note: the reference orders the parameters ``(base_provider, device="cuda", prefetch=2, batch_size=16,
    seq_len=50)``; pass everything after ``base_provider`` by keyword to be portable between both.
    """

    def __init__(
        self,
        base_provider: Any,
        batch_size: int = 16,
        seq_len: int | None = 50,
        device: str | torch.device = "cpu",
        prefetch: int = 2,
    ) -> None:
        if not callable(getattr(base_provider, "sample", None)):
            raise ConfigurationError(
                f"base_provider must have a sample(...) method, got {type(base_provider).__name__}"
            )
        self.base_provider = base_provider
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.seq_len = None if seq_len is None else _positive_int(seq_len, "seq_len")
        self.device = device
        self.prefetch = _positive_int(prefetch, "prefetch")
        sample_fn = sample_call(base_provider, self.batch_size, self.seq_len, device)
        self._prefetcher: Prefetcher[Batch] = Prefetcher(
            lambda _: sample_fn(), depth=self.prefetch, eager=False, name="worldflux-prefetch"
        )

    # ------------------------------------------------------------------ passthroughs

    @property
    def data_provenance(self) -> dict[str, Any]:
        """The base provider's ``data_provenance`` (empty dict if it has none)."""
        value = getattr(self.base_provider, "data_provenance", None)
        return value if isinstance(value, dict) else {}

    def batch_layout(self) -> dict[str, str]:
        """The base provider's ``batch_layout()``; ``{}`` if it declares none."""
        layout = getattr(self.base_provider, "batch_layout", None)
        return dict(layout()) if callable(layout) else {}

    @property
    def _thread(self) -> threading.Thread | None:
        return self._prefetcher._thread

    def get(self, timeout: float | None = 10.0) -> Batch:
        """The next prefetched batch.

        Raises:
            BufferError: no batch arrived within ``timeout`` seconds (None waits forever), or the prefetcher is
                closed.
            Exception: whatever ``base_provider.sample`` raised in the worker thread.
        """
        try:
            return self._prefetcher.get(timeout=timeout)
        except PrefetchTimeout as exc:
            raise BufferError(f"PrefetchBatchProvider: no batch within {timeout} seconds") from exc
        except RuntimeError as exc:
            if self._prefetcher.closed:
                raise BufferError("PrefetchBatchProvider is closed") from exc
            raise

    def sample(
        self,
        batch_size: int | None = None,
        seq_len: int | None = None,
        device: str | torch.device | None = None,
    ) -> Batch:
        """``BatchProvider.sample``: served from the queue when ``(batch_size, seq_len)`` match the configured ones
        (None = configured; a different ``device`` moves the prefetched batch), else forwarded synchronously."""
        matches = (batch_size is None or batch_size == self.batch_size) and (seq_len is None or seq_len == self.seq_len)
        if matches:
            batch = self.get(timeout=None)
            if device is not None and str(device) != str(self.device):
                target = _resolve_torch_device(device)
                batch = batch.to(target if target is not None else "cpu")
            return batch
        return self.base_provider.sample(
            batch_size=self.batch_size if batch_size is None else batch_size,
            seq_len=self.seq_len if seq_len is None else seq_len,
            device=self.device if device is None else device,
        )

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.get(timeout=None)

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the worker thread and join it (idempotent)."""
        self._prefetcher.close(timeout)

    def stop(self) -> None:
        """Alias of ``close()`` (reference name)."""
        self.close()

    def __enter__(self) -> PrefetchBatchProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        prefetcher = getattr(self, "_prefetcher", None)
        if prefetcher is not None:
            prefetcher.signal_stop()


# ---------------------------------------------------------------------------------------------- random data


def create_random_buffer(
    capacity: int = 10000,
    obs_shape: tuple[int, ...] = (3, 64, 64),
    action_dim: int = 6,
    num_episodes: int = 100,
    episode_length: int = 100,
    seed: int | None = None,
) -> ReplayBuffer:
    """A ``ReplayBuffer`` filled with random episodes, for tests and smoke runs.

    Episode lengths are uniform integers in ``[episode_length // 2, episode_length]`` (at least 1); obs, actions
    and rewards are standard-normal float32; the last step of each episode is done. Randomness comes from a
    local ``np.random.default_rng(seed)`` (the global numpy RNG is never reseeded; with ``seed=None`` the local
    generator is seeded from one draw of the global RNG, so ``set_seed`` still makes the result reproducible).
    """
    if episode_length <= 0:
        raise ConfigurationError(f"episode_length must be positive, got {episode_length}")
    if num_episodes < 0:
        raise ConfigurationError(f"num_episodes must be non-negative, got {num_episodes}")
    if seed is None:
        seed = int(np.random.randint(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(capacity=capacity, obs_shape=obs_shape, action_dim=action_dim)
    low = max(episode_length // 2, 1)
    for _ in range(num_episodes):
        length = int(rng.integers(low, episode_length + 1))
        obs = rng.standard_normal((length, *buffer.obs_shape), dtype=np.float32)
        actions = rng.standard_normal((length, action_dim), dtype=np.float32)
        rewards = rng.standard_normal(length, dtype=np.float32)
        dones = np.zeros(length, dtype=np.float32)
        dones[-1] = 1.0
        buffer.add_episode(obs, actions, rewards, dones)
    return buffer
