"""Scale-out proofs: every entry point (Trainer, DDPTrainer, the script) trains data-parallel on 4 (forced CPU)
devices and across 2 processes with the same result as on one device; bad distributed input fails clearly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO_ROOT

CACHE = os.environ.get("WORLDFLUX_TEST_JAX_CACHE") or os.path.join(
    __import__("tempfile").gettempdir(), "worldflux-jax-test-cache"
)


def _env(devices: int) -> dict[str, str]:
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(REPO_ROOT),
        "WORLDFLUX_COMPILATION_CACHE": CACHE,
    }


TRAINER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import jax, numpy as np, torch
    from worldflux import create_world_model
    from worldflux.core.exceptions import ConfigurationError
    from worldflux.training import DDPTrainer, Trainer, TrainingConfig, build_launch_config
    from worldflux.training.data import create_random_buffer

    assert len(jax.devices()) == 4, jax.devices()
    out = sys.argv[1]
    buf = create_random_buffer(capacity=2000, obs_shape=(6,), action_dim=2, num_episodes=24, episode_length=40,
                               seed=0)

    def cfg(name, device, **kw):
        return TrainingConfig(total_steps=3, batch_size=8, sequence_length=6, log_interval=3, save_interval=1000,
                              output_dir=os.path.join(out, name), device=device, auto_quality_check=False, **kw)

    for preset in ("tdmpc2:ci", "dreamer:ci"):
        params = {}
        for name, device, cls, ddp in (("one", "cpu:0", Trainer, False), ("four", "cpu", Trainer, False),
                                       ("ddp", "auto", DDPTrainer, True)):
            torch.manual_seed(0)
            model = create_world_model(preset, obs_shape=(6,), action_dim=2)
            trainer = cls(model, cfg(preset + name, device, use_ddp=ddp))
            trainer.train(buf)
            params[name] = [np.asarray(x) for x in jax.tree.leaves(model.params)]
            manifest = json.load(open(os.path.join(out, preset + name, "run_manifest.json")))
            count = 1 if name == "one" else 4
            assert manifest["devices"] == {"count": count, "platform": "cpu", "mesh": {"data": count},
                                           "process_count": 1}, manifest["devices"]
            if name != "one":
                leaf = jax.tree.leaves(trainer._train_state.params)[0]
                assert len(leaf.sharding.device_set) == 4
                assert trainer.trace_count == 1, trainer.trace_count  # Trainer and DDPTrainer share one compile
        for name in ("four", "ddp"):
            for a, b in zip(params["one"], params[name], strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        assert any(not np.array_equal(a, b) for a, b in zip(params["one"], params["four"]))  # really parallel
    # Non-divisible global batch: both numbers named.
    model = create_world_model("tdmpc2:ci", obs_shape=(6,), action_dim=2)
    try:
        Trainer(model, TrainingConfig(batch_size=6, output_dir=os.path.join(out, "bad")))
    except ConfigurationError as exc:
        assert "batch_size=6" in str(exc) and "4 data-parallel devices" in str(exc), exc
    else:
        raise AssertionError("no ConfigurationError for batch 6 on 4 devices")
    assert build_launch_config(TrainingConfig(use_ddp=True)) == {"enabled": True, "mode": "ddp", "world_size": 4,
                                                                 "device": "cpu"}
    print("TRAINERS_OK")
    """
)


@pytest.mark.heavy
def test_trainer_and_ddptrainer_on_four_devices_match_one_device(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", TRAINER_SCRIPT, str(tmp_path)],
        cwd=REPO_ROOT,
        env=_env(4),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "TRAINERS_OK" in result.stdout


def test_ddp_trainer_needs_use_ddp_and_several_devices(tmp_path: Path) -> None:
    from worldflux import create_world_model
    from worldflux.core.exceptions import ConfigurationError
    from worldflux.training import DDPTrainer, TrainingConfig, build_launch_config

    model = create_world_model("tdmpc2:ci", obs_shape=(6,), action_dim=2)
    with pytest.raises(ConfigurationError, match="use_ddp=True"):
        DDPTrainer(model, TrainingConfig(output_dir=str(tmp_path)))
    with pytest.raises(ConfigurationError, match="needs more than one device or process"):
        DDPTrainer(model, TrainingConfig(use_ddp=True, device="cpu", output_dir=str(tmp_path)))
    assert build_launch_config(TrainingConfig()) == {
        "enabled": False,
        "mode": "none",
        "world_size": 1,
        "device": TrainingConfig().resolve_device(),
    }


# ------------------------------------------------------------------------------------------------ the script


def _buffer(path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 240
    dones = np.zeros(n, np.float32)
    dones[59::60] = 1.0
    np.savez_compressed(
        path,
        obs=rng.standard_normal((n, 6)).astype(np.float32),
        actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        rewards=rng.standard_normal(n).astype(np.float32),
        dones=dones,
        obs_shape=np.asarray([6]),
        action_dim=np.asarray(2),
        capacity=np.asarray(1000),
    )
    return path


def _script(data: Path, out: Path, *extra: str, steps: int = 3) -> list[str]:
    return [
        sys.executable,
        "-m",
        "worldflux_jax.train",
        "--model",
        "tdmpc2:ci",
        "--data",
        str(data),
        "--steps",
        str(steps),
        "--batch-size",
        "8",
        "--seq-len",
        "5",
        "--lr",
        "1e-3",
        "--out",
        str(out),
        "--log-every",
        "1",
        *extra,
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(out: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(out / "model" / "model.safetensors")


@pytest.mark.heavy
def test_script_single_device_four_devices_and_two_processes_agree(tmp_path: Path) -> None:
    data = _buffer(tmp_path / "buffer.npz")
    one = subprocess.run(
        _script(data, tmp_path / "one"), env=_env(1), cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )
    assert one.returncode == 0, one.stderr[-3000:]
    four = subprocess.run(
        _script(data, tmp_path / "four"), env=_env(4), cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )
    assert four.returncode == 0, four.stderr[-3000:]
    port = _free_port()
    procs = [
        subprocess.Popen(
            _script(
                data,
                tmp_path / "multi",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
                "--timeout",
                "300",
            ),
            env=_env(2),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    reference = _weights(tmp_path / "one")
    for run in ("four", "multi"):
        weights = _weights(tmp_path / run)
        assert set(weights) == set(reference)
        for name, value in reference.items():
            np.testing.assert_allclose(weights[name], value, rtol=1e-5, atol=1e-5, err_msg=f"{run}: {name}")
    lines = (tmp_path / "multi" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and '"step": 3' in lines[-1]  # process 0 only
    assert "4 device(s) in 2 process(es)" in outputs[0][0]
    # The weights use the reference torch names and layouts of the facade model.
    from worldflux import create_world_model

    model = create_world_model("tdmpc2:ci", obs_shape=(6,), action_dim=2)
    torch_state = model.state_dict()
    assert set(torch_state) == set(reference)
    assert all(tuple(torch_state[k].shape) == reference[k].shape for k in reference)


@pytest.mark.heavy
def test_script_killing_one_process_makes_the_other_exit_and_resume_continues(tmp_path: Path) -> None:
    data = _buffer(tmp_path / "buffer.npz")
    port = _free_port()
    out = tmp_path / "killed"
    procs = [
        subprocess.Popen(
            _script(
                data,
                out,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
                "--timeout",
                "120",
                "--checkpoint-every",
                "2",
                steps=100000,
            ),
            env=_env(2),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 600
    checkpoints = out / "checkpoints"
    while time.monotonic() < deadline and not any(p.name.isdigit() for p in checkpoints.glob("*")):
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
        time.sleep(0.5)
    time.sleep(1.0)
    procs[1].send_signal(signal.SIGKILL)
    start = time.monotonic()
    _, err = procs[0].communicate(timeout=300)
    assert procs[0].returncode not in (0, None) and time.monotonic() - start < 300
    assert "error" in err.lower() or "terminat" in err.lower(), err[-2000:]
    procs[1].communicate()
    done = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
    assert done, list(checkpoints.iterdir())
    # Resume (one process, 4 devices: same global batches) from the last complete checkpoint.
    resumed = subprocess.run(
        _script(data, out, "--resume", steps=done[-1] + 2),
        env=_env(4),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"(step {done[-1]})" in resumed.stdout
    assert f"steps {done[-1]}..{done[-1] + 2}" in resumed.stdout


def test_script_bad_arguments_exit_2_naming_the_flag(tmp_path: Path) -> None:
    data = _buffer(tmp_path / "buffer.npz")
    cases = [
        (["--steps", "-1"], "--steps"),
        (["--coordinator", "127.0.0.1:1"], "--coordinator, --num-processes and --process-id"),
    ]
    for extra, expected in cases:
        cmd = _script(data, tmp_path / "bad") + extra
        result = subprocess.run(cmd, env=_env(1), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr
    # A global batch that does not divide by the 4 devices.
    result = subprocess.run(
        _script(data, tmp_path / "bad") + ["--batch-size", "6"],
        env=_env(4),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "batch_size=6" in result.stderr and "4 data-parallel" in result.stderr


def test_script_coordinator_that_never_answers_times_out_with_a_named_error(tmp_path: Path) -> None:
    data = _buffer(tmp_path / "buffer.npz")
    port = _free_port()  # nobody listens there
    cmd = _script(
        data,
        tmp_path / "lost",
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        "2",
        "--process-id",
        "1",
        "--timeout",
        "5",
    )
    start = time.monotonic()
    result = subprocess.run(cmd, env=_env(1), cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"could not join the job at coordinator 127.0.0.1:{port}" in result.stderr
    assert time.monotonic() - start < 240
