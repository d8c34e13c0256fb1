"""The scale-out benchmarks run as documented (`python benchmarks/X.py`, from any directory) in their quick modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT


def _run(args: list[str], cwd: Path, devices: int = 1) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    env.pop("PYTHONPATH", None)  # the script itself must make the repo importable
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.heavy
def test_gpu_suite_quick_mode_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "suite"
    result = _run(
        [
            str(REPO_ROOT / "benchmarks" / "gpu_suite.py"),
            "--quick",
            "--cases",
            "tdmpc2",
            "--precisions",
            "f32",
            "--steps",
            "2",
            "--torch-steps",
            "1",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.with_suffix(".json").read_text())
    (row,) = data["rows"]
    assert row["model"] == "tdmpc2:ci" and row["bare_ms"] > 0 and row["trainer_ms"] > 0 and row["torch_ms"] > 0
    assert "| tdmpc2:ci |" in out.with_suffix(".md").read_text()


@pytest.mark.heavy
def test_scaling_benchmark_runs_on_simulated_devices(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    result = _run(
        [
            str(REPO_ROOT / "benchmarks" / "scaling.py"),
            "--devices",
            "1,2",
            "--steps",
            "2",
            "--batch",
            "4",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["devices"] for r in rows] == [1, 2] and all(r["traces"] == 1 for r in rows)


def test_learning_benchmark_cases_build_their_models() -> None:
    """Every case of `benchmarks/learning.py` builds a valid model (a renamed or mistyped setting fails here,
    not after a 20-minute run)."""
    from benchmarks.learning import TARGETS, case_setup
    from worldflux import create_world_model

    for case in TARGETS:
        spec = dict(case_setup(case)["model"])
        model = create_world_model(spec.pop("model_id"), **spec)
        assert model.config.action_dim == spec["action_dim"], case
    cartpole = case_setup("cartpole_dreamer")["model"]
    assert (cartpole["replay_critic"], cartpole["imagination_starts"], cartpole["action_type"]) == (0.3, 48, "discrete")
