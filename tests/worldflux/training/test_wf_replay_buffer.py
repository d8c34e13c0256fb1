"""`ReplayBuffer` and the batch providers of `worldflux.training.data` (reference §6.5/§6.6; SEED 000/002)."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worldflux.core import Batch, BatchRequest
from worldflux.core.exceptions import BufferError, ConfigurationError, ShapeMismatchError
from worldflux.training import (
    PrefetchBatchProvider,
    ReplayBuffer,
    ThreadSafeReplayBuffer,
    TokenSequenceProvider,
    TrajectoryDataset,
    TransitionArrayProvider,
)
from worldflux.training.data import create_random_buffer

LAYOUT = {"obs": "BT...", "actions": "BT...", "rewards": "BT", "terminations": "BT"}


def tagged_episode(episode_id: int, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """obs [L, 2] = (episode id, step); actions [L, 1] = step; rewards [L] = episode id."""
    steps = np.arange(length, dtype=np.float32)
    obs = np.stack([np.full(length, episode_id, np.float32), steps], axis=1)
    return obs, steps[:, None].copy(), np.full(length, episode_id, np.float32)


def fill(buffer: ReplayBuffer, lengths: list[int], first_id: int = 0) -> None:
    for offset, length in enumerate(lengths):
        buffer.add_episode(*tagged_episode(first_id + offset, length))


def assert_windows_inside_episodes(batch: Batch) -> None:
    obs = batch.obs.numpy()
    ids, steps = obs[..., 0], obs[..., 1]
    assert (ids == ids[:, :1]).all(), "a window mixes rows of several episodes"
    assert (np.diff(steps, axis=1) == 1).all(), "a window is not a run of consecutive steps"
    assert not batch.terminations.numpy()[:, :-1].any(), "done inside a window (only the last step may be done)"


# ---------------------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(capacity=0, obs_shape=(4,), action_dim=2), "capacity"),
        (dict(capacity=-5, obs_shape=(4,), action_dim=2), "capacity"),
        (dict(capacity=10, obs_shape=(), action_dim=2), "obs_shape"),
        (dict(capacity=10, obs_shape=(3, 0), action_dim=2), "obs_shape"),
        (dict(capacity=10, obs_shape=(4,), action_dim=0), "action_dim"),
    ],
)
def test_constructor_rejects_invalid_arguments(kwargs, field):
    with pytest.raises(ConfigurationError, match=field):
        ReplayBuffer(**kwargs)


def test_storage_is_preallocated_contiguous_ring_arrays():
    buffer = ReplayBuffer(capacity=7, obs_shape=(3, 2), action_dim=4, obs_dtype=np.uint8)
    assert buffer._obs.shape == (7, 3, 2) and buffer._obs.dtype == np.uint8 and buffer._obs.flags.c_contiguous
    assert buffer._actions.shape == (7, 4) and buffer._actions.dtype == np.float32
    assert buffer._rewards.shape == (7,) and buffer._dones.shape == (7,)
    assert (len(buffer), buffer.num_episodes, buffer.num_transitions, buffer.data_provenance) == (0, 0, 0, {})


# ---------------------------------------------------------------------------------------- add / sample


def test_add_and_sample_shapes_dtypes_layouts():
    buffer = ReplayBuffer(capacity=100, obs_shape=(3, 4, 4), action_dim=2, obs_dtype=np.uint8)
    buffer.add_episode(np.ones((30, 3, 4, 4)), np.zeros((30, 2)), np.zeros(30))
    batch = buffer.sample(batch_size=5, seq_len=7)
    assert isinstance(batch, Batch)
    assert batch.obs.shape == (5, 7, 3, 4, 4) and batch.obs.dtype == torch.uint8
    assert batch.actions.shape == (5, 7, 2) and batch.actions.dtype == torch.float32
    assert batch.rewards.shape == (5, 7) and batch.rewards.dtype == torch.float32
    assert batch.terminations.shape == (5, 7) and batch.terminations.dtype == torch.float32
    assert batch.layouts == LAYOUT == buffer.batch_layout() and batch.strict_layout is True
    assert batch.inputs["obs"] is batch.obs and batch.targets["terminations"] is batch.terminations
    batch.validate()


def test_sampled_batches_are_copies_not_views_of_the_ring():
    buffer = ReplayBuffer(capacity=20, obs_shape=(2,), action_dim=1)
    fill(buffer, [10])
    batch = buffer.sample(4, 10)
    buffer._obs[:] = -1
    assert (batch.obs[..., 1] == torch.arange(10.0)).all()


def test_add_episode_accepts_torch_tensors_and_defaults_dones_to_last_step():
    buffer = ReplayBuffer(capacity=50, obs_shape=(2,), action_dim=1)
    obs, actions, rewards = tagged_episode(0, 6)
    buffer.add_episode(torch.from_numpy(obs), torch.from_numpy(actions), torch.from_numpy(rewards))
    assert buffer._dones[:6].tolist() == [0, 0, 0, 0, 0, 1]
    buffer.add_episode(obs, actions, rewards, dones=torch.tensor([0, 0, 0, 0, 0, 0.0]))
    assert buffer._dones[6:12].tolist() == [0] * 6
    assert (len(buffer), buffer.num_episodes) == (12, 2)


def test_empty_episode_is_ignored():
    buffer = ReplayBuffer(capacity=10, obs_shape=(2,), action_dim=1)
    buffer.add_episode(np.zeros((0, 2)), np.zeros((0, 1)), np.zeros(0))
    assert (len(buffer), buffer.num_episodes) == (0, 0)


@pytest.mark.parametrize(
    "obs, actions, rewards, dones, message",
    [
        (np.zeros((5, 3)), np.zeros((5, 1)), np.zeros(5), None, "Observation shape mismatch"),
        (np.zeros((5, 2)), np.zeros((5, 2)), np.zeros(5), None, "Action shape mismatch"),
        (np.zeros((5, 2)), np.zeros(5), np.zeros(5), None, "Action shape mismatch"),
        (np.zeros((5, 2)), np.zeros((4, 1)), np.zeros(5), None, "Action length mismatch"),
        (np.zeros((5, 2)), np.zeros((5, 1)), np.zeros(4), None, "Rewards"),
        (np.zeros((5, 2)), np.zeros((5, 1)), np.zeros((5, 1)), None, "Rewards"),
        (np.zeros((5, 2)), np.zeros((5, 1)), np.zeros(5), np.zeros(4), "Dones"),
        (np.zeros((5, 2)), np.zeros((5, 1)), np.zeros(5), np.zeros((5, 1)), "Dones"),
    ],
)
def test_add_episode_shape_errors(obs, actions, rewards, dones, message):
    buffer = ReplayBuffer(capacity=10, obs_shape=(2,), action_dim=1)
    with pytest.raises(ShapeMismatchError, match=message):
        buffer.add_episode(obs, actions, rewards, dones)
    assert len(buffer) == 0


def test_insufficient_data_and_ready_for_sequence():
    buffer = ReplayBuffer(capacity=100, obs_shape=(2,), action_dim=1)
    fill(buffer, [5])
    with pytest.raises(BufferError, match="Buffer has insufficient data"):
        buffer.sample(2, 6)
    assert buffer.ready_for_sequence(batch_size=1, seq_len=5)
    assert not buffer.ready_for_sequence(batch_size=2, seq_len=5)
    with pytest.raises(ConfigurationError, match="batch_size"):
        buffer.sample(0, 2)
    with pytest.raises(ConfigurationError, match="seq_len"):
        buffer.sample(2, 0)


def test_fallback_when_no_episode_is_long_enough_warns_and_samples_stored_rows():
    buffer = ReplayBuffer(capacity=100, obs_shape=(2,), action_dim=1)
    fill(buffer, [3, 3, 3])
    with pytest.warns(UserWarning, match="may cross episode boundaries"):
        batch = buffer.sample(16, 5)
    assert batch.obs.shape == (16, 5, 2)
    # A long enough episode makes the warning go away.
    fill(buffer, [5], first_id=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = buffer.sample(32, 5)
    assert (batch.obs[..., 0] == 9).all()


def test_windows_may_end_on_the_done_step_and_cover_every_start():
    buffer = ReplayBuffer(capacity=100, obs_shape=(2,), action_dim=1)
    fill(buffer, [6])
    buffer.rng = np.random.default_rng(0)
    starts = set(buffer.sample(400, 4).obs[:, 0, 1].tolist())
    assert starts == {0.0, 1.0, 2.0}  # 6 - 4 + 1 starts, the last one ends on the done step


def test_starts_are_uniform_over_all_valid_positions():
    buffer = ReplayBuffer(capacity=100, obs_shape=(2,), action_dim=1)
    fill(buffer, [12, 3])  # episode 0 has 10 windows of 3, episode 1 has 1
    buffer.rng = np.random.default_rng(1)
    ids = buffer.sample(11_000, 3).obs[:, 0, 0].numpy()
    assert abs((ids == 1).mean() - 1 / 11) < 0.01


def test_global_rng_makes_sampling_reproducible():
    buffer = create_random_buffer(capacity=500, obs_shape=(3,), action_dim=2, num_episodes=10, seed=3)
    np.random.seed(7)
    first = buffer.sample(4, 8).obs
    np.random.seed(7)
    assert torch.equal(first, buffer.sample(4, 8).obs)


def test_sampling_a_large_buffer_is_vectorised_and_fast():
    buffer = ReplayBuffer(capacity=100_000, obs_shape=(4,), action_dim=2)
    obs = np.random.randn(1000, 4).astype(np.float32)
    for _ in range(100):
        buffer.add_episode(obs, np.zeros((1000, 2)), np.zeros(1000))
    buffer.sample(256, 64)
    start = time.perf_counter()
    batch = buffer.sample(256, 64)
    elapsed = time.perf_counter() - start
    assert batch.obs.shape == (256, 64, 4)
    assert elapsed < 0.5, f"sampling 256 x 64 took {elapsed:.3f}s"  # loose bound; a per-sample loop is ~100x slower


# ---------------------------------------------------------------------------------------- ring / eviction


def test_wrap_around_evicts_overwritten_episodes_oldest_first():
    buffer = ReplayBuffer(capacity=10, obs_shape=(2,), action_dim=1)
    fill(buffer, [4, 4])
    assert (len(buffer), buffer.num_episodes) == (8, 2)
    fill(buffer, [4], first_id=2)  # rows 8, 9, 0, 1: episode 0 is partly overwritten
    assert (len(buffer), buffer.num_episodes) == (10, 2)
    assert list(buffer._episodes) == [(4, 4), (8, 4)]
    assert buffer._obs[:, 0].tolist() == [2, 2, 0, 0, 1, 1, 1, 1, 2, 2]
    batch = buffer.sample(64, 4)
    assert set(batch.obs[:, 0, 0].tolist()) == {1.0, 2.0}
    assert_windows_inside_episodes(batch)


def test_episode_straddling_the_ring_end_stays_sampleable_in_order():
    buffer = ReplayBuffer(capacity=10, obs_shape=(2,), action_dim=1)
    fill(buffer, [6, 6])  # second episode occupies rows 6..9, 0..1
    assert buffer.num_episodes == 1
    batch = buffer.sample(8, 6)
    assert (batch.obs[..., 0] == 1).all()
    assert (batch.obs[..., 1] == torch.arange(6.0)).all()


def test_episode_longer_than_capacity_keeps_newest_rows_and_resets_index():
    buffer = ReplayBuffer(capacity=5, obs_shape=(2,), action_dim=1)
    fill(buffer, [2, 2])
    fill(buffer, [8], first_id=7)
    assert (len(buffer), buffer.num_episodes, buffer._position) == (5, 1, 0)
    assert buffer._obs[:, 1].tolist() == [3, 4, 5, 6, 7]
    batch = buffer.sample(3, 5)
    assert (batch.obs[..., 1] == torch.arange(3.0, 8.0)).all()
    assert (batch.terminations[:, -1] == 1).all()
    fill(buffer, [2], first_id=8)  # next write goes to rows 0..1 and evicts the long episode
    assert buffer.num_episodes == 1 and buffer._obs[:2, 0].tolist() == [8, 8]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacity=st.integers(1, 40),
    lengths=st.lists(st.integers(1, 25), min_size=1, max_size=12),
    seq_len=st.integers(1, 12),
)
def test_property_windows_never_cross_episode_boundaries(capacity, lengths, seq_len):
    buffer = ReplayBuffer(capacity=capacity, obs_shape=(2,), action_dim=1)
    for episode_id, length in enumerate(lengths):
        buffer.add_episode(*tagged_episode(episode_id, length))
        # Every indexed episode is intact: its rows hold that episode's steps 0..L-1 (or its tail if truncated).
        for start, ep_len in buffer._episodes:
            rows = np.arange(start, start + ep_len) % capacity
            assert len(set(buffer._obs[rows, 0].tolist())) == 1
            assert (np.diff(buffer._obs[rows, 1]) == 1).all()
    assert len(buffer) == min(sum(lengths), capacity)
    if len(buffer) < seq_len:
        with pytest.raises(BufferError):
            buffer.sample(4, seq_len)
        return
    if not any(ep_len >= seq_len for _, ep_len in buffer._episodes):
        with pytest.warns(UserWarning):
            buffer.sample(4, seq_len)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = buffer.sample(32, seq_len)
    assert batch.obs.shape == (32, seq_len, 2)
    assert_windows_inside_episodes(batch)


# ---------------------------------------------------------------------------------------- absorbing terminals


def test_absorbing_terminals_pad_short_terminated_episodes_with_absorbing_rows():
    buffer = ReplayBuffer(capacity=100, obs_shape=(2,), action_dim=1, absorbing_terminals=True)
    fill(buffer, [3])  # terminated (default dones: last row done), shorter than the window
    buffer.rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = buffer.sample(200, 6)
    obs, actions = batch.obs.numpy(), batch.actions.numpy()[..., 0]
    rewards, dones = batch.rewards.numpy(), batch.terminations.numpy()
    first = obs[:, 0, 1]
    assert set(first.tolist()) == {0.0, 1.0}  # every row but the last starts a window
    real = np.arange(6)[None, :] + first[:, None] <= 2  # [B, T] rows inside the episode
    assert (obs[..., 1] == np.minimum(np.arange(6)[None, :] + first[:, None], 2)).all()
    assert (obs[..., 0] == 0).all()  # never another episode's rows
    assert (actions[~real] == 0).all() and (rewards[~real] == 0).all() and (dones[~real] == 1).all()
    assert (actions[real] == obs[..., 1][real]).all() and not dones[real & (obs[..., 1] < 2)].any()


def test_absorbing_terminals_draw_the_terminal_step_as_often_as_any_step():
    lengths, seq_len = [40, 25], 8
    counts = {}
    for absorbing in (False, True):
        buffer = ReplayBuffer(capacity=200, obs_shape=(2,), action_dim=1, absorbing_terminals=absorbing)
        fill(buffer, lengths)
        buffer.rng = np.random.default_rng(3)
        batch = buffer.sample(20_000, seq_len)
        counts[absorbing] = (batch.terminations.numpy() > 0).any(axis=1).mean()
    # Inside-episode windows: 2 terminal windows out of 33 + 18 starts; padded: 2 * 7 of 39 + 24 starts.
    assert abs(counts[False] - 2 / 51) < 0.006
    assert abs(counts[True] - 14 / 63) < 0.015


def test_absorbing_terminals_never_pad_truncated_episodes():
    buffer = ReplayBuffer(capacity=100, obs_shape=(2,), action_dim=1, absorbing_terminals=True)
    obs, actions, rewards = tagged_episode(0, 3)
    buffer.add_episode(obs, actions, rewards, np.zeros(3))  # truncated: no done row
    buffer.add_episode(*tagged_episode(1, 8))
    buffer.add_episode(*tagged_episode(2, 2))  # terminated, so padded
    batch = buffer.sample(256, 6)
    ids = batch.obs[..., 0].numpy()
    assert (ids == ids[:, :1]).all() and set(ids[:, 0].tolist()) == {1.0, 2.0}  # never the truncated episode
    assert ThreadSafeReplayBuffer(10, (2,), 1, absorbing_terminals=True).absorbing_terminals


# ---------------------------------------------------------------------------------------- npz


def test_save_load_round_trip(tmp_path):
    buffer = ReplayBuffer(capacity=50, obs_shape=(2,), action_dim=1)
    fill(buffer, [10, 7, 5])
    path = tmp_path / "sub" / "buffer.npz"
    buffer.save(path)
    with np.load(path) as data:
        assert sorted(data.files) == sorted(
            ["obs", "actions", "rewards", "dones", "obs_shape", "action_dim", "capacity", "checksum"]
        )
        assert int(data["capacity"]) == 50 and data["obs_shape"].tolist() == [2] and int(data["action_dim"]) == 1
    loaded = ReplayBuffer.load(path)
    assert (loaded.capacity, loaded.obs_shape, loaded.action_dim) == (50, (2,), 1)
    assert (len(loaded), loaded.num_episodes, loaded._position) == (22, 3, 22)
    np.testing.assert_array_equal(loaded._obs[:22], buffer._obs[:22])
    assert_windows_inside_episodes(loaded.sample(32, 5))


def test_save_of_a_wrapped_buffer_writes_rows_oldest_first(tmp_path):
    buffer = ReplayBuffer(capacity=10, obs_shape=(2,), action_dim=1)
    fill(buffer, [4, 4, 4])
    buffer.save(tmp_path / "b.npz")
    loaded = ReplayBuffer.load(tmp_path / "b.npz")
    assert loaded._obs[:, 0].tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert loaded.num_episodes == 3  # tail of episode 0, episodes 1 and 2
    assert_windows_inside_episodes(loaded.sample(32, 2))


def test_load_rebuilds_trailing_unterminated_episode(tmp_path):
    np.savez(
        tmp_path / "b.npz",
        obs=np.zeros((7, 2), np.float32),
        actions=np.zeros((7, 1), np.float32),
        rewards=np.zeros(7, np.float32),
        dones=np.array([0, 0, 1, 0, 0, 0, 0], np.float32),
        obs_shape=np.array([2]),
        action_dim=np.array(1),
        capacity=np.array(20),
    )
    loaded = ReplayBuffer.load(tmp_path / "b.npz")
    assert list(loaded._episodes) == [(0, 3), (3, 4)] and loaded.num_episodes == 2


def test_seed_002_six_key_npz_without_capacity_is_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((120, 4))
    actions = rng.standard_normal((120, 2))
    rewards = rng.standard_normal(120)
    terminations = np.zeros(120)
    terminations[[59, 119]] = 1

    # Example: valid ReplayBuffer.load() artifact (SEED 002, verbatim)
    np.savez(
        "buffer.npz",
        obs=obs.astype(np.float32),  # [N, *obs_shape]
        actions=actions.astype(np.float32),  # [N, action_dim]
        rewards=rewards.astype(np.float32),  # [N]
        dones=terminations.astype(np.float32),  # [N]
        obs_shape=np.array(obs.shape[1:], dtype=np.int64),
        action_dim=np.array(actions.shape[-1], dtype=np.int64),
    )
    buffer = ReplayBuffer.load("buffer.npz")
    assert (buffer.capacity, len(buffer), buffer.num_episodes) == (120, 120, 2)
    assert buffer.sample(batch_size=16, seq_len=50).obs.shape == (16, 50, 4)


def _write_npz(path, **overrides):
    values = dict(
        obs=np.zeros((6, 2), np.float32),
        actions=np.zeros((6, 1), np.float32),
        rewards=np.zeros(6, np.float32),
        dones=np.zeros(6, np.float32),
        obs_shape=np.array([2]),
        action_dim=np.array(1),
        capacity=np.array(10),
    )
    for key, value in overrides.items():
        if value is None:
            values.pop(key)
        else:
            values[key] = value
    np.savez(path, **values)
    return path


LOAD_ERRORS = [
    ({"obs": None}, r"missing keys \['obs'\]"),
    ({"actions": None, "dones": None}, r"missing keys \['actions', 'dones'\]"),
    ({"rewards": None}, "missing keys"),
    ({"obs_shape": None}, "missing keys"),
    ({"action_dim": None}, "missing keys"),
    ({"obs_shape": np.array([0])}, "Invalid obs_shape metadata"),
    ({"obs_shape": np.array([2.5])}, "Invalid obs_shape metadata"),
    ({"obs_shape": np.array("abc")}, "Invalid obs_shape metadata"),
    ({"action_dim": np.array(0)}, "Invalid action_dim metadata"),
    ({"action_dim": np.array([1, 2])}, "Invalid action_dim metadata"),
    ({"capacity": np.array(-1)}, "Invalid capacity metadata"),
    ({"capacity": np.array("ten")}, "Invalid capacity metadata"),
    ({"obs": np.zeros(6, np.float32)}, "Invalid obs shape"),
    ({"obs": np.zeros((6, 3), np.float32)}, "obs shape does not match obs_shape metadata"),
    ({"actions": np.zeros(6, np.float32)}, "Invalid actions shape"),
    ({"actions": np.zeros((6, 2), np.float32)}, "actions shape does not match action_dim metadata"),
    ({"rewards": np.zeros((6, 1), np.float32)}, "Invalid rewards shape"),
    ({"dones": np.zeros((6, 1), np.float32)}, "Invalid dones shape"),
    ({"rewards": np.zeros(5, np.float32)}, "Inconsistent trajectory lengths"),
    ({"capacity": np.array(5)}, r"number of stored rows exceeds capacity \(6 > 5\)"),
    ({"obs": np.array([["a", "b"]] * 6)}, "Invalid obs dtype"),
]


@pytest.mark.parametrize("overrides, message", LOAD_ERRORS, ids=[m for _, m in LOAD_ERRORS])
def test_load_error_cases(tmp_path, overrides, message):
    path = _write_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(BufferError, match=message):
        ReplayBuffer.load(path)


def test_load_rejects_pickled_objects_and_non_archives(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, obs=np.array([object()] * 2, dtype=object), actions=0, rewards=0, dones=0, obs_shape=0, action_dim=0)
    with pytest.raises(BufferError):
        ReplayBuffer.load(path)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(BufferError, match="npz archive"):
        ReplayBuffer.load(tmp_path / "plain.npy")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BufferError):
        ReplayBuffer.load(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        ReplayBuffer.load(tmp_path / "missing.npz")


def test_load_obs_dtype_option(tmp_path):
    buffer = ReplayBuffer(capacity=10, obs_shape=(2,), action_dim=1, obs_dtype=np.uint8)
    buffer.add_episode(np.full((4, 2), 200), np.zeros((4, 1)), np.zeros(4))
    buffer.save(tmp_path / "u8.npz")
    assert ReplayBuffer.load(tmp_path / "u8.npz")._obs.dtype == np.float32  # reference default
    assert ReplayBuffer.load(tmp_path / "u8.npz", obs_dtype=np.uint8)._obs.dtype == np.uint8


# ---------------------------------------------------------------------------------------- parquet


def test_parquet_round_trip_columns_and_metadata(tmp_path):
    import json

    import pyarrow.parquet as pq

    buffer = ReplayBuffer(capacity=40, obs_shape=(2, 3), action_dim=2)
    rng = np.random.default_rng(0)
    for length in (7, 5):
        buffer.add_episode(rng.standard_normal((length, 2, 3)), rng.standard_normal((length, 2)), np.ones(length))
    path = tmp_path / "buffer.parquet"
    buffer.to_parquet(path)
    table = pq.read_table(path)
    assert table.column_names == [f"obs_{i}" for i in range(6)] + ["action_0", "action_1", "reward", "done"]
    assert all(str(t) == "float" for t in table.schema.types)
    meta = json.loads(table.schema.metadata[b"worldflux_replay_meta"])
    assert meta.pop("checksum").startswith("sha256:")
    assert meta == {"format_version": 1, "obs_shape": [2, 3], "action_dim": 2, "capacity": 40}
    loaded = ReplayBuffer.from_parquet(path)
    assert (loaded.capacity, loaded.obs_shape, loaded.action_dim, len(loaded), loaded.num_episodes) == (
        40,
        (2, 3),
        2,
        12,
        2,
    )
    np.testing.assert_array_equal(loaded._obs[:12], buffer._obs[:12])
    np.testing.assert_array_equal(loaded._actions[:12], buffer._actions[:12])
    np.testing.assert_array_equal(loaded._dones[:12], buffer._dones[:12])
    buffer.to_parquet(tmp_path / "snappy.parquet", compression="snappy")
    assert len(ReplayBuffer.from_parquet(tmp_path / "snappy.parquet")) == 12


def _parquet(path, columns: dict, meta):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    metadata = None if meta is None else {b"worldflux_replay_meta": meta if isinstance(meta, str) else json.dumps(meta)}
    table = pa.table({k: pa.array(np.asarray(v, np.float32)) for k, v in columns.items()})
    pq.write_table(table.replace_schema_metadata(metadata), path)
    return path


GOOD_META = {"format_version": 1, "obs_shape": [1], "action_dim": 1, "capacity": 4}
GOOD_COLS = {"obs_0": [0, 1], "action_0": [0, 0], "reward": [0, 0], "done": [0, 1]}


@pytest.mark.parametrize(
    "columns, meta, message",
    [
        (GOOD_COLS, None, "missing schema metadata 'worldflux_replay_meta'"),
        (GOOD_COLS, "{not json", "Invalid Parquet replay metadata"),
        (GOOD_COLS, [1, 2], "expected a JSON object"),
        (GOOD_COLS, {**GOOD_META, "format_version": 2}, "Unsupported Parquet replay format_version"),
        (GOOD_COLS, {k: v for k, v in GOOD_META.items() if k != "capacity"}, r"missing keys \['capacity'\]"),
        (GOOD_COLS, {**GOOD_META, "obs_shape": []}, "Invalid obs_shape metadata"),
        (GOOD_COLS, {**GOOD_META, "action_dim": 0}, "Invalid action_dim metadata"),
        (GOOD_COLS, {**GOOD_META, "capacity": 1}, "exceeds capacity"),
        ({k: v for k, v in GOOD_COLS.items() if k != "done"}, GOOD_META, r"missing columns \['done'\]"),
        (GOOD_COLS, {**GOOD_META, "obs_shape": [2]}, r"missing columns \['obs_1'\]"),
    ],
)
def test_from_parquet_validation_errors(tmp_path, columns, meta, message):
    path = _parquet(tmp_path / "bad.parquet", columns, meta)
    with pytest.raises(BufferError, match=message):
        ReplayBuffer.from_parquet(path)


def test_from_parquet_accepts_a_valid_handwritten_file(tmp_path):
    loaded = ReplayBuffer.from_parquet(_parquet(tmp_path / "ok.parquet", GOOD_COLS, GOOD_META))
    assert (len(loaded), loaded.num_episodes, loaded.capacity) == (2, 1, 4)


# ---------------------------------------------------------------------------------------- constructors


def test_from_trajectories():
    trajectories = [
        {"obs": tagged_episode(0, 5)[0], "actions": tagged_episode(0, 5)[1], "rewards": np.zeros(5)},
        {
            "obs": torch.from_numpy(tagged_episode(1, 3)[0]),
            "actions": torch.zeros(3, 1),
            "rewards": torch.zeros(3),
            "dones": torch.tensor([0.0, 0.0, 1.0]),
        },
    ]
    buffer = ReplayBuffer.from_trajectories(trajectories)
    assert (buffer.capacity, len(buffer), buffer.num_episodes, buffer.obs_shape, buffer.action_dim) == (
        8,
        8,
        2,
        (2,),
        1,
    )
    assert ReplayBuffer.from_trajectories(trajectories, capacity=100).capacity == 100
    assert isinstance(ThreadSafeReplayBuffer.from_trajectories(trajectories), ThreadSafeReplayBuffer)
    with pytest.raises(BufferError, match="Cannot create buffer from empty trajectories list"):
        ReplayBuffer.from_trajectories([])
    with pytest.raises(BufferError, match="missing required keys"):
        ReplayBuffer.from_trajectories([{"obs": np.zeros((2, 2))}])


def test_create_random_buffer_is_seeded_locally():
    np.random.seed(123)
    state_before = np.random.get_state()[1].copy()
    a = create_random_buffer(capacity=2000, obs_shape=(3,), action_dim=2, num_episodes=12, episode_length=20, seed=5)
    assert np.array_equal(np.random.get_state()[1], state_before), "the global RNG must not be reseeded"
    b = create_random_buffer(capacity=2000, obs_shape=(3,), action_dim=2, num_episodes=12, episode_length=20, seed=5)
    np.testing.assert_array_equal(a._obs, b._obs)
    lengths = [length for _, length in a._episodes]
    assert a.num_episodes == 12 and all(10 <= n <= 20 for n in lengths) and len(a) == sum(lengths)
    assert a._obs.dtype == np.float32 and a._dones.sum() == 12
    np.random.seed(9)
    c = create_random_buffer(capacity=500, obs_shape=(3,), action_dim=2, num_episodes=3, episode_length=10)
    np.random.seed(9)
    d = create_random_buffer(capacity=500, obs_shape=(3,), action_dim=2, num_episodes=3, episode_length=10)
    np.testing.assert_array_equal(c._obs, d._obs)  # seed=None follows the global RNG


def test_trajectory_dataset_yields_unbatched_windows():
    dataset = TrajectoryDataset(
        create_random_buffer(500, (3,), 2, num_episodes=5, seed=0), seq_len=6, samples_per_epoch=4
    )
    assert len(dataset) == 4
    item = dataset[0]
    assert item.obs.shape == (6, 3) and item.actions.shape == (6, 2) and item.rewards.shape == (6,)
    item.validate()


# ---------------------------------------------------------------------------------------- other providers


def test_token_sequence_provider():
    tokens = np.arange(40).reshape(4, 10)
    provider = TokenSequenceProvider(tokens)
    batch = provider.sample(batch_size=6, seq_len=5)
    assert batch.obs.shape == (6, 5) and batch.obs.dtype == torch.int64
    assert batch.layouts == {"obs": "BT", "target": "BT"} == provider.batch_layout()
    assert (torch.diff(batch.obs, dim=1) == 1).all()
    assert torch.equal(batch.target, torch.roll(batch.obs, -1, dims=1))
    assert provider.sample(2).obs.shape == (2, 10)
    with pytest.raises(ConfigurationError, match="seq_len must be in"):
        provider.sample(2, 11)
    with pytest.raises(ConfigurationError, match="tokens must be rank-2"):
        TokenSequenceProvider(np.zeros(3))


def test_transition_array_provider():
    obs = np.arange(20, dtype=np.float64).reshape(10, 2)
    provider = TransitionArrayProvider(obs=obs, actions=np.zeros((10, 3)), rewards=np.arange(10.0))
    batch = provider.sample(batch_size=4)
    assert batch.obs.shape == (4, 2) and batch.obs.dtype == torch.float32
    assert torch.equal(batch.rewards, batch.obs[:, 0] / 2)
    assert batch.layouts == {"obs": "B...", "actions": "B...", "rewards": "B"} and batch.strict_layout
    batch.validate()
    with pytest.raises(ShapeMismatchError, match="length mismatch"):
        TransitionArrayProvider(obs=obs, actions=np.zeros((9, 3)))
    with pytest.raises(ConfigurationError, match="obs must be rank-2"):
        TransitionArrayProvider(obs=np.zeros(3), actions=np.zeros((3, 1)))


# ---------------------------------------------------------------------------------------- threads


def test_thread_safe_buffer_under_concurrent_add_and_sample():
    buffer = ThreadSafeReplayBuffer(capacity=300, obs_shape=(2,), action_dim=1)
    fill(buffer, [20] * 5)
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            for episode_id in range(5, 205):
                buffer.add_episode(*tagged_episode(episode_id, 5 + episode_id % 17))
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def reader() -> None:
        try:
            while not stop.is_set():
                assert_windows_inside_episodes(buffer.sample(16, 4))
                assert len(buffer) <= 300 and buffer.num_episodes >= 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(buffer) == 300 and buffer.num_transitions == 300


def test_prefetcher_returns_batches_and_closes_cleanly():
    buffer = create_random_buffer(capacity=1000, obs_shape=(3,), action_dim=2, num_episodes=10, seed=0)
    with PrefetchBatchProvider(buffer, batch_size=4, seq_len=8, prefetch=2) as prefetcher:
        assert prefetcher.batch_layout() == LAYOUT and prefetcher.data_provenance == {}
        for _ in range(5):
            batch = prefetcher.get()
            assert batch.obs.shape == (4, 8, 3)
        assert prefetcher.sample(batch_size=4, seq_len=8, device="cpu").obs.shape == (4, 8, 3)
        assert prefetcher.sample(batch_size=2, seq_len=3).obs.shape == (2, 3, 3)  # forwarded synchronously
        thread = prefetcher._thread
        assert thread is not None and thread.daemon and thread.is_alive()
    assert not thread.is_alive()
    with pytest.raises(BufferError, match="closed"):
        prefetcher.get()


def test_unclosed_prefetcher_is_collected_and_its_thread_exits():
    import gc

    buffer = create_random_buffer(capacity=500, obs_shape=(3,), action_dim=2, num_episodes=5, seed=0)
    prefetcher = PrefetchBatchProvider(buffer, batch_size=2, seq_len=4, prefetch=1)
    prefetcher.get()
    thread = prefetcher._thread
    del prefetcher
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_prefetcher_reraises_worker_errors_in_the_consumer():
    buffer = ReplayBuffer(capacity=10, obs_shape=(2,), action_dim=1)
    fill(buffer, [3])
    prefetcher = PrefetchBatchProvider(buffer, batch_size=2, seq_len=5)
    with pytest.raises(BufferError, match="insufficient data"):
        prefetcher.get()
    with pytest.raises(BufferError, match="insufficient data"):
        prefetcher.sample()
    prefetcher.close()


def test_prefetcher_timeout_and_request_style_provider():
    release = threading.Event()

    class SlowV2:
        def sample(self, request: BatchRequest) -> Batch:
            release.wait(5)
            return Batch(obs=torch.zeros(request.batch_size, request.seq_len, 1))

    prefetcher = PrefetchBatchProvider(SlowV2(), batch_size=3, seq_len=2, prefetch=1)
    with pytest.raises(BufferError, match="no batch within"):
        prefetcher.get(timeout=0.05)
    release.set()
    assert prefetcher.get(timeout=5).obs.shape == (3, 2, 1)
    prefetcher.stop()
    assert not prefetcher._thread.is_alive()


# ---------------------------------------------------------------------------------------- documentation examples


def test_seed_000_replay_buffer_example():
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((64, 3, 64, 64), dtype=np.float32)
    actions = rng.standard_normal((64, 6), dtype=np.float32)
    rewards = rng.standard_normal(64, dtype=np.float32)
    dones = np.zeros(64, np.float32)
    dones[-1] = 1

    buffer = ReplayBuffer(capacity=100_000, obs_shape=(3, 64, 64), action_dim=6)
    buffer.add_episode(obs, actions, rewards, dones)
    batch = buffer.sample(batch_size=32, seq_len=50)

    assert batch.obs.shape == (32, 50, 3, 64, 64) and batch.actions.shape == (32, 50, 6)
    assert batch.rewards.shape == (32, 50) and batch.terminations.shape == (32, 50)
    assert buffer.num_episodes == 1


def test_seed_002_replay_buffer_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    buffer = ReplayBuffer(
        capacity=100_000,
        obs_shape=(4,),
        action_dim=2,
    )
    T = 80
    buffer.add_episode(
        obs=np.array(np.random.randn(T, 4)),  # [T, *obs_shape]
        actions=np.array(np.random.randn(T, 2)),  # [T, action_dim]
        rewards=np.array(np.random.randn(T)),  # [T]
        dones=np.array([0.0] * (T - 1) + [1.0]),  # [T]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CPU-only torch: the batch stays in host memory (warned once)
        batch = buffer.sample(
            batch_size=16,
            seq_len=50,
            device="cuda",
        )
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"
    assert batch.obs.device.type == expected_device
    assert batch.obs.shape == (16, 50, 4)  # [B, T, *obs_shape]
    assert batch.actions.shape == (16, 50, 2)  # [B, T, action_dim]
    assert batch.rewards.shape == (16, 50) and batch.terminations.shape == (16, 50)

    buffer.save("buffer.npz")
    buffer = ReplayBuffer.load("buffer.npz")
    assert (buffer.num_episodes, buffer.num_transitions, len(buffer)) == (1, T, T)

    from worldflux.training.data import create_random_buffer as documented_create_random_buffer

    buffer = documented_create_random_buffer(
        capacity=10_000,
        obs_shape=(4,),
        action_dim=2,
        num_episodes=100,
        episode_length=100,
        seed=42,
    )
    assert buffer.num_episodes == 100 and 5_000 <= len(buffer) <= 10_000  # lengths uniform in [50, 100]
    assert buffer.sample(16, 50).obs.shape == (16, 50, 4)


def test_unusable_device_warns_once_and_keeps_host_memory():
    import worldflux.training.data as data

    buffer = create_random_buffer(capacity=200, obs_shape=(2,), action_dim=1, num_episodes=4, seed=0)
    data._WARNED_DEVICES.discard("tpu")
    with pytest.warns(UserWarning, match="'tpu'"):
        batch = buffer.sample(2, 3, device="tpu")
    assert batch.obs.device.type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        buffer.sample(2, 3, device="tpu")
        buffer.sample(2, 3, device=torch.device("cpu"))
