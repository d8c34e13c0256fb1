"""Delegated mode: ``Trainer(OfficialBackendHandle(...), config)`` submits a training job as a separate process
(here the CONTRACTS §1 stand-in ``delegated_standin.py`` instead of ``python -m worldflux_jax.train``), streams
its logs, reports running -> completed, cancels cleanly (cancelled, last checkpoint loadable), and a second
process reads a job's status from disk."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from worldflux import JobHandle, JobStatus, OfficialBackendHandle
from worldflux.core import ConfigurationError
from worldflux.training import ReplayBuffer, Trainer, TrainingConfig
from worldflux.training.delegated import TRAIN_COMMAND_ENV, DelegatedTrainer, train_command

STANDIN = Path(__file__).with_name("delegated_standin.py")
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def data(tmp_path: Path) -> str:
    buffer = ReplayBuffer(capacity=64, obs_shape=(3,), action_dim=2)
    buffer.add_episode(np.zeros((20, 3), np.float32), np.zeros((20, 2), np.float32), np.zeros(20, np.float32))
    path = tmp_path / "buffer.npz"
    buffer.save(str(path))
    return str(path)


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRAIN_COMMAND_ENV, f"{sys.executable} {STANDIN}")


def _trainer(tmp_path: Path, data: str, **config) -> DelegatedTrainer:
    base = dict(total_steps=12, save_interval=4, log_interval=2, output_dir=str(tmp_path / "out"), device="cpu")
    base.update(config)
    trainer = Trainer(OfficialBackendHandle("jax", "dreamerv3:ci", {"data": data}), TrainingConfig(**base))
    assert isinstance(trainer, DelegatedTrainer) and isinstance(trainer, Trainer)
    return trainer


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_default_command_is_the_jax_training_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRAIN_COMMAND_ENV, raising=False)
    assert train_command() == [sys.executable, "-m", "worldflux_jax.train"]


def test_submit_streams_logs_and_completes(tmp_path: Path, data: str, standin: None) -> None:
    trainer = _trainer(tmp_path, data)
    handle = trainer.submit()
    assert isinstance(handle, JobHandle) and handle.backend == "jax"
    seen = {trainer.status(handle)}
    _wait_for(lambda: seen.add(trainer.status(handle)) or JobStatus.RUNNING in seen or JobStatus.COMPLETED in seen)
    lines = list(trainer.logs(handle))  # streams until the job has ended
    assert trainer.status(handle) is JobStatus.COMPLETED
    assert JobStatus.RUNNING in seen or lines  # it ran
    expected = [f"step {s} loss {1 / s:.4f}" for s in range(2, 13, 2)]
    assert [line for line in lines if line.startswith("step ")] == expected
    assert lines[-1] == "done"
    assert list(trainer.logs(handle)) == lines  # also after the job ended
    out = Path(handle.metadata["out_dir"])
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir()) == [4, 8, 12]
    assert (out / "metrics.jsonl").read_text().count("\n") == 6


def test_cancel_stops_cleanly_and_status_is_readable_from_another_process(
    tmp_path: Path, data: str, standin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_STEP_SECONDS", "0.05")
    trainer = _trainer(tmp_path, data, total_steps=100_000, save_interval=3)
    handle = trainer.submit()
    checkpoints = Path(handle.metadata["out_dir"]) / "checkpoints"
    _wait_for(lambda: checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir()))
    assert trainer.status(handle) is JobStatus.RUNNING
    trainer.cancel(handle)
    assert trainer.status(handle) is JobStatus.CANCELLED
    lines = list(trainer.logs(handle))
    assert lines[-1].startswith("stopping at step")
    last = max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
    with np.load(checkpoints / str(last) / "state.npz") as state:
        assert int(state["step"]) == last
    trainer.cancel(handle)  # no-op once ended

    # A later job resumes from that run directory.
    monkeypatch.setenv("STANDIN_STEP_SECONDS", "0.0")
    resumed = _trainer(tmp_path, data, total_steps=last + 3, save_interval=3).submit(resume_from=handle.job_id)
    list(trainer.logs(resumed))
    assert trainer.status(resumed) is JobStatus.COMPLETED
    assert (Path(resumed.metadata["out_dir"]) / "checkpoints" / str(last + 3)).is_dir()

    code = (
        "from worldflux.training import Trainer, TrainingConfig, OfficialBackendHandle, JobHandle\n"
        f"t = Trainer(OfficialBackendHandle('jax', 'dreamerv3:ci', {{'data': {data!r}}}), "
        f"TrainingConfig(output_dir={str(tmp_path / 'out')!r}))\n"
        f"print(t.status(JobHandle({handle.job_id!r}, 'jax', {{}})).value, "
        f"t.status({resumed.job_id!r}).value)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cancelled", "completed"]


def test_configuration_errors(tmp_path: Path, data: str) -> None:
    with pytest.raises(ConfigurationError, match=r"known backends: \['jax'\]"):
        Trainer(OfficialBackendHandle("nope", "dreamerv3:ci", {"data": data}), TrainingConfig(output_dir=str(tmp_path)))
    trainer = _trainer(tmp_path, data)
    for call in (lambda: trainer.train(None), lambda: trainer.evaluate(None), lambda: trainer.save_checkpoint("x"),
                 lambda: trainer.load_checkpoint("x")):
        with pytest.raises(ConfigurationError, match="only available for native_torch Trainer"):
            call()
    with pytest.raises(ConfigurationError, match=r"metadata\['data'\]"):
        Trainer(OfficialBackendHandle("jax", "dreamerv3:ci"), TrainingConfig(output_dir=str(tmp_path))).submit()
    with pytest.raises(ConfigurationError, match="Unknown job"):
        trainer.status("jax-missing")


def test_real_training_script_completes_with_a_loadable_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ``python -m worldflux_jax.train`` (not the stand-in) through ``Trainer(handle, config).submit()``."""
    import torch

    from worldflux import create_world_model

    monkeypatch.delenv(TRAIN_COMMAND_ENV, raising=False)
    # the job runs `python -m worldflux_jax.train` from this checkout, also when the package is not installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(capacity=256, obs_shape=(4,), action_dim=2)
    for _ in range(4):
        buffer.add_episode(rng.standard_normal((40, 4)).astype(np.float32),
                           rng.uniform(-1, 1, (40, 2)).astype(np.float32), rng.standard_normal(40).astype(np.float32))
    data = tmp_path / "buffer.npz"
    buffer.save(str(data))
    config = TrainingConfig(total_steps=3, batch_size=4, sequence_length=8, save_interval=100, log_interval=1,
                            output_dir=str(tmp_path / "out"), device="cpu")
    trainer = Trainer(OfficialBackendHandle("jax", "tdmpc2:ci", {"data": str(data)}), config)
    handle = trainer.submit()
    lines = list(trainer.logs(handle))  # streams until the job has ended
    assert trainer.status(handle) is JobStatus.COMPLETED, "\n".join(lines[-20:])
    model_dir = Path(handle.metadata["out_dir"]) / "model"
    assert (model_dir / "model.safetensors").is_file()
    model = create_world_model(str(model_dir))
    assert model.config.obs_shape == (4,) and model.config.action_dim == 2
    state = model.encode(torch.zeros(1, 4))
    assert bool(torch.isfinite(state.tensors["latent"]).all())
