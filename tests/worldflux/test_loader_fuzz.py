"""Every loader given mutated, truncated, re-declared or special input raises only the package's named errors
(and allocates no more than the input holds).

Property tests (hypothesis, few examples each so the suite stays fast): ``State.deserialize`` /
``from_shared_memory``, ``ReplayBuffer.load`` / ``from_parquet``, ``TrainingConfig.load``,
``WorldModelConfig.load``, ``WorldModel.from_pretrained`` and checkpoint restores. Memory is measured with
``tracemalloc`` (numpy reports its array allocations to it).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worldflux.core.config import WorldModelConfig
from worldflux.core.exceptions import BufferError, CheckpointError, ConfigurationError, StateError, WorldFluxError
from worldflux.core.state import State
from worldflux.training import TrainingConfig
from worldflux.training.data import ReplayBuffer

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
FEW = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
_MB = 1 << 20


def _mutate(data: bytes, draw_ops: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: 0 flip a byte, 1 truncate, 2 insert a byte, 3 delete a byte."""
    out = bytearray(data)
    for kind, pos, value in draw_ops:
        if not out:
            break
        pos %= len(out)
        if kind == 0:
            out[pos] ^= value or 1
        elif kind == 1:
            del out[pos:]
        elif kind == 2:
            out.insert(pos, value)
        else:
            del out[pos]
    return bytes(out)


MUTATIONS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=6)


def _bounded(load, limit_bytes: int):
    """Run ``load()``; assert numpy/Python allocations peaked below ``limit_bytes``; return (result, error)."""
    tracemalloc.start()
    try:
        result, error = load(), None
    except WorldFluxError as exc:
        result, error = None, exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < limit_bytes, f"loader allocated {peak} bytes for a small input"
    return result, error


# ----------------------------------------------------------------------------------------------- State


def _state_payload() -> bytes:
    state = State(
        tensors={"h": torch.arange(12, dtype=torch.float32).reshape(3, 4), "z": torch.ones(3, 2)}, meta={"step": 1}
    )
    return state.serialize()


def _redeclare(payload: bytes, edit) -> bytes:
    magic, version, length = struct.unpack_from(">4sBI", payload, 0)
    meta = json.loads(payload[9 : 9 + length])
    edit(meta)
    text = json.dumps(meta).encode()
    return struct.pack(">4sBI", magic, version, len(text)) + text + payload[9 + length :]


@FUZZ
@given(MUTATIONS)
def test_state_deserialize_mutated_payloads(ops):
    payload = _mutate(_state_payload(), ops)
    _bounded(lambda: State.deserialize(payload), 4 * _MB)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(st.sampled_from(["shape", "nbytes", "dtype", "name", "requires_grad"]), JSON_VALUES)
def test_state_deserialize_redeclared_tensor_specs(key, value):
    def edit(meta):
        meta["tensors"][0][key] = value

    payload = _redeclare(_state_payload(), edit)
    _bounded(lambda: State.deserialize(payload), 4 * _MB)


def test_state_deserialize_refuses_deep_json_and_non_bytes():
    flat = _redeclare(_state_payload(), lambda meta: meta.update(meta="DEEP"))
    deep = flat.replace(b'"DEEP"', b"[" * 5000 + b"]" * 5000)
    deep = deep[:5] + struct.pack(">I", struct.unpack_from(">I", deep, 5)[0] + 10000 - 6) + deep[9:]
    with pytest.raises(StateError, match="deeper"):
        State.deserialize(deep)
    for bad in (10**12, "WFST", None, [1, 2]):
        with pytest.raises(StateError, match="bytes"):
            State.deserialize(bad)


@FUZZ
@given(st.sampled_from(["shape", "numel", "dtype", "shm_name", "name"]), JSON_VALUES | st.text(max_size=40))
def test_state_from_shared_memory_redeclared_descriptors(key, value):
    state = State(tensors={"h": torch.ones(2, 3)})
    descriptor = state.to_shared_memory()
    try:
        spec = dict(descriptor["tensors"][0])
        spec[key] = value
        mutated = dict(descriptor, tensors=[spec])
        attached, _ = _bounded(lambda: State.from_shared_memory(mutated, copy=True), 4 * _MB)
        assert attached is None or isinstance(attached, State)
    finally:
        State.unlink_shared_memory(descriptor)


# ----------------------------------------------------------------------------------------------- replay


def _buffer() -> ReplayBuffer:
    buffer = ReplayBuffer(capacity=64, obs_shape=(3,), action_dim=2)
    rng = np.random.default_rng(0)
    buffer.add_episode(rng.normal(size=(20, 3)), rng.normal(size=(20, 2)), rng.normal(size=20))
    return buffer


@pytest.fixture(scope="module")
def npz_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("npz") / "buffer.npz"
    _buffer().save(path)
    return path.read_bytes()


@FUZZ
@given(ops=MUTATIONS)
def test_replay_load_mutated_files(npz_bytes, tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("m") / "b.npz"
    path.write_bytes(_mutate(npz_bytes, ops))
    buffer, error = _bounded(lambda: ReplayBuffer.load(path), 8 * _MB)
    assert error is None or isinstance(error, BufferError)
    if buffer is not None:  # only an unchanged payload may load: the checksum covers the arrays
        assert len(buffer) == 20


def _npz_with(arrays: dict[str, np.ndarray], header_edit=None) -> bytes:
    """An .npz (stored, uncompressed) of ``arrays``; ``header_edit(name, header_dict)`` rewrites .npy headers."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            data = member.getvalue()
            if header_edit is not None:
                header = np.lib.format.header_data_from_array_1_0(array)
                header_edit(name, header)
                fresh = io.BytesIO()
                np.lib.format.write_array_header_1_0(fresh, header)
                start = len(data) - array.nbytes
                data = fresh.getvalue() + data[start:]
            archive.writestr(f"{name}.npy", data)
    return out.getvalue()


def _valid_arrays() -> dict[str, np.ndarray]:
    return {
        "obs": np.zeros((10, 3), np.float32),
        "actions": np.zeros((10, 2), np.float32),
        "rewards": np.zeros(10, np.float32),
        "dones": np.zeros(10, np.float32),
        "obs_shape": np.asarray([3]),
        "action_dim": np.asarray(2),
        "capacity": np.asarray(10),
    }


@FEW
@given(st.sampled_from(["obs", "actions", "rewards", "dones"]), st.integers(11, 2**40))
def test_replay_load_redeclared_array_shapes_allocate_nothing(tmp_path_factory, key, rows):
    def edit(name, header):
        if name == key:
            header["shape"] = (rows, *header["shape"][1:])

    path = tmp_path_factory.mktemp("r") / "b.npz"
    path.write_bytes(_npz_with(_valid_arrays(), edit))
    _, error = _bounded(lambda: ReplayBuffer.load(path), 4 * _MB)
    assert isinstance(error, BufferError) and str(path) in str(error)


@FEW
@given(st.integers(10**9, 2**62))
def test_replay_load_huge_declared_capacity_is_refused(tmp_path_factory, capacity):
    arrays = dict(_valid_arrays(), capacity=np.asarray(capacity))
    path = tmp_path_factory.mktemp("c") / "b.npz"
    path.write_bytes(_npz_with(arrays))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORLDFLUX_MAX_LOAD_BYTES", str(64 * _MB))
        _, error = _bounded(lambda: ReplayBuffer.load(path), 4 * _MB)
    assert isinstance(error, BufferError) and "capacity" in str(error)


@pytest.mark.parametrize("dtype", [np.complex64, "U3", [("a", "<f4")]])
def test_replay_load_refuses_non_numeric_dtypes(tmp_path, dtype):
    arrays = _valid_arrays()
    arrays["obs"] = np.zeros((10, 3), dtype=dtype)
    path = tmp_path / "b.npz"
    path.write_bytes(_npz_with(arrays))
    with pytest.raises(BufferError, match="dtype"):
        ReplayBuffer.load(path)


def test_replay_checksum_and_nonfinite(tmp_path):
    buffer = _buffer()
    buffer.save(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["rewards"] = arrays["rewards"].copy()
    arrays["rewards"][3] += 1.0
    np.savez(tmp_path / "edited.npz", **arrays)
    with pytest.raises(BufferError, match="integrity"):
        ReplayBuffer.load(tmp_path / "edited.npz")
    arrays["rewards"][3] = np.nan
    del arrays["checksum"]
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(BufferError, match="non-finite rewards"):
        ReplayBuffer.load(tmp_path / "nan.npz", on_nonfinite="raise")
    with pytest.warns(UserWarning, match="non-finite rewards"):
        ReplayBuffer.load(tmp_path / "nan.npz", on_nonfinite="warn")
    with pytest.raises(BufferError, match="on_nonfinite"):
        ReplayBuffer.load(tmp_path / "nan.npz", on_nonfinite="ignore")


@pytest.fixture(scope="module")
def parquet_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pq") / "buffer.parquet"
    _buffer().to_parquet(path)
    return path


@FUZZ
@given(ops=MUTATIONS)
def test_parquet_mutated_files(parquet_path, tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("p") / "b.parquet"
    path.write_bytes(_mutate(parquet_path.read_bytes(), ops))
    try:
        buffer = ReplayBuffer.from_parquet(path)
    except BufferError:
        return
    assert len(buffer) == 20


@FUZZ
@given(st.sampled_from(["obs_shape", "action_dim", "capacity", "format_version", "checksum"]), JSON_VALUES)
def test_parquet_redeclared_metadata(parquet_path, tmp_path_factory, key, value):
    import pyarrow.parquet as pq

    table = pq.read_table(parquet_path)
    meta = json.loads(table.schema.metadata[b"worldflux_replay_meta"])
    meta[key] = value
    table = table.replace_schema_metadata({b"worldflux_replay_meta": json.dumps(meta).encode()})
    path = tmp_path_factory.mktemp("q") / "b.parquet"
    pq.write_table(table, path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORLDFLUX_MAX_LOAD_BYTES", str(256 * _MB))
        try:
            buffer = ReplayBuffer.from_parquet(path)
        except BufferError:
            return
    assert len(buffer) == 20


def test_parquet_shape_metadata_must_match_columns(parquet_path, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(parquet_path)
    meta = json.loads(table.schema.metadata[b"worldflux_replay_meta"])
    meta["obs_shape"] = [2]  # obs_2 would be silently dropped
    path = tmp_path / "drop.parquet"
    pq.write_table(table.replace_schema_metadata({b"worldflux_replay_meta": json.dumps(meta).encode()}), path)
    with pytest.raises(BufferError, match="not declared"):
        ReplayBuffer.from_parquet(path)
    strings = table.set_column(0, "obs_0", pa.array([str(i) for i in range(20)]))
    pq.write_table(strings, tmp_path / "str.parquet")
    with pytest.raises(BufferError, match="numeric"):
        ReplayBuffer.from_parquet(tmp_path / "str.parquet")


# ----------------------------------------------------------------------------------------------- configs


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            ["total_steps", "learning_rate", "seed", "batch_size", "output_dir", "grad_clip", "optimizer", "bogus"]
        ),
        JSON_VALUES,
        max_size=4,
    )
)
def test_training_config_load_random_objects(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("t") / "config.json"
    path.write_text(json.dumps(data))
    try:
        TrainingConfig.load(path)
    except ConfigurationError as exc:
        assert str(path) in str(exc)


@FUZZ
@given(
    st.sampled_from(
        [
            "hidden_dim",
            "deter_dim",
            "learning_rate",
            "kl_free",
            "gamma",
            "obs_shape",
            "action_dim",
            "loss_scales",
            "use_symlog",
            "latent_type",
        ]
    ),
    JSON_VALUES,
)
def test_world_model_config_load_random_values(tmp_path_factory, key, value):
    path = tmp_path_factory.mktemp("w") / "config.json"
    path.write_text(json.dumps({"model_type": "dreamer", "obs_shape": [4], "action_dim": 2, key: value}))
    try:
        WorldModelConfig.load(path)
    except ConfigurationError:
        pass


@pytest.mark.parametrize(
    "field, value",
    [
        ("hidden_dim", 32.5),
        ("learning_rate", float("nan")),
        ("kl_free", float("inf")),
        ("gamma", 0.0),
        ("gamma", 1.5),
        ("deter_dim", "64"),
        ("obs_shape", [4.5]),
    ],
)
def test_world_model_config_values_are_typed(field, value):
    from worldflux.core.config import DreamerV3Config

    with pytest.raises(ConfigurationError, match=field):
        DreamerV3Config(**{**dict(obs_shape=(4,), action_dim=2, encoder_type="mlp", decoder_type="mlp"), field: value})


def test_special_files_and_deep_json_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for special in ("/dev/zero", str(fifo)):
        with pytest.raises(BufferError, match="regular file"):
            ReplayBuffer.load(special)
        with pytest.raises(BufferError, match="regular file"):
            ReplayBuffer.from_parquet(special)
        with pytest.raises(ConfigurationError, match="regular file"):
            TrainingConfig.load(special)
        with pytest.raises(ConfigurationError, match="regular file"):
            WorldModelConfig.load(special)
    for loader in (TrainingConfig.load, WorldModelConfig.load):
        with pytest.raises(ConfigurationError, match="deeper"):
            loader(deep)
    with pytest.raises(ConfigurationError) as info:
        TrainingConfig.load(tmp_path / "missing.json")
    assert isinstance(info.value, FileNotFoundError)


# ----------------------------------------------------------------------------------------------- pretrained


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    from worldflux import create_world_model

    torch.manual_seed(0)
    model = create_world_model("tdmpc2:ci", obs_shape=(4,), action_dim=2)
    directory = tmp_path_factory.mktemp("pre") / "model"
    model.save_pretrained(str(directory))
    return directory


def test_pretrained_integrity_and_preference(saved_model, tmp_path):
    from worldflux.core.model import WorldModel
    from worldflux.core.safe_io import sha256_file

    meta = json.loads((saved_model / "worldflux_meta.json").read_text())
    for name in ("model.safetensors", "model.pt"):
        assert meta["weights_sha256"][name] == sha256_file(saved_model / name, CheckpointError)
    reference = WorldModel.from_pretrained(str(saved_model)).state_dict()
    only_st = shutil.copytree(saved_model, tmp_path / "st")
    (only_st / "model.pt").unlink()  # the pure-JAX script writes safetensors only
    assert all(torch.equal(reference[k], v) for k, v in WorldModel.from_pretrained(str(only_st)).state_dict().items())
    edited = shutil.copytree(saved_model, tmp_path / "edited")
    data = bytearray((edited / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (edited / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="Integrity check failed"):
        WorldModel.from_pretrained(str(edited))
    special = shutil.copytree(saved_model, tmp_path / "special")
    (special / "model.safetensors").unlink()
    (special / "model.safetensors").symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match="regular file"):
        WorldModel.from_pretrained(str(special))


@FEW
@given(st.sampled_from(["model.safetensors", "config.json", "worldflux_meta.json"]), MUTATIONS)
def test_pretrained_mutated_files(saved_model, tmp_path_factory, name, ops):
    from worldflux.core.model import WorldModel

    directory = shutil.copytree(saved_model, tmp_path_factory.mktemp("mut") / "m")
    (directory / name).write_bytes(_mutate((directory / name).read_bytes(), ops))
    try:
        WorldModel.from_pretrained(str(directory))
    except (CheckpointError, ConfigurationError) as exc:
        assert str(directory) in str(exc) or "config" in str(exc)


@FEW
@given(st.integers(0, 2**40), st.integers(0, 2**40))
def test_pretrained_redeclared_safetensors_header(saved_model, tmp_path_factory, begin, end):
    from worldflux.core.model import WorldModel

    directory = shutil.copytree(saved_model, tmp_path_factory.mktemp("hdr") / "m")
    data = (directory / "model.safetensors").read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + length])
    first = next(k for k in header if k != "__metadata__")
    header[first]["data_offsets"] = [begin, end]
    header[first]["shape"] = [max(1, (end - begin) // 4)]
    text = json.dumps(header).encode()
    (directory / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])
    meta = json.loads((directory / "worldflux_meta.json").read_text())
    del meta["weights_sha256"]  # a forger recomputes or drops the hash: the reader must still hold
    (directory / "worldflux_meta.json").write_text(json.dumps(meta))
    from worldflux.core.pretrained_io import read_weights

    weights, error = _bounded(lambda: read_weights(directory, meta), 16 * _MB)
    if error is None:  # a consistent re-declaration: the strict state-dict check refuses it
        with pytest.raises(CheckpointError):
            WorldModel.from_pretrained(str(directory))
    else:
        assert isinstance(error, CheckpointError) and "model.safetensors" in str(error)


# ----------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    import jax.numpy as jnp

    from worldflux.training.checkpoint import CheckpointWriter

    path = tmp_path_factory.mktemp("ck") / "checkpoint_3.pt"
    writer = CheckpointWriter()
    writer.save(path, {"w": jnp.arange(6.0), "n": jnp.asarray(3)}, {"global_step": 3, "best_loss": 0.5})
    writer.close()
    return path


@FUZZ
@given(st.sampled_from(["global_step", "best_loss", "epoch", "leaves", "format", "schema_version"]), JSON_VALUES)
def test_checkpoint_marker_redeclared(small_checkpoint, tmp_path_factory, key, value):
    import jax.numpy as jnp

    from worldflux.training.checkpoint import MARKER_FILE, restore_checkpoint
    from worldflux.training.checkpoint_meta import metadata_fingerprint

    path = shutil.copytree(small_checkpoint, tmp_path_factory.mktemp("mk") / "checkpoint_3.pt")
    marker = json.loads((path / MARKER_FILE).read_text())
    if key in ("global_step", "best_loss", "epoch"):
        marker["metadata"][key] = value
        marker["metadata_sha256"] = metadata_fingerprint(marker["metadata"]) if _plain(value) else "0" * 64
    else:
        marker[key] = value
    (path / MARKER_FILE).write_text(json.dumps(marker))
    template = {"w": jnp.zeros(6), "n": jnp.asarray(0)}
    try:
        tree, metadata = restore_checkpoint(path, template)
    except CheckpointError as exc:
        assert str(path) in str(exc)
        return
    assert isinstance(metadata["global_step"], int) and metadata["global_step"] >= 0
    assert np.array_equal(np.asarray(tree["w"]), np.arange(6.0))


def _plain(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


def test_a_failed_trainer_load_leaves_the_trainer_unchanged(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "training"))
    from wf_training_helpers import buffer, config, fresh_model, host_tree

    from worldflux.training import Trainer
    from worldflux.training.checkpoint import MARKER_FILE

    trainer = Trainer(fresh_model("tdmpc2:ci"), config(tmp_path, total_steps=2))
    trainer.train(buffer())
    path = Path(trainer.config.output_dir) / "checkpoint_final.pt"
    marker = json.loads((path / MARKER_FILE).read_text())
    marker["metadata"]["global_step"] = 10**6  # edited after saving: fingerprint mismatch
    (path / MARKER_FILE).write_text(json.dumps(marker))
    before = (trainer.state.global_step, host_tree(trainer.model.params), trainer.state.best_loss)
    with pytest.raises(CheckpointError, match="metadata"):
        trainer.load_checkpoint(path)
    after = (trainer.state.global_step, host_tree(trainer.model.params), trainer.state.best_loss)
    assert before[0] == after[0] and before[2] == after[2]
    assert all(np.array_equal(a, b) for a, b in zip(before[1], after[1], strict=True))
