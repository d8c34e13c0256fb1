"""The rest of the reference import surface: plugin manifests, the rollout engine, deprecated top-level names,
``FSDPTrainer``, ``worldflux.execution``, ``worldflux.verify`` and ``worldflux.cloud``."""

from __future__ import annotations

import importlib
import json
import os
import stat
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

import worldflux
from worldflux.core import ConfigurationError, PluginManifest, State
from worldflux.core.interfaces import RolloutEngine, RolloutExecutor
from worldflux.core.registry import WorldModelRegistry
from worldflux.core.rollout import TransitionDecodeRollout

# ---------------------------------------------------------------------------------------------- names


def test_deprecated_top_level_names_warn_with_the_full_path():
    for name, path in (("PluginManifest", "worldflux.core.registry.PluginManifest"),
                       ("RolloutEngine", "worldflux.core.interfaces.RolloutEngine")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = getattr(worldflux, name)
        assert value is getattr(importlib.import_module(path.rsplit(".", 1)[0]), name)
        assert [str(w.message) for w in caught] == [
            f"Importing '{name}' from 'worldflux' is deprecated. Use '{path}' instead. Will be removed in v0.2.0."
        ]
        assert name not in worldflux.__all__
    assert "execution" in worldflux.__all__ and "resolve_backend_execution" in worldflux.__all__
    assert "PluginManifest" in importlib.import_module("worldflux.core").__all__
    for sub in ("execution", "verify", "cloud"):
        assert getattr(worldflux, sub).__name__ == f"worldflux.{sub}"


def test_fsdp_trainer_is_only_in_distributed_and_refuses_with_a_pointer():
    with pytest.raises(ImportError):
        from worldflux.training import FSDPTrainer  # noqa: F401
    from worldflux.training.distributed import FSDPTrainer

    with pytest.raises(ConfigurationError, match="planned.*DDPTrainer"):
        FSDPTrainer(object())


# ---------------------------------------------------------------------------------------------- plugins


class _EntryPoint:
    def __init__(self, name: str, group: str, loader) -> None:
        self.name, self.group, self._loader = name, group, loader

    def load(self):
        return self._loader


class _EntryPoints(list):
    def select(self, *, group: str):
        return [e for e in self if e.group == group]


def test_plugin_manifest_registration_and_version_ranges():
    from worldflux.core.plugins import version_matches

    assert PluginManifest() == PluginManifest("0.x-experimental", ">=0.1.0,<0.2.0", (), True)
    WorldModelRegistry.register_plugin_manifest("acme", {"capabilities": ["x"], "worldflux_version_range": ">=0.1"})
    try:
        assert WorldModelRegistry.list_plugin_manifests()["acme"].capabilities == ("x",)
    finally:
        assert WorldModelRegistry.unregister_plugin_manifest("acme")
    with pytest.raises(ConfigurationError, match="EXPERIMENTAL_PLUGIN_INCOMPATIBLE"):
        WorldModelRegistry.register_plugin_manifest("old", PluginManifest(worldflux_version_range="<0.0.1"))
    with pytest.raises(ConfigurationError, match="experimental-only"):
        WorldModelRegistry.register_plugin_manifest("stable", PluginManifest(experimental=False))
    with pytest.raises(ConfigurationError, match="Invalid plugin worldflux_version_range"):
        WorldModelRegistry.register_plugin_manifest("bad", PluginManifest(worldflux_version_range="about 1"))
    assert "old" not in WorldModelRegistry.list_plugin_manifests()
    assert version_matches(">=0.1.0,<0.2.0", "0.1.1.dev0") and not version_matches(">=0.1.0,<0.2.0", "0.2")
    assert version_matches("~=0.1.2", "0.1.9") and not version_matches("~=0.1.2", "0.2.0")
    assert version_matches("==0.1.*", "0.1.7") and version_matches("!=0.1.3", "0.1.4")


def test_entry_point_plugins_register_models_and_manifests(monkeypatch):
    import torch

    from worldflux.core.model import WorldModel
    from worldflux.core.output import LossOutput

    def register_models():
        class PluginModel(WorldModel):
            model_type = "plugin_model_a"

            def loss(self, batch):
                return LossOutput(loss=torch.zeros(()))

        WorldModelRegistry.register_alias("plugin-a", "plugin_model_a:base")
        return {"capabilities": ["models"]}

    entries = _EntryPoints([_EntryPoint("acme_models", "worldflux.models", register_models),
                            _EntryPoint("acme_components", "worldflux.components", lambda: None)])
    monkeypatch.setattr("worldflux.core.registry.importlib_metadata.entry_points", lambda: entries)
    try:
        WorldModelRegistry.load_entrypoint_plugins(force=True)
        assert "plugin_model_a" in WorldModelRegistry.list_models()
        manifests = WorldModelRegistry.list_plugin_manifests()
        assert manifests["acme_models"].capabilities == ("models",)
        assert manifests["acme_components"].capabilities == ("legacy-no-manifest",)
        assert WorldModelRegistry.resolve_alias("plugin-a") == "plugin_model_a:base"
        bad = _EntryPoints([_EntryPoint("acme_bad", "worldflux.models",
                                        lambda: PluginManifest(worldflux_version_range="<0.0.1"))])
        monkeypatch.setattr("worldflux.core.registry.importlib_metadata.entry_points", lambda: bad)
        with pytest.raises(ConfigurationError, match="EXPERIMENTAL_PLUGIN_INCOMPATIBLE"):
            WorldModelRegistry.load_entrypoint_plugins(force=True)
        broken = _EntryPoints([_EntryPoint("acme_broken", "worldflux.components", lambda: 1 / 0)])
        monkeypatch.setattr("worldflux.core.registry.importlib_metadata.entry_points", lambda: broken)
        with pytest.warns(RuntimeWarning, match="'acme_broken' from group 'worldflux.components'"):
            WorldModelRegistry.load_entrypoint_plugins(force=True)
        assert "acme_broken" not in WorldModelRegistry.list_plugin_manifests()
    finally:
        for name in ("acme_models", "acme_components", "acme_bad", "acme_broken"):
            WorldModelRegistry.unregister_plugin_manifest(name)
        WorldModelRegistry.unregister_alias("plugin-a")
        WorldModelRegistry.unregister("plugin_model_a")


def test_registered_components_as_factory_overrides():
    from worldflux.core.interfaces import ComponentSpec

    class ZeroConditioner:
        def __init__(self, model):
            self.model = model

        def condition(self, state, action, conditions=None):
            return {}

    WorldModelRegistry.register_component("acme.zero", ZeroConditioner,
                                          ComponentSpec(name="zero", component_type="action_conditioner"))
    try:
        assert WorldModelRegistry.list_components()["acme.zero"].name == "zero"
        model = worldflux.create_world_model("tdmpc2:ci", obs_shape=(3,), action_dim=2,
                                             component_overrides={"action_conditioner": "acme.zero"})
        assert isinstance(model.action_conditioner, ZeroConditioner) and model.action_conditioner.model is model
        with pytest.raises(ConfigurationError, match="has type 'action_conditioner', expected 'decoder'"):
            worldflux.create_world_model("tdmpc2:ci", obs_shape=(3,), action_dim=2,
                                         component_overrides={"decoder": "acme.zero"})
        with pytest.raises(ConfigurationError, match=r"Unknown component id 'acme.nope'.*acme.zero"):
            WorldModelRegistry.get_component("acme.nope")
        with pytest.raises(ConfigurationError, match="already registered"):
            WorldModelRegistry.register_component("acme.zero", dict, ComponentSpec(name="x", component_type="decoder"))
    finally:
        assert WorldModelRegistry.unregister_component("acme.zero")
    WorldModelRegistry.register_catalog_entry("acme:tiny", {"description": "d", "params": "1", "type": "acme",
                                                            "default_obs": "vector", "maturity": "experimental"})
    try:
        assert "acme:tiny" in WorldModelRegistry.list_catalog()
    finally:
        assert WorldModelRegistry.unregister_catalog_entry("acme:tiny")


# ---------------------------------------------------------------------------------------------- rollout engine


class _Linear(torch.nn.Module):
    def transition(self, state, action, conditions=None, deterministic=False):
        return State(tensors={"z": state.tensors["z"] + action})

    def decode(self, state, conditions=None):
        from worldflux.core import ModelOutput

        return ModelOutput(predictions={"reward": state.tensors["z"].sum(-1, keepdim=True)}, state=state)


def test_rollout_engine_over_transition_and_decode():
    engine = TransitionDecodeRollout()
    assert isinstance(engine, RolloutEngine) and isinstance(engine, RolloutExecutor)
    assert not isinstance(object(), RolloutEngine)
    state = State(tensors={"z": torch.zeros(2, 3)})
    actions = torch.ones(4, 2, 3)
    trajectory = engine.rollout(_Linear(), state, actions)
    assert len(trajectory.states) == 5 and torch.equal(trajectory.states[-1].tensors["z"], torch.full((2, 3), 4.0))
    assert torch.equal(trajectory.rewards, torch.tensor([[3.0, 3.0], [6.0, 6.0], [9.0, 9.0], [12.0, 12.0]]))
    assert trajectory.continues is None and engine.rollout(_Linear(), state, None).horizon == 0
    with pytest.raises(ValueError, match="autoregressive"):
        engine.rollout(_Linear(), state, actions, mode="tree")
    # as a WorldModel's executor, and on a bundled JAX model (same numbers as its own rollout)
    model = worldflux.create_world_model("tdmpc2:ci", obs_shape=(5,), action_dim=2)
    start = model.encode(torch.randn(3, 5))
    acts = torch.rand(4, 3, 2) * 2 - 1
    native = model.rollout(start, acts)
    model.rollout_executor = engine
    via_engine = model.rollout(start, acts)
    assert torch.allclose(native.rewards, via_engine.rewards, atol=1e-5)


# ---------------------------------------------------------------------------------------------- execution


def test_resolve_backend_execution():
    from worldflux.execution import backend_name_for, known_backends, resolve_backend_execution
    from worldflux.training import OfficialBackendHandle

    assert resolve_backend_execution("dreamer:ci", None) == "native_torch"
    assert resolve_backend_execution("dreamer:ci", "native_jax") == "native_jax"
    handle = resolve_backend_execution("tdmpc2:ci", " jax ")
    assert isinstance(handle, OfficialBackendHandle) and (handle.backend, handle.model_id) == ("jax", "tdmpc2:ci")
    assert handle.metadata["execution_kind"] == "delegated_job" and backend_name_for(handle) == "jax"
    assert backend_name_for("") == "native_torch" and backend_name_for(object()) == "native_torch"
    with pytest.raises(ConfigurationError, match=r"Unknown backend 'tpu_farm'.*native_torch.*jax"):
        resolve_backend_execution("dreamer:ci", "tpu_farm")
    with pytest.raises(ConfigurationError, match="does not provide"):
        resolve_backend_execution("dreamerv3:official_xl", "official_dreamerv3_jax_subprocess")
    with pytest.raises(ConfigurationError, match="model_id"):
        resolve_backend_execution("", "jax")
    assert set(known_backends()) == {"native_torch", "native_jax", "jax"}


# ---------------------------------------------------------------------------------------------- verify


def test_quick_verify_on_a_saved_model(tmp_path):
    from worldflux.verify import QuickVerifyResult, quick_verify, run_quick_checks

    assert callable(run_quick_checks)
    model = worldflux.create_world_model("tdmpc2:ci", obs_shape=(4,), action_dim=2)
    model.save_pretrained(str(tmp_path / "run" / "model"))
    result = quick_verify(tmp_path / "run", episodes=3, horizon=4)
    assert isinstance(result, QuickVerifyResult) and result.passed and len(result.stats["scores"]) == 3
    assert "no baseline" in result.verdict_reason and result.baseline_mean is None
    mean = result.mean_score
    baselines = tmp_path / "baselines.json"
    table = {"toy": {"mean": mean, "margin_ratio": 0.15}, "hard": {"mean": abs(mean) * 100 + 100}}
    baselines.write_text(json.dumps(table))
    same = quick_verify(tmp_path / "run" / "model", env="toy", episodes=3, horizon=4, baseline_path=baselines)
    assert same.stats["scores"] == result.stats["scores"]  # fixed seeds
    hard = quick_verify(tmp_path / "run", env="hard", episodes=3, horizon=4, baseline_path=baselines)
    assert not hard.passed and "inferior" in hard.verdict_reason and hard.stats["ci_upper_ratio"] > 0.15
    with pytest.raises(FileNotFoundError, match="No saved model"):
        quick_verify(tmp_path / "nothing")
    with pytest.raises(ValueError, match="episodes"):
        quick_verify(tmp_path / "run", episodes=1)


# ---------------------------------------------------------------------------------------------- cloud


class _Api(BaseHTTPRequestHandler):
    seen: list = []

    def _reply(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(("POST", self.path, self.headers.get("Authorization"), data))
        self._reply(200, {"job_id": "j1", "echo": data})

    def do_GET(self):  # noqa: N802
        self.seen.append(("GET", self.path, self.headers.get("Authorization"), None))
        if self.path.startswith("/v1/jobs/j1/logs"):
            self._reply(200, {"logs": ["a", "b"]})
        elif self.path == "/v1/jobs":
            self._reply(200, {"jobs": [{"id": "j1"}, "junk"]})
        elif self.path == "/v1/jobs/j1/artifacts":
            self._reply(200, {"files": ["model.safetensors"]})
        else:
            self._reply(404, {"error": "nope"})

    def do_DELETE(self):  # noqa: N802
        self._reply(200, {"cancelled": True})

    def log_message(self, *args):
        pass


def test_cloud_client_credentials_and_config(tmp_path, monkeypatch):
    from worldflux.cloud import (
        CloudAPIError,
        CloudConfig,
        FlywheelConfig,
        WorldFluxCloudClient,
        credentials_path,
        get_api_key,
    )

    monkeypatch.setenv("WORLDFLUX_HOME", str(tmp_path / "home"))
    assert get_api_key() is None
    server = HTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = WorldFluxCloudClient(base_url=f"http://127.0.0.1:{server.server_port}/", timeout_sec=5)
        client.login(api_key=" secret ")
        assert get_api_key() == "secret" and stat.S_IMODE(os.stat(credentials_path()).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(credentials_path().parent).st_mode) == 0o700
        os.chmod(credentials_path(), 0o644)
        with pytest.warns(UserWarning, match="permissions"):
            assert get_api_key() == "secret"
        os.chmod(credentials_path(), 0o600)
        monkeypatch.setenv("WORLDFLUX_CLOUD_API_URL", client.base_url)
        client = WorldFluxCloudClient.from_env()
        assert client.create_training_job({"model": "tdmpc2:ci"})["echo"] == {"model": "tdmpc2:ci"}
        assert _Api.seen[-1][2] == "Bearer secret"
        assert client.list_jobs() == [{"id": "j1"}] and client.get_job_logs("j1", limit=2) == ["a", "b"]
        assert client.cancel_job("j1") == {"cancelled": True}
        pulled = client.pull_job_artifacts("j1", output_dir=tmp_path / "art")
        assert json.loads(open(pulled["manifest"]).read()) == {"files": ["model.safetensors"]}
        with pytest.raises(CloudAPIError, match="status=404") as info:
            client.request_json("GET", "/v1/missing")
        assert info.value.status == 404
    finally:
        server.shutdown()
    with pytest.raises(CloudAPIError, match="failed"):
        WorldFluxCloudClient(base_url=f"http://127.0.0.1:{server.server_port}", timeout_sec=1).list_jobs()
    with pytest.raises(ValueError, match="http"):
        WorldFluxCloudClient(base_url="ftp://x")
    assert CloudConfig.from_mapping({"gpu_type": "h100", "spot": False}).gpu_type == "h100"
    with pytest.raises(ConfigurationError, match=r"Unknown key\(s\) \['gpus'\] in \[cloud\]"):
        CloudConfig.from_mapping({"gpus": 2})
    with pytest.raises(ConfigurationError, match="timeout_hours"):
        CloudConfig(timeout_hours=0)
    with pytest.raises(ConfigurationError, match="privacy_delta"):
        FlywheelConfig(privacy_delta=1.5)
    assert FlywheelConfig.from_mapping({"opt_in": True}).opt_in


def test_verify_cli_command_uses_the_verify_package():
    import worldflux.cli.verify as cli_verify
    import worldflux.verify.quick as quick

    assert cli_verify.run_quick_checks is quick.run_quick_checks
    assert sys.modules["worldflux.verify"].run_quick_checks is quick.run_quick_checks
