"""Checkpoints: contents, exact resume, error reporting, atomic replacement and SIGKILL safety."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from wf_training_helpers import buffer, config, fresh_model, host_tree, trees_equal

from worldflux.core.exceptions import CheckpointError
from worldflux.training import Trainer
from worldflux.training.callbacks import CheckpointCallback
from worldflux.training.checkpoint import (
    MARKER_FILE,
    is_finalized,
    latest_checkpoint,
    read_checkpoint_metadata,
)

REPO = Path(__file__).resolve().parents[3]


def test_resume_is_bitwise_exact(tmp_path):
    """N steps, save, resume in a fresh Trainer, M steps == N + M uninterrupted steps (DreamerV3: uses keys)."""
    data = buffer(seed=1)
    straight_model = fresh_model("dreamer:ci")
    straight = Trainer(straight_model, config(tmp_path / "straight", log_interval=2))
    straight.train(data, num_steps=5)

    first_model = fresh_model("dreamer:ci")
    first = Trainer(first_model, config(tmp_path / "first", log_interval=2))
    first.train(data, num_steps=3)
    ckpt = tmp_path / "resume.pt"
    first.save_checkpoint(str(ckpt))
    assert is_finalized(ckpt)

    resumed_model = fresh_model("dreamer:ci")
    resumed = Trainer(resumed_model, config(tmp_path / "resumed", log_interval=2))
    resumed.train(data, num_steps=5, resume_from=str(ckpt))
    assert resumed.state.global_step == 5
    assert trees_equal(straight_model.params, resumed_model.params)
    assert trees_equal(straight._train_state.opt_state, resumed._train_state.opt_state)
    assert not trees_equal(first_model.params, resumed_model.params)


def test_checkpoint_contents_and_tdmpc2_target_params(tmp_path):
    model = fresh_model("tdmpc2:ci")
    trainer = Trainer(model, config(tmp_path, total_steps=2))
    trainer.train(buffer())
    final = tmp_path / "out" / "checkpoint_final.pt"
    metadata = read_checkpoint_metadata(final)
    assert metadata["global_step"] == 2 and metadata["best_loss"] == pytest.approx(trainer.state.best_loss)
    assert metadata["config"]["total_steps"] == 2 and metadata["model_type"] == "tdmpc2"
    assert metadata["scheduler"] == {"name": "none", "warmup_steps": 0, "total_steps": 2, "optimizer_steps": 2}
    assert (final / "state").is_dir() and (final / MARKER_FILE).is_file()

    other = fresh_model("tdmpc2:ci")
    loader = Trainer(other, config(tmp_path / "loader", total_steps=2))
    assert not trees_equal(other.params, model.params)
    loader.load_checkpoint(str(final))
    assert loader.state.global_step == 2 and loader.state.best_loss == pytest.approx(trainer.state.best_loss)
    assert trees_equal(other.params, model.params) and trees_equal(other.extras, model.extras)
    assert trees_equal(loader._train_state.opt_state, trainer._train_state.opt_state)
    assert np.array_equal(np.asarray(loader._base_key), np.asarray(trainer._base_key))


def test_a_snapshot_keeps_the_state_of_its_moment_while_training_goes_on(tmp_path):
    """`checkpoint_snapshot` copies on the device without waiting; the steps after it donate the state's
    buffers, and the snapshot must still hold the state as it was (what a held-back "best" save relies on)."""
    data = buffer(seed=2)
    model = fresh_model("tdmpc2:ci")
    trainer = Trainer(model, config(tmp_path, log_interval=2))
    trainer.train(data, num_steps=3)
    expected = host_tree(trainer._train_state.replace(guard=None))  # what a checkpoint holds (no per-run guard)
    snapshot = trainer.checkpoint_snapshot()
    trainer.train(data, num_steps=6)  # donates the snapshotted buffers three times
    now = host_tree(trainer._train_state.replace(guard=None))
    assert not all(np.array_equal(a, b) for a, b in zip(expected, now, strict=True))
    path = tmp_path / "snap.pt"
    trainer.save_checkpoint(str(path), snapshot=snapshot)
    assert read_checkpoint_metadata(path)["global_step"] == 3

    loader = Trainer(fresh_model("tdmpc2:ci"), config(tmp_path / "loader"))
    loader.load_checkpoint(str(path))
    got = host_tree(loader._train_state.replace(guard=None))
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def test_snapshots_of_arrays_on_several_devices(tmp_path):
    """Leaves on different devices cannot share the snapshot's one jitted copy; they are copied one by one."""
    script = textwrap.dedent(
        f"""
        import jax, jax.numpy as jnp, numpy as np
        from worldflux.training.checkpoint import CheckpointWriter, restore_checkpoint
        first, second = jax.devices()[:2]
        tree = {{"a": jax.device_put(jnp.arange(4.0), first), "b": jax.device_put(jnp.arange(3), second),
                 "host": np.ones(2, np.float32)}}
        CheckpointWriter().save({str(tmp_path / "multi.pt")!r}, tree, {{}}, wait=True)
        restored, _ = restore_checkpoint({str(tmp_path / "multi.pt")!r}, tree)
        assert all(np.array_equal(np.asarray(restored[k]), np.asarray(tree[k])) for k in tree)
        print("SNAPSHOT_OK")
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SNAPSHOT_OK" in result.stdout


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax's aborted async reads
def test_load_errors_name_the_path_and_problem(tmp_path):
    model = fresh_model("tdmpc2:ci")
    trainer = Trainer(model, config(tmp_path))
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match=r"not found: .*nope\.pt"):
        trainer.load_checkpoint(str(missing))
    partial = tmp_path / "partial.pt"
    (partial / "state").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"partial\.pt.*incomplete.*finalisation marker"):
        trainer.load_checkpoint(str(partial))
    torch_file = tmp_path / "reference.pt"
    torch_file.write_bytes(b"not a directory")
    with pytest.raises(CheckpointError, match="found a file"):
        trainer.load_checkpoint(str(torch_file))

    good = tmp_path / "good.pt"
    trainer.save_checkpoint(str(good))
    trainer.load_checkpoint(str(good))  # round trip works
    # Corrupt the stored array data: flip bytes in every data file.
    data_files = [p for p in (good / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert data_files
    for path in data_files:
        raw = bytearray(path.read_bytes())
        for i in range(len(raw) // 2, min(len(raw), len(raw) // 2 + 16)):
            raw[i] ^= 0xFF
        path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"good\.pt"):
        trainer.load_checkpoint(str(good))
    # A marker that is not JSON.
    broken = tmp_path / "broken.pt"
    trainer.save_checkpoint(str(broken))
    (broken / MARKER_FILE).write_text("{oops")
    with pytest.raises(CheckpointError, match=r"broken\.pt.*corrupted"):
        trainer.load_checkpoint(str(broken))
    # A checkpoint of another model.
    dreamer_trainer = Trainer(fresh_model("dreamer:ci"), config(tmp_path / "dreamer"))
    foreign = tmp_path / "dreamer.pt"
    dreamer_trainer.save_checkpoint(str(foreign))
    with pytest.raises(CheckpointError, match="does not match this trainer"):
        trainer.load_checkpoint(str(foreign))


def test_replacement_is_atomic_and_interrupted_replacement_is_recovered(tmp_path):
    model = fresh_model("tdmpc2:ci")
    trainer = Trainer(model, config(tmp_path))
    target = tmp_path / "checkpoint_best.pt"
    trainer.save_checkpoint(str(target))
    trainer.state.global_step = 7
    trainer.save_checkpoint(str(target), wait=False, copies=[str(tmp_path / "copy.pt")])
    trainer.wait_for_checkpoints()
    assert read_checkpoint_metadata(target)["global_step"] == 7
    assert read_checkpoint_metadata(tmp_path / "copy.pt")["global_step"] == 7
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # Simulate a kill between the two renames of a replacement: only the hidden old copy exists.
    os.rename(target, tmp_path / ".checkpoint_best.pt.old-deadbeef")
    with pytest.warns(UserWarning, match="replacement was interrupted"):
        trainer.load_checkpoint(str(target))
    assert trainer.state.global_step == 7


def test_checkpoint_rotation_keeps_the_newest(tmp_path):
    model = fresh_model("tdmpc2:ci")
    out = tmp_path / "rot"
    trainer = Trainer(model, config(tmp_path, total_steps=4, log_interval=4),
                      callbacks=[CheckpointCallback(save_interval=1, output_dir=str(out), save_best=False,
                                                    max_checkpoints=2)])
    trainer.train(buffer())
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint_3.pt", "checkpoint_4.pt"]
    assert latest_checkpoint(out) == out / "checkpoint_4.pt"


CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {helpers!r})
    from wf_training_helpers import buffer, config, fresh_model
    from pathlib import Path
    from worldflux.training import Trainer
    from worldflux.training.checkpoint import latest_checkpoint

    out = Path(sys.argv[1])
    model = fresh_model("tdmpc2:ci")
    cfg = config(out.parent, total_steps=10**6, log_interval=10**6, save_interval=1, output_dir=str(out))
    trainer = Trainer(model, cfg)
    latest = latest_checkpoint(out)
    trainer.train(buffer(), resume_from=None if latest is None else str(latest))
    """
)


def test_sigkill_during_saves_leaves_a_resumable_checkpoint(tmp_path):
    """A child trains with a checkpoint every step (rotation on); it is killed with SIGKILL at random moments
    three times; each time the newest finalised checkpoint loads, and every visible checkpoint is complete."""
    out = tmp_path / "run"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(helpers=str(Path(__file__).resolve().parent)))
    env = dict(os.environ)
    env.update(
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        JAX_PLATFORMS="cpu",
    )
    rng = random.Random(1234)
    loader = Trainer(fresh_model("tdmpc2:ci"), config(tmp_path / "loader"))
    previous_step = 0
    for _ in range(3):
        child = subprocess.Popen([sys.executable, str(script), str(out)], cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 120
            while True:  # wait until this child has written new checkpoints
                latest = latest_checkpoint(out)
                if latest is not None and int(latest.name.split("_")[1].split(".")[0]) >= previous_step + 2:
                    break
                if child.poll() is not None:
                    pytest.fail(f"child exited early: {child.stderr.read().decode()[-2000:]}")
                if time.time() > deadline:
                    pytest.fail("child wrote no checkpoint within 120 s")
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.6))
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
            child.stderr.close()
        for entry in out.iterdir():
            if entry.name.startswith("checkpoint_"):
                assert is_finalized(entry), f"visible but incomplete checkpoint {entry}"
        latest = latest_checkpoint(out)
        assert latest is not None
        loader.load_checkpoint(str(latest))
        step = int(latest.name.split("_")[1].split(".")[0])
        assert loader.state.global_step == step and step > previous_step
        previous_step = step
    assert host_tree(loader.model.params)


def test_checkpoints_with_the_legacy_gru_layout_still_load(tmp_path):
    """Checkpoints written while the GRU weights were Flax-style kernels ``[in, 3H]`` (named ``kernel_ih``,
    ``kernel_hh``) restore into the torch-layout ``weight_ih``/``weight_hh``, optimizer moments included."""
    import dataclasses

    import jax

    from worldflux.training.checkpoint import CheckpointWriter, restore_checkpoint

    trainer = Trainer(fresh_model("dreamer:ci"), config(tmp_path / "run", log_interval=2))
    trainer.train(buffer(seed=3), num_steps=2)
    trainer.save_checkpoint(tmp_path / "current.pt")
    tree, metadata = restore_checkpoint(tmp_path / "current.pt", trainer._checkpoint_tree())

    def legacy(node):
        if isinstance(node, dict) and "weight_ih" in node and "weight_hh" in node:
            renamed = {k: v for k, v in node.items() if k not in ("weight_ih", "weight_hh")}
            old_layout = {"kernel_ih": np.asarray(node["weight_ih"]).T, "kernel_hh": np.asarray(node["weight_hh"]).T}
            return {**renamed, **old_layout}
        if isinstance(node, dict):
            return {k: legacy(v) for k, v in node.items()}
        if dataclasses.is_dataclass(node):  # the train state
            fields = {f.name: legacy(getattr(node, f.name)) for f in dataclasses.fields(node)}
            return dataclasses.replace(node, **fields)
        if hasattr(node, "_fields"):  # optax states are named tuples
            return type(node)(*(legacy(v) for v in node))
        if isinstance(node, tuple | list):
            return type(node)(legacy(v) for v in node)
        return node

    old = legacy(jax.tree.map(np.asarray, tree))
    assert "kernel_ih" in old["train_state"].params["rssm"]["gru"]
    CheckpointWriter().save(tmp_path / "legacy.pt", old, metadata)

    resumed = Trainer(fresh_model("dreamer:ci"), config(tmp_path / "resumed", log_interval=2))
    resumed.load_checkpoint(tmp_path / "legacy.pt")
    assert trees_equal(host_tree(resumed._train_state.replace(guard=None)),
                       host_tree(trainer._train_state.replace(guard=None)))
    other = Trainer(fresh_model("tdmpc2:ci"), config(tmp_path / "other", log_interval=2))
    with pytest.raises(CheckpointError, match="does not match"):  # other mismatches are still refused
        other.load_checkpoint(tmp_path / "legacy.pt")


def test_a_script_ending_right_after_train_finishes_its_background_save(tmp_path):
    """``train(final_checkpoint=False)`` queues only the best-loss save; a script that exits at once must still
    finish it (orbax's thread pool refuses work once the interpreter shuts down) and print no traceback."""
    script = textwrap.dedent(
        f"""
        import numpy as np
        from worldflux import create_world_model
        from worldflux.training import ReplayBuffer, Trainer, TrainingConfig
        model = create_world_model("tdmpc2:ci", obs_shape=(3,), action_dim=1)
        data = ReplayBuffer(capacity=400, obs_shape=(3,), action_dim=1)
        rng = np.random.default_rng(0)
        data.add_episode(rng.normal(size=(60, 3)).astype(np.float32), rng.uniform(-1, 1, (60, 1)).astype(np.float32),
                         rng.normal(size=60).astype(np.float32), np.zeros(60, np.float32))
        config = TrainingConfig(batch_size=4, sequence_length=4, output_dir={str(tmp_path)!r}, log_interval=1,
                                save_interval=10**9)
        Trainer(model, config).train(data, num_steps=2, final_checkpoint=False)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "checkpoint_final.pt").exists()
    assert is_finalized(tmp_path / "checkpoint_best.pt")
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
