"""`State` (reference §3.1: accessors, validate, binary envelope, shared memory) and `Trajectory` (§3.5)."""

from __future__ import annotations

import gc
import json
import struct
import sys

import numpy as np
import pytest
import torch

from worldflux.core import ShapeMismatchError, State, StateError, Trajectory
from worldflux.core.trajectory import DeferredTrajectory

ALL_DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.float32,
    torch.float64,
    torch.bfloat16,
]


def _sample(dtype: torch.dtype, shape=(3, 4)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        return torch.rand(shape, generator=gen) > 0.5
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=gen) * 100).to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(max(info.min, -1000), min(info.max, 1000), shape, generator=gen, dtype=dtype)


def _envelope(metadata, raw: bytes = b"", *, magic=b"WFST", version_id=1, meta_len=None) -> bytes:
    meta = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    length = len(meta) if meta_len is None else meta_len
    return struct.pack(">4sBI", magic, version_id, length) + meta + raw


def _good_metadata(**record_overrides):
    record = {
        "name": "x",
        "dtype": "float32",
        "shape": [2],
        "nbytes": 8,
        "requires_grad": False,
        "source_device": "cpu",
    }
    record.update(record_overrides)
    return {"format": "worldflux.state", "version": "v1", "meta": {}, "tensors": [record]}


# ---------------------------------------------------------------------------------------- accessors


def test_get_batch_size_and_device_come_from_the_first_tensor():
    state = State(tensors={"deter": torch.zeros(4, 8), "stoch": torch.zeros(4, 2, 3)})
    assert state.batch_size == 4
    assert state.device == torch.device("cpu")
    assert state.get("deter") is state.tensors["deter"]
    assert state.get("missing") is None
    default = torch.ones(1)
    assert state.get("missing", default) is default


def test_empty_state_has_no_batch_size_or_device():
    with pytest.raises(ValueError, match="State has no tensors to infer batch size"):
        _ = State().batch_size
    with pytest.raises(ValueError, match="no tensors to infer device"):
        _ = State().device


def test_to_and_detach_share_meta_while_clone_copies_meta_and_tensors():
    x = torch.ones(2, 3, requires_grad=True)
    state = State(tensors={"x": x * 2}, meta={"latent_type": "simnorm"})
    detached = state.detach()
    assert not detached.tensors["x"].requires_grad
    assert detached.meta is state.meta
    moved = state.to("cpu")
    assert moved.meta is state.meta and moved.tensors["x"].device.type == "cpu"
    cloned = state.clone()
    assert cloned.meta == state.meta and cloned.meta is not state.meta
    cloned.tensors["x"].data.fill_(7.0)
    assert torch.all(state.tensors["x"] == 2.0)


def test_validate_rejects_empty_state_and_mismatched_batch_sizes():
    with pytest.raises(StateError, match="State has no tensors"):
        State().validate()
    bad = State(tensors={"a": torch.zeros(4, 2), "b": torch.zeros(3, 2)})
    with pytest.raises(ShapeMismatchError) as info:
        bad.validate()
    assert str(info.value) == "State tensor 'b' batch size mismatch (expected (4,), got (3,))"
    State(tensors={"a": torch.zeros(4, 2), "b": torch.zeros(4)}).validate()


# ---------------------------------------------------------------------------------------- serialize


def test_serialize_writes_the_exact_reference_envelope():
    x = torch.tensor([[1.0, -2.0]], dtype=torch.float32)
    flags = torch.tensor([True, False])
    payload = State(tensors={"x": x, "flags": flags}, meta={"step": 3, "a": "b"}).serialize()
    metadata = {
        "format": "worldflux.state",
        "version": "v1",
        "meta": {"step": 3, "a": "b"},
        "tensors": [
            {
                "name": "x",
                "dtype": "float32",
                "shape": [1, 2],
                "nbytes": 8,
                "requires_grad": False,
                "source_device": "cpu",
            },
            {
                "name": "flags",
                "dtype": "bool",
                "shape": [2],
                "nbytes": 2,
                "requires_grad": False,
                "source_device": "cpu",
            },
        ],
    }
    meta_bytes = json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode("utf-8")
    raw = np.array([1.0, -2.0], dtype="<f4").tobytes() + bytes([1, 0])
    assert payload == struct.pack(">4sBI", b"WFST", 1, len(meta_bytes)) + meta_bytes + raw
    assert payload[:4] == b"WFST" and payload[4] == 1


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_serialize_deserialize_round_trips_every_allowed_dtype_bit_exactly(dtype):
    tensor = _sample(dtype)
    restored = State.deserialize(State(tensors={"t": tensor}, meta={"k": [1, 2]}).serialize())
    out = restored.tensors["t"]
    assert out.dtype == dtype and out.shape == tensor.shape
    assert torch.equal(out, tensor)
    assert restored.meta == {"k": [1, 2]}


def test_round_trip_restores_requires_grad_scalars_empty_and_non_contiguous_tensors():
    grad = torch.randn(2, 3, requires_grad=True)
    non_contiguous = torch.arange(12, dtype=torch.int64).reshape(3, 4).t()
    state = State(
        tensors={
            "grad": grad,
            "scalar": torch.tensor(2.5, dtype=torch.float64),
            "empty": torch.zeros(0, 5, dtype=torch.bfloat16),
            "nc": non_contiguous,
        }
    )
    restored = State.deserialize(state.serialize())
    assert list(restored.tensors) == ["grad", "scalar", "empty", "nc"]
    assert restored.tensors["grad"].requires_grad and restored.tensors["grad"].is_leaf
    assert torch.equal(restored.tensors["grad"].detach(), grad.detach())
    assert restored.tensors["scalar"].shape == () and restored.tensors["scalar"].item() == 2.5
    assert restored.tensors["empty"].shape == (0, 5) and restored.tensors["empty"].dtype == torch.bfloat16
    assert torch.equal(restored.tensors["nc"], non_contiguous)


def test_deserialized_tensors_are_independent_copies():
    payload = bytearray(State(tensors={"x": torch.zeros(4)}).serialize())
    restored = State.deserialize(payload)
    payload[-4:] = b"\xff\xff\xff\xff"
    assert torch.all(restored.tensors["x"] == 0)
    restored.tensors["x"].add_(1)  # writable


def test_serialize_rejects_unknown_format_version_dtype_and_non_json_meta():
    state = State(tensors={"x": torch.zeros(1)})
    with pytest.raises(StateError, match="format 'json'"):
        state.serialize(format="json")
    with pytest.raises(StateError, match="version 'v2'"):
        state.serialize(version="v2")
    with pytest.raises(StateError, match="Unsupported dtype"):
        State(tensors={"z": torch.zeros(2, dtype=torch.complex64)}).serialize()
    with pytest.raises(StateError, match="JSON-serializable"):
        State(tensors={"x": torch.zeros(1)}, meta={"obj": object()}).serialize()


DESERIALIZE_ERRORS = {
    "payload shorter than header": (b"WFST\x01", "too short"),
    "bad magic": (_envelope(_good_metadata(), b"\0" * 8, magic=b"XXXX"), "magic"),
    "unknown version id": (_envelope(_good_metadata(), b"\0" * 8, version_id=2), "version id 2"),
    "metadata length past end": (_envelope(_good_metadata(), b"", meta_len=10_000), "metadata length"),
    "undecodable json": (_envelope(b"{not json"), "Failed to decode State metadata JSON"),
    "invalid utf-8": (_envelope(b"\xff\xfe"), "Failed to decode State metadata JSON"),
    "json not an object": (_envelope([1, 2]), "must decode into a JSON object"),
    "header vs metadata version": (_envelope({**_good_metadata(), "version": "v2"}, b"\0" * 8), "version mismatch"),
    "missing tensors list": (_envelope({"format": "worldflux.state", "version": "v1", "meta": {}}), "tensor specs"),
    "tensor spec not a dict": (_envelope({**_good_metadata(), "tensors": ["x"]}), "Invalid tensor spec"),
    "empty name": (_envelope(_good_metadata(name=""), b"\0" * 8), "non-empty 'name'"),
    "unknown dtype": (_envelope(_good_metadata(dtype="complex64"), b"\0" * 8), "unsupported dtype name"),
    "shape not a list": (_envelope(_good_metadata(shape="2"), b"\0" * 8), "list 'shape'"),
    "negative dims": (_envelope(_good_metadata(shape=[-2]), b"\0" * 8), "negative shape"),
    "nbytes invalid": (_envelope(_good_metadata(nbytes=-1), b"\0" * 8), "invalid 'nbytes'"),
    "nbytes not a number": (_envelope(_good_metadata(nbytes="8"), b"\0" * 8), "invalid 'nbytes'"),
    "nbytes inconsistent": (_envelope(_good_metadata(nbytes=4), b"\0" * 4), "inconsistent byte length"),
    "truncated data": (_envelope(_good_metadata(), b"\0" * 7), "truncated while reading tensor 'x'"),
    "trailing bytes": (_envelope(_good_metadata(), b"\0" * 9), "trailing bytes"),
    "meta not an object": (_envelope({**_good_metadata(), "meta": [1]}, b"\0" * 8), "'meta' must be an object"),
}


@pytest.mark.parametrize("case", sorted(DESERIALIZE_ERRORS))
def test_deserialize_raises_state_error_for_each_malformed_payload(case):
    payload, message = DESERIALIZE_ERRORS[case]
    with pytest.raises(StateError, match=message):
        State.deserialize(payload)


def test_deserialize_accepts_the_well_formed_hand_built_envelope():
    raw = np.array([1.5, 2.5], dtype="<f4").tobytes()
    restored = State.deserialize(_envelope(_good_metadata(), raw))
    assert torch.equal(restored.tensors["x"], torch.tensor([1.5, 2.5]))


# ---------------------------------------------------------------------------------------- shared memory

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shared memory")


@posix_only
def test_shared_memory_round_trip_is_zero_copy_and_unlink_removes_segments():
    from multiprocessing import shared_memory

    original = State(
        tensors={
            "x": torch.arange(6, dtype=torch.float32).reshape(2, 3),
            "b": torch.tensor([[1.0, 2.0]], dtype=torch.bfloat16).expand(2, 2),
            "flags": torch.tensor([True, False]),
        },
        meta={"latent_type": "categorical"},
    )
    descriptor = original.to_shared_memory(namespace="Test State!")
    try:
        assert descriptor["magic"] == "WFST-SHM" and descriptor["version"] == "v1"
        assert descriptor["meta"] == {"latent_type": "categorical"}
        json.dumps(descriptor)  # plain data, can cross a process boundary
        names = [spec["shm_name"] for spec in descriptor["tensors"]]
        for name in names:
            prefix, token = name.split("-")
            assert prefix == "teststat" and len(token) == 12 and int(token, 16) >= 0
        assert [s["nbytes"] for s in descriptor["tensors"]] == [24, 8, 2]

        attached = State.from_shared_memory(descriptor)
        for key, tensor in original.tensors.items():
            assert torch.equal(attached.tensors[key], tensor)
        assert attached.meta["latent_type"] == "categorical"
        assert attached.meta["_wf_shared_memory_descriptor"] is descriptor

        # Writing the segment directly is visible through the attached view (zero copy) ...
        segment = shared_memory.SharedMemory(name=names[0], create=False)
        np.ndarray((6,), dtype=np.float32, buffer=segment.buf)[0] = 42.0
        assert attached.tensors["x"][0, 0].item() == 42.0
        # ... and writes through one attached view are visible to another attachment.
        other = State.from_shared_memory(descriptor)
        other.tensors["x"][1, 2] = -1.0
        assert attached.tensors["x"][1, 2].item() == -1.0
        other.close_shared_memory()
        segment.close()

        copied = State.from_shared_memory(descriptor, copy=True)
        assert "_wf_shared_memory_handles" not in copied.meta
        copied.tensors["x"][0, 0] = 0.0
        assert attached.tensors["x"][0, 0].item() == 42.0

        attached.close_shared_memory(unlink=True)
        assert "_wf_shared_memory_handles" not in attached.meta
        assert attached.tensors["x"][0, 0].item() == 42.0  # the state keeps private copies after closing
        for name in names:
            with pytest.raises(FileNotFoundError):
                shared_memory.SharedMemory(name=name, create=False)
        with pytest.raises(StateError, match="does not exist"):
            State.from_shared_memory(descriptor)
    finally:
        State.unlink_shared_memory(descriptor)
    State.unlink_shared_memory(descriptor)  # missing segments are ignored


@posix_only
def test_close_shared_memory_refuses_while_foreign_views_are_alive_and_succeeds_after():
    descriptor = State(tensors={"x": torch.ones(3)}).to_shared_memory()
    try:
        attached = State.from_shared_memory(descriptor)
        view = attached.tensors["x"]
        with pytest.raises(StateError, match="still referenced"):
            attached.close_shared_memory()
        assert view.sum().item() == 3.0  # memory stays mapped while the view exists
        del view
        gc.collect()
        attached.close_shared_memory(unlink=True)
        assert "_wf_shared_memory_handles" not in attached.meta
    finally:
        State.unlink_shared_memory(descriptor)


@posix_only
def test_shared_memory_serialize_ignores_bookkeeping_and_clone_drops_handles():
    descriptor = State(tensors={"x": torch.ones(2)}, meta={"a": 1}).to_shared_memory()
    try:
        attached = State.from_shared_memory(descriptor)
        assert State.deserialize(attached.serialize()).meta == {"a": 1}
        assert attached.clone().meta == {"a": 1}
        attached.close_shared_memory(unlink=True)
    finally:
        State.unlink_shared_memory(descriptor)


def test_from_shared_memory_rejects_malformed_descriptors():
    with pytest.raises(StateError, match="must be a dict"):
        State.from_shared_memory([])
    with pytest.raises(StateError, match="magic"):
        State.from_shared_memory({"magic": "WFST", "version": "v1", "tensors": []})
    with pytest.raises(StateError, match="version"):
        State.from_shared_memory({"magic": "WFST-SHM", "version": "v9", "tensors": []})
    with pytest.raises(StateError, match="tensor list"):
        State.from_shared_memory({"magic": "WFST-SHM", "version": "v1"})
    spec = {"name": "x", "dtype": "float32", "shape": [2], "numel": 2, "nbytes": 8}
    base = {"magic": "WFST-SHM", "version": "v1", "meta": {}}
    with pytest.raises(StateError, match="shm_name"):
        State.from_shared_memory({**base, "tensors": [spec]})
    with pytest.raises(StateError, match="unsupported dtype"):
        State.from_shared_memory({**base, "tensors": [{**spec, "dtype": "str", "shm_name": "x"}]})
    with pytest.raises(StateError, match="numel=3"):
        State.from_shared_memory({**base, "tensors": [{**spec, "numel": 3, "shm_name": "x"}]})


def test_to_shared_memory_rejects_non_cpu_tensor_without_allow_copy():
    meta_device = State(tensors={"x": torch.zeros(2, device="meta")})
    with pytest.raises(StateError, match="allow_copy_from_cuda=True"):
        meta_device.to_shared_memory()


# ---------------------------------------------------------------------------------------- trajectory


def _states(n: int, batch: int = 2) -> list[State]:
    return [State(tensors={"latent": torch.full((batch, 3), float(i))}) for i in range(n)]


def test_trajectory_exposes_length_horizon_batch_and_stacked_state_tensors():
    traj = Trajectory(
        states=_states(4),
        actions=torch.zeros(3, 2, 5),
        rewards=torch.zeros(3, 2),
        values=torch.zeros(4, 2),
        continues=torch.ones(3, 2),
    )
    assert len(traj) == 4 and traj.horizon == 3 and traj.batch_size == 2
    stacked = traj.to_tensor("latent")
    assert stacked.shape == (4, 2, 3) and stacked[3, 0, 0].item() == 3.0
    assert traj.rewards.shape == (3, 2) and traj.continues.shape == (3, 2)
    assert len(traj.detach().states) == 4 and traj.to("cpu").actions.shape == (3, 2, 5)
    with pytest.raises(KeyError, match="missing"):
        traj.to_tensor("missing")


def test_deferred_trajectory_produces_each_field_once_on_its_first_read():
    calls = []
    states, rewards = _states(4), torch.zeros(3, 2)

    def producer(name, value):
        def produce():
            calls.append(name)
            return value

        return produce

    traj = DeferredTrajectory.deferred(
        actions=torch.zeros(3, 2, 5),
        states=producer("states", states),
        rewards=producer("rewards", rewards),
        continues=producer("continues", None),
    )
    assert isinstance(traj, Trajectory) and traj.horizon == 3 and calls == []
    assert traj.rewards is rewards and traj.rewards is rewards and calls == ["rewards"]
    assert traj.states is states and len(traj) == 4 and traj.batch_size == 2 and calls == ["rewards", "states"]
    assert traj.continues is None and traj.values is None and len(calls) == 3
    traj.rewards = torch.ones(3, 2)  # fields stay assignable
    assert float(traj.rewards.sum()) == 6.0


def test_deferred_trajectory_copies_as_a_plain_trajectory_and_replaces_as_a_validated_one():
    import copy
    import dataclasses
    import pickle

    traj = DeferredTrajectory.deferred(
        actions=torch.zeros(2, 2, 1),
        states=lambda: _states(3),
        rewards=lambda: torch.ones(2, 2),
        continues=lambda: None,
    )
    for clone in (pickle.loads(pickle.dumps(traj)), copy.copy(traj), copy.deepcopy(traj), traj.detach()):
        assert type(clone) is Trajectory and len(clone) == 3 and torch.equal(clone.rewards, torch.ones(2, 2))
    assert len(dataclasses.replace(traj, rewards=None).states) == 3
    with pytest.raises(StateError, match="Rewards length"):
        dataclasses.replace(traj, rewards=torch.ones(5, 2))


TRAJECTORY_ERRORS = {
    "no states": (dict(states=[], actions=torch.zeros(0, 2, 1)), "at least one state"),
    "states != actions + 1": (dict(states=_states(3), actions=torch.zeros(3, 2, 1)), "3 states but 3 actions"),
    "states disagree on batch": (
        dict(states=_states(1) + _states(1, batch=3), actions=torch.zeros(1, 2, 1)),
        "Inconsistent batch size",
    ),
    "actions batch axis": (dict(states=_states(2), actions=torch.zeros(1, 5, 1)), "batch=2"),
    "rewards length": (dict(states=_states(3), actions=torch.zeros(2, 2, 1), rewards=torch.zeros(3, 2)), "Rewards"),
    "values length": (dict(states=_states(3), actions=torch.zeros(2, 2, 1), values=torch.zeros(2, 2)), "Values"),
    "continues length": (
        dict(states=_states(3), actions=torch.zeros(2, 2, 1), continues=torch.zeros(1, 2)),
        "Continues",
    ),
}


@pytest.mark.parametrize("case", sorted(TRAJECTORY_ERRORS))
def test_trajectory_invariant_violations_raise_state_error(case):
    kwargs, message = TRAJECTORY_ERRORS[case]
    with pytest.raises(StateError, match=message):
        Trajectory(**kwargs)


@posix_only
def test_shared_memory_handles_scalar_and_empty_tensors():
    descriptor = State(tensors={"s": torch.tensor(1.5), "e": torch.zeros(0, 4, dtype=torch.int64)}).to_shared_memory()
    try:
        attached = State.from_shared_memory(descriptor)
        assert attached.tensors["s"].shape == () and attached.tensors["s"].item() == 1.5
        assert attached.tensors["e"].shape == (0, 4) and attached.tensors["e"].dtype == torch.int64
        attached.close_shared_memory(unlink=True)
    finally:
        State.unlink_shared_memory(descriptor)
