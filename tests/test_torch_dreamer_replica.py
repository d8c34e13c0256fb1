"""The torch DreamerV3 replica (`benchmarks/torch_dreamer.py`) reproduces the shipped reference fixtures
exactly, and `make_fixture` writes new fixtures in the shipped format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.torch_dreamer import TorchDreamerV3, derive_config, fixture_arrays, make_fixture
from tests.helpers import FIXTURES

FIXTURE_DIR = FIXTURES
CASES = ("dreamerv3_ci_vector", "dreamerv3_ci_image")
FORWARD_TOL = {"rtol": 1e-4, "atol": 1e-5}
GRAD_TOL = {"rtol": 1e-3, "atol": 1e-5}


def _load(case: str) -> tuple[dict[str, np.ndarray], dict]:
    path = FIXTURE_DIR / f"{case}.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads(path.with_suffix(".json").read_text())


def _model_from_fixture(arrays: dict[str, np.ndarray], config: dict) -> TorchDreamerV3:
    model = TorchDreamerV3(config)
    state_dict = {k.removeprefix("param/"): torch.from_numpy(v) for k, v in arrays.items() if k.startswith("param/")}
    state_dict.setdefault("_device_tracker", torch.empty(0))
    model.load_state_dict(state_dict, strict=True)
    return model


def _key_scheme(keys: list[str] | set[str]) -> set[str]:
    """Keys with the rollout state index replaced, so cases with different T share one scheme."""
    return {re.sub(r"^rollout/state\d+/", "rollout/stateN/", k) for k in keys}


@pytest.fixture(scope="module", params=CASES)
def replica_case(request: pytest.FixtureRequest) -> tuple[str, dict, dict, dict]:
    arrays, meta = _load(request.param)
    model = _model_from_fixture(arrays, meta["config"])
    inputs = {k.removeprefix("input/"): v for k, v in arrays.items() if k.startswith("input/")}
    return request.param, arrays, meta, fixture_arrays(model, inputs)


def test_state_dict_layout_matches_the_reference(replica_case) -> None:
    _, arrays, meta, _ = replica_case
    model = TorchDreamerV3(meta["config"])
    params = {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")}
    state_dict = model.state_dict()
    assert set(state_dict) == set(params) | {"_device_tracker"}
    assert list(k for k in state_dict if k != "_device_tracker") == list(params)  # same order too
    for name, value in params.items():
        assert tuple(state_dict[name].shape) == value.shape, name
    np.testing.assert_allclose(state_dict["reward_head.bins"].numpy(), params["reward_head.bins"], atol=1e-5)
    assert sum(p.numel() for p in model.parameters()) == meta["parameter_count"]


def test_replica_reproduces_every_fixture_key(replica_case) -> None:
    case, arrays, _, ours = replica_case
    expected = {k for k in arrays if not k.startswith(("param/", "input/"))}
    assert set(ours) == expected, case
    for key in sorted(expected):
        tol = GRAD_TOL if key.startswith("grad/") else FORWARD_TOL
        assert ours[key].shape == arrays[key].shape, key
        np.testing.assert_allclose(ours[key], arrays[key], err_msg=f"{case}: {key}", **tol)


def test_sampling_modes(replica_case) -> None:
    _, arrays, meta, _ = replica_case
    model = _model_from_fixture(arrays, meta["config"])
    obs = torch.from_numpy(arrays["input/obs"][:, 0])
    for sampling in ("sample", "mode", "argmax"):
        stoch = model.encode(obs, sampling)["stoch"].detach()
        np.testing.assert_allclose(stoch.sum(-1).numpy(), 1.0, atol=1e-6)
        assert set(np.unique(np.round(stoch.numpy(), 5))) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="sampling"):
        model.encode(obs, "bogus")


SMALL = {
    "dreamerv3_ci_vector": {"obs_shape": (7,), "action_dim": 2, "deter_dim": 24, "hidden_dim": 16,
                            "stoch_discrete": 3, "stoch_classes": 5, "kl_free": 0.5},
    "dreamerv3_ci_image": {"obs_shape": (1, 32, 32), "action_dim": 2, "deter_dim": 16, "hidden_dim": 8,
                           "stoch_discrete": 2, "stoch_classes": 3, "cnn_depth": 4},
}


@pytest.mark.parametrize("case", CASES)
def test_make_fixture_writes_the_shipped_format(case: str, tmp_path: Path) -> None:
    shipped, shipped_meta = _load(case)
    small = dict(SMALL[case])
    obs_shape = small.pop("obs_shape")
    config = derive_config(shipped_meta["config"], **small)
    batch, seq = 2, 3
    npz_path = make_fixture(config, obs_shape, batch, seq, seed=0, path_stem=tmp_path / "new_case")
    assert npz_path == tmp_path / "new_case.npz"
    meta = json.loads((tmp_path / "new_case.json").read_text())
    with np.load(npz_path) as data:
        arrays = {k: data[k] for k in data.files}

    # Same metadata fields and key scheme (groups and names) as the shipped fixture.
    assert set(shipped_meta) <= set(meta)
    assert meta["keys"] == sorted(arrays)
    assert (meta["batch_size"], meta["seq_len"], meta["case"]) == (batch, seq, "new_case")
    assert _key_scheme(arrays) == _key_scheme(shipped)
    assert {k for k in arrays if k.startswith("rollout/state")} >= {f"rollout/state{seq}/deter"}
    assert f"rollout/state{seq + 1}/deter" not in arrays

    # The config is a full reference config with consistent derived fields.
    cfg = meta["config"]
    assert set(cfg) == set(shipped_meta["config"])
    assert cfg["obs_shape"] == list(obs_shape)
    assert cfg["observation_modalities"]["obs"]["shape"] == list(obs_shape)
    assert cfg["stoch_dim"] == cfg["stoch_discrete"] * cfg["stoch_classes"]
    assert cfg["action_spec"]["dim"] == cfg["action_dim"] == small["action_dim"]

    # Shapes follow the new dims; the file is self-consistent (reloads and recomputes to the same numbers).
    s, k = small["stoch_discrete"], small["stoch_classes"]
    assert arrays["input/obs"].shape == (batch, seq, *obs_shape)
    assert arrays["encode/stoch"].shape == (batch, s, k)
    assert arrays["decode/obs"].shape == (batch, *obs_shape)
    assert arrays["rollout/rewards"].shape == (seq, batch)
    assert all(v.dtype == np.float32 for v in arrays.values())
    assert set(np.unique(arrays["input/terminations"])) <= {0.0, 1.0}
    model = _model_from_fixture(arrays, cfg)
    assert meta["parameter_count"] == sum(p.numel() for p in model.parameters())
    inputs = {k.removeprefix("input/"): v for k, v in arrays.items() if k.startswith("input/")}
    again = fixture_arrays(model, inputs)
    for key, value in again.items():
        np.testing.assert_allclose(value, arrays[key], rtol=1e-6, atol=1e-7, err_msg=key)
