"""`save_pretrained` / `from_pretrained` (reference §4.2): file layout, exact round trips, the reference parity
fixtures loaded as checkpoint directories and reproduced through the public API, and `CheckpointError`s."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import FIXTURES
from worldflux.core import Batch, CheckpointError
from worldflux.core.config import DreamerV3Config, TDMPC2Config
from worldflux.core.model import WorldModel
from worldflux.models import DreamerV3WorldModel, TDMPC2WorldModel

CASES = ["dreamerv3_ci_vector", "dreamerv3_ci_image", "tdmpc2_ci"]
META_KEYS = {
    "save_format_version",
    "worldflux_version",
    "api_version",
    "model_type",
    "contract_fingerprint",
    "created_at_utc",
}
FORWARD_TOL = {"rtol": 1e-4, "atol": 1e-5}  # the fixtures' documented tolerance (float32 reduction order)


def fixture_directory(case: str, root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A checkpoint directory built from a parity fixture: its config, its `param/*` weights as `model.pt`
    (the reference state dict, TD-MPC2 aliases and target included) and a valid `worldflux_meta.json`."""
    info = json.loads((FIXTURES / f"{case}.json").read_text())
    with np.load(FIXTURES / f"{case}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    directory = root / case
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(info["config"], indent=2))
    state_dict = {k.removeprefix("param/"): torch.from_numpy(v) for k, v in arrays.items() if k.startswith("param/")}
    torch.save(state_dict, directory / "model.pt")
    config = _config(info["config"])
    model_cls = DreamerV3WorldModel if config.model_type == "dreamer" else TDMPC2WorldModel
    meta = {
        "save_format_version": 1,
        "worldflux_version": "0.1.1",
        "api_version": "v0.2",
        "model_type": config.model_type,
        "contract_fingerprint": model_cls.fingerprint_for_config(config),
        "created_at_utc": "2026-01-02T03:04:05Z",
    }
    (directory / "worldflux_meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory, arrays


def _config(data: dict) -> DreamerV3Config | TDMPC2Config:
    return (DreamerV3Config if data["model_type"] == "dreamer" else TDMPC2Config).from_dict(data)


def _close(got: torch.Tensor, expected: np.ndarray) -> bool:
    got = np.asarray(got, np.float64)
    return got.shape == expected.shape and np.allclose(got, expected, **FORWARD_TOL)


@pytest.mark.parametrize("case", CASES)
def test_parity_fixture_directory_loads_and_reproduces_the_reference(case: str, tmp_path: Path) -> None:
    directory, arrays = fixture_directory(case, tmp_path)
    model = WorldModel.from_pretrained(str(directory))
    assert type(model) is (TDMPC2WorldModel if case.startswith("tdmpc2") else DreamerV3WorldModel)
    model.sampling = "mode"  # the fixtures' convention for stochastic categorical draws
    obs = torch.from_numpy(arrays["input/obs"])
    actions = torch.from_numpy(arrays["input/actions"])
    got: dict[str, torch.Tensor] = {}

    encoded = model.encode(obs[:, 0])
    got.update({f"encode/{k}": v for k, v in encoded.tensors.items()})
    prior = model.transition(encoded, actions[:, 0], deterministic=True)
    got.update({f"transition/{k}": v for k, v in prior.tensors.items()})
    if "update/deter" in arrays:
        posterior = model.update(encoded, actions[:, 0], obs[:, 1])
        got.update({f"update/{k}": v for k, v in posterior.tensors.items()})
    got.update({f"decode/{k}": v for k, v in model.decode(prior).predictions.items()})
    trajectory = model.rollout(encoded, actions.transpose(0, 1), deterministic=True)
    for i, state in enumerate(trajectory.states):
        got.update({f"rollout/state{i}/{k}": v for k, v in state.tensors.items()})
    got["rollout/rewards"] = trajectory.rewards
    got["rollout/continues"] = trajectory.continues
    batch = Batch(
        obs=obs,
        actions=actions,
        rewards=torch.from_numpy(arrays["input/rewards"]),
        terminations=torch.from_numpy(arrays["input/terminations"]),
    )
    loss = model.loss(batch)
    got["loss/total"] = loss.loss
    got.update({f"loss/{k}": v for k, v in loss.components.items()})

    groups = ("encode/", "transition/", "update/", "decode/", "rollout/", "loss/")
    expected_keys = {k for k in arrays if k.startswith(groups)}
    assert set(got) == expected_keys, "every reference output must be produced, and nothing else"
    mismatched = sorted(k for k in expected_keys if not _close(got[k], arrays[k]))
    assert not mismatched, mismatched


# ----------------------------------------------------------------------------------------- round trips


@pytest.fixture(scope="module")
def dreamer() -> DreamerV3WorldModel:
    return DreamerV3WorldModel(DreamerV3Config.from_size("ci", obs_shape=(8,), action_dim=2), seed=3)


@pytest.fixture(scope="module")
def tdmpc2() -> TDMPC2WorldModel:
    model = TDMPC2WorldModel(TDMPC2Config.from_size("ci", obs_shape=(10,), action_dim=3), seed=4)
    import jax

    model.params = jax.tree.map(lambda x: x + 0.5, model.params)
    model.on_after_optimizer_step()  # the target now differs from the online ensemble
    return model


@pytest.fixture(scope="module")
def saved_dreamer(dreamer: DreamerV3WorldModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("saved") / "dreamer"
    dreamer.save_pretrained(str(directory))
    return directory


def test_save_pretrained_writes_the_reference_layout(dreamer: DreamerV3WorldModel, saved_dreamer: Path) -> None:
    assert sorted(os.listdir(saved_dreamer)) == [
        "config.json",
        "model.pt",
        "model.safetensors",
        "worldflux_meta.json",
    ]
    assert json.loads((saved_dreamer / "config.json").read_text()) == dreamer.config.to_dict()
    assert (saved_dreamer / "config.json").read_text() == json.dumps(dreamer.config.to_dict(), indent=2)
    text = (saved_dreamer / "worldflux_meta.json").read_text()
    meta = json.loads(text)
    assert set(meta) == META_KEYS | {"weights_sha256"} and text == json.dumps(meta, indent=2, sort_keys=True) + "\n"
    assert meta["save_format_version"] == 1 and meta["model_type"] == "dreamer" and meta["api_version"] == "v0.2"
    assert meta["contract_fingerprint"] == dreamer.contract_fingerprint()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["created_at_utc"])
    weights = torch.load(saved_dreamer / "model.pt", weights_only=True)
    assert isinstance(weights, dict)
    assert list(weights) == list(dreamer.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in weights.values())


def test_dreamer_round_trip_is_exact(dreamer: DreamerV3WorldModel, saved_dreamer: Path) -> None:
    loaded = DreamerV3WorldModel.from_pretrained(str(saved_dreamer))
    original = dreamer.state_dict()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in original.items())
    obs = torch.randn(3, 8)
    with dreamer.sampling_mode("mode"), loaded.sampling_mode("mode"):
        a, b = dreamer.encode(obs), loaded.encode(obs)
        assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
        assert torch.equal(dreamer.decode(a).predictions["obs"], loaded.decode(b).predictions["obs"])


def test_tdmpc2_round_trip_keeps_aliases_and_the_target(tdmpc2: TDMPC2WorldModel, tmp_path: Path) -> None:
    tdmpc2.save_pretrained(str(tmp_path / "m"))
    weights = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert "encoder.0.weight" in weights and "_target_q_ensemble.q_networks.1.mlp.6.bias" in weights
    assert weights["encoder.0.weight"].data_ptr() == weights["_encoder.mlp.0.weight"].data_ptr()  # stored once
    loaded = TDMPC2WorldModel.from_pretrained(str(tmp_path / "m"))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in tdmpc2.state_dict().items())
    batch = Batch(obs=torch.randn(2, 4, 10), actions=torch.rand(2, 4, 3), rewards=torch.randn(2, 4))
    assert tdmpc2.loss(batch).metrics == loaded.loss(batch).metrics  # the td term reads the target


def test_api_version_is_saved_and_restored(dreamer: DreamerV3WorldModel, tmp_path: Path) -> None:
    model = DreamerV3WorldModel(dreamer.config, seed=0, api_version="v3")
    model.save_pretrained(str(tmp_path / "v3"))
    assert json.loads((tmp_path / "v3" / "worldflux_meta.json").read_text())["api_version"] == "v3"
    assert DreamerV3WorldModel.from_pretrained(str(tmp_path / "v3"))._get_api_version() == "v3"


def test_save_is_atomic_and_overwrites(dreamer: DreamerV3WorldModel, tmp_path: Path) -> None:
    dreamer.save_pretrained(str(tmp_path))
    dreamer.save_pretrained(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [  # no temp files
        "config.json",
        "model.pt",
        "model.safetensors",
        "worldflux_meta.json",
    ]


def test_from_pretrained_checks_the_class(saved_dreamer: Path) -> None:
    assert isinstance(WorldModel.from_pretrained(str(saved_dreamer)), DreamerV3WorldModel)
    with pytest.raises(TypeError, match="TDMPC2WorldModel"):
        TDMPC2WorldModel.from_pretrained(str(saved_dreamer))


def test_a_directory_without_meta_loads_like_an_older_reference_save(saved_dreamer: Path, tmp_path: Path) -> None:
    directory = shutil.copytree(saved_dreamer, tmp_path / "old")
    (directory / "worldflux_meta.json").unlink()
    assert isinstance(WorldModel.from_pretrained(str(directory)), DreamerV3WorldModel)


def test_the_factory_loads_saved_directories(saved_dreamer: Path) -> None:
    from worldflux import create_world_model

    model = create_world_model(str(saved_dreamer))
    assert isinstance(model, DreamerV3WorldModel) and model._get_api_version() == "v3"


def test_model_ids_build_fresh_models() -> None:
    model = DreamerV3WorldModel.from_pretrained("dreamer:ci", obs_shape=(8,), action_dim=2)
    assert isinstance(model, DreamerV3WorldModel) and model.config.model_name == "ci"
    with pytest.raises(CheckpointError, match="not an existing directory"):
        WorldModel.from_pretrained("no-such-model")


# ----------------------------------------------------------------------------------------- CheckpointError


def _corrupt(saved: Path, tmp_path: Path, edit) -> Path:
    """A copy of ``saved`` in the reference layout (model.pt only, no weights_sha256), then ``edit``ed."""
    directory = shutil.copytree(saved, tmp_path / "broken")
    (directory / "model.safetensors").unlink()
    _edit_json("worldflux_meta.json", weights_sha256=None)(directory)
    edit(directory)
    return directory


def _edit_json(name: str, **changes):
    def edit(directory: Path) -> None:
        data = json.loads((directory / name).read_text())
        data.update(changes)
        (directory / name).write_text(json.dumps(data))

    return edit


def _edit_weights(change):
    def edit(directory: Path) -> None:
        weights = torch.load(directory / "model.pt", weights_only=True)
        change(weights)
        torch.save(weights, directory / "model.pt")

    return edit


def _truncate(directory: Path) -> None:
    data = (directory / "model.pt").read_bytes()
    (directory / "model.pt").write_bytes(data[: len(data) // 2])


CORRUPTIONS = {
    "garbled model.pt": (lambda d: (d / "model.pt").write_bytes(b"not a torch file"), "model.pt"),
    "truncated model.pt": (_truncate, "model.pt"),
    "model.pt without a dict": (lambda d: torch.save([torch.zeros(1)], d / "model.pt"), "expected a state dict"),
    "missing model.pt": (lambda d: (d / "model.pt").unlink(), "nor model.pt found"),
    "missing tensor": (_edit_weights(lambda w: w.pop("rssm.gru.weight_hh")), r"missing keys \['rssm.gru.weight_hh'\]"),
    "unexpected tensor": (_edit_weights(lambda w: w.update(extra=torch.zeros(2))), r"unexpected keys \['extra'\]"),
    "mis-shaped tensor": (
        _edit_weights(lambda w: w.update({"decoder.mlp.3.bias": torch.zeros(3)})),
        r"decoder.mlp.3.bias: expected shape \(8,\), got \(3,\)",
    ),
    "wrong model_type": (_edit_json("worldflux_meta.json", model_type="tdmpc2"), "model_type mismatch"),
    "wrong fingerprint": (_edit_json("worldflux_meta.json", contract_fingerprint="0" * 64), "contract_fingerprint"),
    "future save format": (_edit_json("worldflux_meta.json", save_format_version=2), "save_format_version"),
    "garbled meta": (lambda d: (d / "worldflux_meta.json").write_text("{oops"), "metadata"),
    "garbled config": (lambda d: (d / "config.json").write_text("[1, 2"), "config"),
    "config without model_type": (_edit_json("config.json", model_type=""), "model_type"),
    "unknown model_type": (_edit_json("config.json", model_type="foo"), "not registered"),
    "invalid config value": (_edit_json("config.json", hidden_dim=-1), "hidden_dim"),
    "missing config.json": (lambda d: (d / "config.json").unlink(), "config.json not found"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_or_incompatible_directories_raise_checkpoint_error(
    corruption: str, saved_dreamer: Path, tmp_path: Path
) -> None:
    edit, message = CORRUPTIONS[corruption]
    directory = _corrupt(saved_dreamer, tmp_path, edit)
    with pytest.raises(CheckpointError, match=message) as info:
        WorldModel.from_pretrained(str(directory))
    assert str(directory) in str(info.value), "the error must name the checkpoint path"
