"""The ``worldflux`` command line through typer's runner and as real subprocesses: init -> train -> resume on
random replay and on a real gymnasium environment, the degraded path, exit codes, and the online path
(through a test double of ``train_online`` here, and through the real one where it exists)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import worldflux.training as training
from worldflux.cli import app
from worldflux.training.checkpoint import read_checkpoint_metadata

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()
# One small shape for every run here (CartPole: obs (4,), 2 actions), so the train step compiles once.
SMALL = ["--model", "tdmpc2:ci", "--no-dashboard"]


def _invoke(*args: str) -> object:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


def _shrink(project: Path, **sections: dict[str, object]) -> None:
    """Rewrite keys of worldflux.toml (text edit keeps the scaffold's comments)."""
    lines = (project / "worldflux.toml").read_text().splitlines()
    section = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key = line.split("=", 1)[0].strip()
        if key and key in sections.get(section, {}):
            lines[i] = f"{key} = {json.dumps(sections[section][key])}"
    (project / "worldflux.toml").write_text("\n".join(lines) + "\n")


FAST = {"training": {"batch_size": 8, "sequence_length": 8, "log_interval": 10, "save_interval": 1000},
        "architecture": {"obs_shape": [4], "action_dim": 2},
        "data": {"num_episodes": 12, "episode_length": 32, "buffer_capacity": 2000}}


def _subprocess_env() -> dict[str, str]:
    cache = os.environ.get("WORLDFLUX_TEST_JAX_CACHE") or os.path.join(tempfile.gettempdir(),
                                                                        "worldflux-jax-test-cache")
    return {**os.environ, "PYTHONPATH": str(REPO), "JAX_COMPILATION_CACHE_DIR": cache}


@pytest.fixture(scope="module")
def random_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A random-replay project trained for 20 steps by a real `python -m worldflux train` process."""
    project = tmp_path_factory.mktemp("cli") / "rnd"
    result = _invoke("init", str(project), "--source", "random", "--steps", "20", *SMALL)
    assert result.exit_code == 0, result.output
    _shrink(project, **FAST)
    process = subprocess.run([sys.executable, "-m", "worldflux", "train"], capture_output=True, text=True,
                             timeout=600, env=_subprocess_env(), cwd=project)
    assert process.returncode == 0, process.stderr[-3000:]
    return project, process


def test_init_writes_the_project_and_refuses_to_overwrite(random_project) -> None:
    random_project, _ = random_project
    assert {p.name for p in random_project.iterdir()} >= {"worldflux.toml", "dataset.py", "local_dashboard.py",
                                                          "inference.py", "outputs"}
    result = _invoke("init", str(random_project), "--source", "random")
    assert result.exit_code == 2 and "--force" in result.output
    result = _invoke("config", "check", str(random_project / "worldflux.toml"))
    assert result.exit_code == 0 and "valid" in result.output


def test_train_on_random_replay_leaves_outputs(random_project) -> None:
    random_project, _ = random_project
    out = random_project / "outputs"
    names = {p.name for p in out.iterdir()}
    assert {"run_manifest.json", "checkpoint_final.pt", "model", "training_curves.png", "dashboard.json"} <= names
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["data_mode"] == "random_replay" and manifest["degraded_modes"] == []
    assert manifest["global_step"] == 20
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dashboard = json.loads((out / "dashboard.json").read_text())
    assert dashboard["phase"] == "done" and dashboard["losses"]["loss"]["x"][-1] == 20
    assert dashboard["imagination"]["kind"] == "series"


def test_resume_continues_from_the_checkpoint(random_project) -> None:
    random_project, _ = random_project
    result = _invoke("train", "--config", str(random_project / "worldflux.toml"), "--steps", "30",
                     "--resume", "outputs/checkpoint_final.pt")
    assert result.exit_code == 0, result.output
    final = random_project / "outputs" / "checkpoint_final.pt"
    assert read_checkpoint_metadata(final)["global_step"] == 30
    assert "30 train steps" in result.output
    result = _invoke("train", "--config", str(random_project / "worldflux.toml"), "--resume", "outputs/nope.pt")
    assert result.exit_code == 2 and "--resume" in result.output


def test_inference_helper_loads_the_trained_model(random_project, monkeypatch: pytest.MonkeyPatch) -> None:
    random_project, _ = random_project
    monkeypatch.chdir(random_project)
    monkeypatch.syspath_prepend(str(random_project))
    import importlib

    inference = importlib.import_module("inference")
    trajectory = inference.main("outputs/model")
    assert tuple(trajectory.rewards.shape) == (15, 1)
    sys.modules.pop("inference", None)


def test_verify_quick_checks_the_project_model(random_project) -> None:
    random_project, _ = random_project
    result = _invoke("verify", "--quick", "--config", str(random_project / "worldflux.toml"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "tdmpc2:ci: trains" in text and "round trip" in text and "FAIL" not in text


def test_gym_env_with_random_policy_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "cartpole"
    result = _invoke("init", str(project), "--env", "CartPole-v1", "--no-online", "--steps", "20", *SMALL)
    assert result.exit_code == 0, result.output
    toml = (project / "worldflux.toml").read_text()
    assert 'gym_env = "CartPole-v1"' in toml and "obs_shape = [4]" in toml and "action_dim = 2" in toml
    _shrink(project, training=FAST["training"], data=FAST["data"])
    with (project / "dataset.py").open("a") as handle:  # the project's helpers are what train uses
        handle.write(
            "\n_build = build_replay_buffer\n\n\n"
            "def build_replay_buffer(config, obs_shape, action_dim, seed, env=None):\n"
            "    (config.root / 'dataset_used').write_text(str(env is not None))\n"
            "    return _build(config, obs_shape, action_dim, seed, env=env)\n"
        )
    with (project / "local_dashboard.py").open("a") as handle:
        handle.write(
            "\n_create = create_dashboard\n\n\n"
            "def create_dashboard(config, state):\n"
            "    state.set_info(custom='from local_dashboard.py')\n"
            "    return _create(config, state)\n"
        )
    result = _invoke("train", "--config", str(project / "worldflux.toml"))
    assert result.exit_code == 0, result.output
    out = project / "outputs"
    assert (project / "dataset_used").read_text() == "True"
    assert json.loads((out / "dashboard.json").read_text())["info"]["custom"] == "from local_dashboard.py"
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["data_mode"] == "env_random_policy_replay" and manifest["degraded_modes"] == []
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 12 and all(e["length"] >= 1 for e in episodes)
    assert episodes[-1]["env_steps"] == sum(e["length"] for e in episodes)

    # eval with the trained model, through an agent double (make_agent comes with issue 14)
    import types

    import numpy as np

    class _Agent:
        def act(self, obs, agent_state, reset_mask, explore=True):
            assert obs.shape == (1, 4) and not explore
            count = 0 if agent_state is None else agent_state
            return np.eye(2, dtype=np.float32)[[count % 2]], count + 1

    agents = types.ModuleType("worldflux.agents")
    agents.make_agent = lambda model, **kw: _Agent()
    monkeypatch.setitem(sys.modules, "worldflux.agents", agents)
    result = _invoke("eval", "--config", str(project / "worldflux.toml"), "--checkpoint", "outputs/model",
                     "--episodes", "2")
    assert result.exit_code == 0, result.output
    assert "episode 1: return" in result.output and "mean return over 2 episodes" in result.output
    result = _invoke("eval", "--config", str(project / "worldflux.toml"), "--checkpoint",
                     "outputs/checkpoint_final.pt", "--episodes", "1")
    assert result.exit_code == 0, result.output
    result = _invoke("eval", "--config", str(project / "worldflux.toml"), "--checkpoint", "outputs/missing")
    assert result.exit_code == 2 and "--checkpoint" in result.output


def test_unknown_env_stops_with_the_cause_unless_fallback_is_allowed(tmp_path: Path) -> None:
    project = tmp_path / "degraded"
    assert _invoke("init", str(project), "--source", "random", "--steps", "20", *SMALL).exit_code == 0
    _shrink(project, **FAST)
    _shrink(project, data={"source": "gym", "gym_env": "NoSuchEnv-v9"})
    result = _invoke("train", "--config", str(project / "worldflux.toml"))
    assert result.exit_code == 2
    assert "NoSuchEnv-v9" in result.output and "fallback_to_random" in result.output
    assert not (project / "outputs" / "run_manifest.json").exists()

    text = (project / "worldflux.toml").read_text().replace("fallback_to_random = false", "fallback_to_random = true")
    (project / "worldflux.toml").write_text(text)
    result = _invoke("train", "--config", str(project / "worldflux.toml"))
    assert result.exit_code == 0, result.output
    assert "falling back to random replay" in result.output
    manifest = json.loads((project / "outputs" / "run_manifest.json").read_text())
    assert manifest["data_mode"] == "random_replay"
    assert manifest["degraded_modes"] == ["env_collection_unavailable", "random_replay_fallback"]


def test_online_path_drives_train_online_and_the_dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's wiring of [online_collection] and [visualization]/[gameplay] into train_online's contract,
    checked with the test double (the real train_online is exercised by the tests below)."""
    import online_double

    monkeypatch.setattr(training, "train_online", online_double.train_online, raising=False)
    project = tmp_path / "online"
    result = _invoke("init", str(project), "--env", "CartPole-v1", "--steps", "120", "--model", "tdmpc2:ci",
                     "--port", "0")
    assert result.exit_code == 0, result.output
    _shrink(project, training=FAST["training"],
            online_collection={"warmup_transitions": 40, "collect_steps_per_update": 40, "max_episode_steps": 50})
    result = _invoke("train", "--config", str(project / "worldflux.toml"), "--exit-when-done")
    assert result.exit_code == 0, result.output
    assert "dashboard: http://127.0.0.1:" in result.output
    call = online_double.CALLS[-1]
    assert call["total_env_steps"] == 120 and call["warmup_transitions"] == 40
    assert call["collect_steps_per_update"] == 40 and call["max_episode_steps"] == 50
    out = project / "outputs"
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["data_mode"] == "online_env_collection"
    dashboard = json.loads((out / "dashboard.json").read_text())
    assert dashboard["phase"] == "done" and dashboard["episodes"] >= 2
    assert dashboard["frames_seen"] >= 1 and dashboard["frame"]["width"] > 0  # [gameplay] enabled
    assert dashboard["eval_returns"]["y"] and dashboard["losses"]["loss"]["y"]
    assert (out / "episodes.jsonl").is_file() and (out / "training_curves.png").is_file()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('model = "tdmpc2:ci"\nmodle = 1\n', "Unknown top-level key 'modle'"),
        ('model = "tdmpc2:ci"\n[trainig]\ntotal_steps = 5\n', "Unknown section [trainig]"),
        ('model = "tdmpc2:ci"\n[training]\ntotal_step = 5\n', "Unknown key 'training.total_step'"),
        ('model = "tdmpc2:ci"\n[training]\ntotal_steps = "many"\n', "training.total_steps must be an integer"),
        ('model = "tdmpc2:ci"\n[training]\nlearning_rate = 0\n', "training.learning_rate must be > 0"),
        ('model = "tdmpc2:ci"\n[data]\nsource = "disk"\n', "data.source must be one of ['random', 'gym']"),
        ('model = "tdmpc2:ci"\n[visualization]\nhost = "0.0.0.0"\n', "visualization.host must be one of"),
        ('model = "jepa:base"\n', "only accepts DreamerV3 / TD-MPC2"),
        ('model = "tdmpc2:ci"\n[data]\nsource = "gym"\n', "data.gym_env is empty"),
        ('model = "tdmpc2:ci"\n[training\n', "not valid TOML"),
    ],
)
def test_bad_toml_exits_2_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "worldflux.toml"
    path.write_text(toml)
    result = _invoke("train", "--config", str(path))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_init_prompts_in_a_terminal_without_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app_module = sys.modules["worldflux.cli.app"]  # (the package's `app` attribute is the Typer object)
    monkeypatch.setattr(app_module, "_interactive", lambda: True)
    project = tmp_path / "asked"
    result = runner.invoke(app, ["init", str(project)], input="gym\nCartPole-v1\ndreamer:ci\n")
    assert result.exit_code == 0, result.output
    assert "gymnasium environment id" in result.output
    from worldflux.config_loader import load_config

    config = load_config(project)
    assert config.env_id == "CartPole-v1" and config.model == "dreamer:ci" and config.family == "dreamer"
    assert config["architecture"]["action_dim"] == 2 and config["online_collection"]["enabled"] is True


def test_usage_errors_and_missing_config_exit_2(tmp_path: Path) -> None:
    assert _invoke("train", "--steps", "0").exit_code == 2  # click range check names --steps
    result = _invoke("train", "--config", str(tmp_path / "absent.toml"))
    assert result.exit_code == 2 and "worldflux init" in result.output
    result = _invoke("init", str(tmp_path / "p"), "--env", "NoSuchEnv-v9")
    assert result.exit_code == 2 and "--env" in result.output


def test_info_commands() -> None:
    result = _invoke("models")
    assert result.exit_code == 0 and "tdmpc2:ci" in result.output and "dreamer:ci" in result.output
    result = _invoke("doctor")
    assert result.exit_code == 0 and "jax backend" in result.output
    result = _invoke("verify", "--proof")
    assert result.exit_code == 2 and "--quick" in " ".join(result.output.split())


def test_subprocess_console_entry_points(tmp_path: Path) -> None:
    env = _subprocess_env()
    result = subprocess.run([sys.executable, "-m", "worldflux", "config", "schema"], capture_output=True, text=True,
                            timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) >= {"training", "data", "gameplay", "online_collection", "inference",
                                         "visualization", "verify", "model", "project_name"}
    assert schema["properties"]["training"]["properties"]["total_steps"]["default"] == 100_000
    (tmp_path / "worldflux.toml").write_text('model = "tdmpc2:ci"\n[training]\nbatch = 3\n')
    result = subprocess.run([sys.executable, "-m", "worldflux", "train"], capture_output=True, text=True,
                            timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "training.batch" in result.stderr and "batch_size" in result.stderr


def test_train_as_a_subprocess_prints_metrics_and_no_library_chatter(random_project) -> None:
    _, process = random_project
    assert "Step 10/20 (50.0%) |" in process.stdout and "loss=" in process.stdout  # LoggingCallback, on the console
    assert "dashboard: http" not in process.stdout  # [visualization] enabled = false
    assert "absl" not in process.stderr and "orbax" not in process.stderr.lower(), process.stderr[-3000:]


# ---------------------------------------------------------------------------- with the real train_online


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_init_train_eval_on_a_real_environment(tmp_path: Path, env_id: str) -> None:
    project = tmp_path / env_id
    result = _invoke("init", str(project), "--env", env_id, "--steps", "300", "--model", "tdmpc2:ci", "--port", "0")
    assert result.exit_code == 0, result.output
    _shrink(project, training={"batch_size": 8, "sequence_length": 8},
            online_collection={"warmup_transitions": 100, "collect_steps_per_update": 50, "max_episode_steps": 100})
    config = str(project / "worldflux.toml")
    result = _invoke("train", "--config", config, "--exit-when-done")
    assert result.exit_code == 0, result.output
    out = project / "outputs"
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["data_mode"] == "online_env_collection" and manifest["degraded_modes"] == []
    assert (out / "episodes.jsonl").read_text().strip()
    assert (out / "training_curves.png").is_file()
    result = _invoke("eval", "--config", config, "--checkpoint", "outputs/model", "--episodes", "2")
    assert result.exit_code == 0, result.output
    assert "mean return over 2 episodes" in result.output


def test_online_resume_continues(tmp_path: Path) -> None:
    from worldflux.training.checkpoint import latest_checkpoint

    project = tmp_path / "resume"
    assert _invoke("init", str(project), "--env", "CartPole-v1", "--steps", "200", *SMALL).exit_code == 0
    _shrink(project, training={"batch_size": 8, "sequence_length": 8, "save_interval": 20},
            online_collection={"warmup_transitions": 100, "collect_steps_per_update": 50, "max_episode_steps": 100})
    config = str(project / "worldflux.toml")
    assert _invoke("train", "--config", config).exit_code == 0
    checkpoint = latest_checkpoint(project / "outputs")
    assert checkpoint is not None
    result = _invoke("train", "--config", config, "--steps", "300", "--resume", str(checkpoint))
    assert result.exit_code == 0, result.output
    manifest = json.loads((project / "outputs" / "run_manifest.json").read_text())
    assert manifest["project"]["env_steps"] >= 300

