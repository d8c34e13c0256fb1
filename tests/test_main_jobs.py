"""The README's main job (the newcomer flow), the API demo and the bare-core demo run end to end on a few steps."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from worldflux import demo as api_demo
from worldflux.cli import app
from worldflux_jax import demo as core_demo


def test_main_job_trains_and_saves_a_loadable_model(tmp_path, capsys) -> None:
    result = api_demo.main(["--steps", "40", "--output-dir", str(tmp_path)])
    assert result["last_loss"] < result["first_loss"]
    saved = tmp_path / "model"
    assert {p.name for p in saved.iterdir()} >= {"config.json", "model.pt", "worldflux_meta.json"}
    assert json.loads((saved / "worldflux_meta.json").read_text())["model_type"] == "dreamer"
    assert (tmp_path / "run_manifest.json").is_file()
    out = capsys.readouterr().out
    assert "loss" in out and "model saved to" in out


def test_core_demo_reports_the_loss_and_open_loop_error(capsys) -> None:
    result = core_demo.main(["--steps", "30"])
    assert result["last_loss"] < result["first_loss"]
    assert "open-loop prediction MSE" in capsys.readouterr().out


README = Path(__file__).resolve().parents[1] / "README.md"


def _main_command() -> str:
    text = README.read_text()
    section = text[text.index("## Run the main job"):]
    return section[section.index("```bash") + len("```bash"):section.index("```", section.index("```bash") + 7)]


def test_readme_main_job_is_the_newcomer_flow() -> None:
    command = _main_command()
    assert "worldflux init demo --env Pendulum-v1" in command and "cd demo" in command
    assert command.strip().endswith("worldflux train")


def test_readme_main_job_runs_end_to_end_on_few_steps(tmp_path) -> None:
    """The README's `worldflux init demo --env Pendulum-v1 && cd demo && worldflux train`, with fewer steps."""
    runner = CliRunner()
    demo = tmp_path / "demo"
    result = runner.invoke(app, ["init", str(demo), "--env", "Pendulum-v1", "--steps", "400", "--port", "0"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--config", str(demo / "worldflux.toml"), "--exit-when-done"])
    assert result.exit_code == 0, result.output
    assert "dashboard: http://127.0.0.1:" in result.output
    out = demo / "outputs"
    assert {"run_manifest.json", "episodes.jsonl", "training_curves.png", "model"} <= {p.name for p in out.iterdir()}
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["data_mode"] == "online_env_collection" and manifest["degraded_modes"] == []
