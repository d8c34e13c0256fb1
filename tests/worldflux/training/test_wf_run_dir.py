"""Checkpoint life cycle of an ``output_dir``: one writer (OS lock), leftovers of killed runs, rotation across
runs, and 20 SIGKILL / resume cycles with bounded disk use.

The kill/resume cycles run in processes forked from one "zygote" subprocess that imported the package once,
so each cycle costs a JAX backend start and a few orbax saves instead of a full interpreter start.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from wf_training_helpers import buffer, config, fresh_model

from worldflux.core.exceptions import CheckpointError, ConfigurationError
from worldflux.training import Trainer
from worldflux.training.checkpoint import CheckpointWriter, is_finalized, latest_checkpoint, restore_checkpoint
from worldflux.training.run_dir import acquire_output_dir, clean_leftovers, periodic_checkpoints

REPO = Path(__file__).resolve().parents[3]
MAX_CHECKPOINTS = 3
SAVE_INTERVAL = 2

ZYGOTE = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    import jax, jax.numpy as jnp
    from worldflux.core.safe_io import write_json_atomic
    from worldflux.training.callbacks import CheckpointCallback
    from worldflux.training.checkpoint import CheckpointWriter, latest_checkpoint, restore_checkpoint
    from worldflux.training.guards import prepare_output_dir
    from worldflux.training.run_dir import acquire_output_dir

    class State:
        global_step = 0
        best_loss = float("inf")
        metrics = {}

    class MiniTrainer:
        # what CheckpointCallback uses of a Trainer, on the real writer; the 'model' is a vector = step
        def __init__(self, out):
            self.out = out
            self.state = State()
            self.writer = CheckpointWriter()
            self.w = jnp.zeros((64,), jnp.float32)
        def tree(self):
            return {"w": self.w, "step": jnp.asarray(self.state.global_step, jnp.int32)}
        def save_checkpoint(self, path, wait=True, copies=()):
            self.writer.save(path, self.tree(), {"global_step": self.state.global_step}, wait=True, copies=copies)
        def delete_checkpoint(self, path):
            self.writer.delete(path)
            self.writer.wait()

    def cycle(out, mode):
        if mode == "hold":
            for _ in range(200):  # the test polls the lock too: retry its brief holds
                try:
                    lock = acquire_output_dir(out)
                    break
                except Exception:
                    time.sleep(0.05)
            time.sleep(600)
        prepare_output_dir(out)
        trainer = MiniTrainer(out)
        latest = latest_checkpoint(out)
        if latest is not None:
            tree, meta = restore_checkpoint(latest, trainer.tree())
            trainer.w, trainer.state.global_step = tree["w"], meta["global_step"]
        callback = CheckpointCallback(save_interval=%(interval)d, output_dir=out, save_best=False,
                                      max_checkpoints=%(keep)d)
        callback.on_train_begin(trainer)
        while True:
            trainer.state.global_step += 1
            trainer.w = trainer.w + 1.0
            callback.on_step_end(trainer)
            write_json_atomic(os.path.join(out, "progress.json"), {"step": trainer.state.global_step})

    import signal, traceback
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    for line in sys.stdin:
        out, mode = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                cycle(out, mode)
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(1)
        print(pid, flush=True)
    """
) % {"interval": SAVE_INTERVAL, "keep": MAX_CHECKPOINTS}


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    script = tmp_path_factory.mktemp("zygote") / "zygote.py"
    script.write_text(ZYGOTE)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    def spawn(out: Path, mode: str = "train") -> int:
        proc.stdin.write(f"{out} {mode}\n")
        proc.stdin.flush()
        return int(proc.stdout.readline())

    yield spawn
    proc.stdin.close()
    proc.kill()
    proc.wait()


def _kill(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it is gone (its lock dies with it, not with the signal)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _wait_for(lambda: not _alive(pid), f"process {pid} to die", timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(predicate, what: str, timeout: float = 120.0, pid: int | None = None) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if pid is not None and not _alive(pid):
            pytest.fail(f"the child died while waiting for {what} (its traceback is on stderr)")
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _progress(out: Path) -> int:
    try:
        return int(json.loads((out / "progress.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


def test_twenty_sigkill_resume_cycles_keep_disk_bounded_and_lose_at_most_one_interval(zygote, tmp_path):
    import jax.numpy as jnp
    import numpy as np

    out = tmp_path / "run"
    out.mkdir()
    # a foreign older run left more periodic checkpoints than max_checkpoints and staging leftovers
    writer = CheckpointWriter()
    for step in (1, 2, 3, 4, 5):
        writer.save(out / f"checkpoint_{step}.pt", {"w": jnp.full((64,), step, jnp.float32),
                                                    "step": jnp.asarray(step, jnp.int32)}, {"global_step": step})
    (out / ".checkpoint_9.pt.tmp-0123456789ab").mkdir()
    (out / ".checkpoint_7.pt.deleted-0123456789ab").mkdir()
    (out / ".run_manifest.json.abcdef.tmp").write_text("{")
    writer.close()

    previous = 5
    sizes = []
    for cycle in range(20):
        pid = zygote(out)
        try:
            target = previous + 1 + (cycle % 4)
            _wait_for(lambda t=target: _progress(out) >= t, f"cycle {cycle} to reach step {target}", pid=pid)
            time.sleep((cycle % 5) * 0.013)  # land the kill at different moments of a save
        finally:
            _kill(pid)
        reached = _progress(out)
        entries = [p.name for p in out.iterdir()]
        visible = [n for n in entries if n.startswith("checkpoint_")]
        assert all(is_finalized(out / n) for n in visible), f"cycle {cycle}: incomplete visible checkpoint"
        hidden = [n for n in entries if n.startswith(".")]
        assert len(visible) <= MAX_CHECKPOINTS + 1 and len(hidden) <= 4, f"cycle {cycle}: {sorted(entries)}"
        sizes.append(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()))
        latest = latest_checkpoint(out)
        step = int(latest.name.split("_")[1].split(".")[0])
        assert step >= reached - SAVE_INTERVAL, f"cycle {cycle}: reached {reached}, newest checkpoint {step}"
        template = {"w": jnp.zeros((64,), jnp.float32), "step": jnp.asarray(0, jnp.int32)}
        tree, meta = restore_checkpoint(latest, template)
        assert meta["global_step"] == step == int(tree["step"])
        assert np.all(np.asarray(tree["w"]) == step)  # the vector counts the steps it has seen: nothing skipped
        previous = reached
    assert previous >= 5 + 20
    assert max(sizes) <= 3 * min(sizes), f"disk use grew over the cycles: {sizes}"
    clean_leftovers(out)
    assert [p.name for p in periodic_checkpoints(out)].__len__() <= MAX_CHECKPOINTS + 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_second_trainer_on_the_same_output_dir_is_refused(tmp_path, zygote):
    cfg = config(tmp_path, total_steps=2)
    first = Trainer(fresh_model("tdmpc2:ci"), cfg)
    with pytest.raises(CheckpointError, match="in use by another Trainer .*this process"):
        Trainer(fresh_model("tdmpc2:ci"), cfg)
    del first
    gc.collect()
    second = Trainer(fresh_model("tdmpc2:ci"), cfg)  # the lock went with the first trainer
    second._output_lock.release()

    # another process holds the directory: refused while it lives, free once it is SIGKILLed
    out = tmp_path / "shared"
    out.mkdir()
    pid = zygote(out, "hold")
    try:
        _wait_for(lambda: not _lock_free(out), "the other process to take the lock", pid=pid)
        with pytest.raises(CheckpointError, match=f"process {pid}"):
            Trainer(fresh_model("tdmpc2:ci"), config(tmp_path, output_dir=str(out)))
    finally:
        _kill(pid)
    _wait_for(lambda: _lock_free(out), "the killed holder's lock to vanish", timeout=30)
    Trainer(fresh_model("tdmpc2:ci"), config(tmp_path, output_dir=str(out)))


def _lock_free(out: Path) -> bool:
    try:
        acquire_output_dir(out).release()
    except CheckpointError:
        return False
    return True


def test_leftovers_are_cleaned_and_an_interrupted_replacement_is_restored(tmp_path):
    import jax.numpy as jnp

    out = tmp_path / "run"
    writer = CheckpointWriter()
    writer.save(out / "checkpoint_4.pt", {"w": jnp.ones((3,))}, {"global_step": 4})
    writer.close()
    # the kill fell between "old -> hidden" and "staging -> name": only the hidden copy exists
    os.rename(out / "checkpoint_4.pt", out / ".checkpoint_4.pt.old-aaaaaaaaaaaa")
    (out / ".checkpoint_5.pt.tmp-bbbbbbbbbbbb.orbax-checkpoint-tmp-123").mkdir()
    (out / ".config.json.x1y2z3.tmp").write_text("{")
    removed = clean_leftovers(out)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint_4.pt"]
    assert len(removed) == 2 and is_finalized(out / "checkpoint_4.pt")


def test_output_dir_and_train_arguments_are_validated(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ConfigurationError, match="output_dir .* not a directory"):
        Trainer(fresh_model("tdmpc2:ci"), config(tmp_path, output_dir=str(afile)))
    with pytest.raises(ConfigurationError, match="output_dir must be a non-empty"):
        config(tmp_path, output_dir="")
    for seed in (-1, 2**32, 1.5, True):
        with pytest.raises(ConfigurationError, match="seed"):
            config(tmp_path, seed=seed)
    trainer = Trainer(fresh_model("tdmpc2:ci"), config(tmp_path, total_steps=2))
    for bad in (-3, 0, 2.5, 3.0, True, "4", 2**40):
        with pytest.raises(ConfigurationError, match="num_steps"):
            trainer.train(buffer(), num_steps=bad)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(Exception, match="num_batches") as info:
            trainer.evaluate(buffer(), num_batches=bad)
        assert type(info.value).__name__ in ("TrainingError", "ConfigurationError")
    assert trainer.state.global_step == 0
    trainer.train(buffer(), num_steps=2)
    final = Path(trainer.config.output_dir) / "checkpoint_final.pt"
    stamp = (final / "worldflux_checkpoint.json").stat().st_mtime_ns
    trainer.train(buffer(), num_steps=2)  # already there: no step, no new final checkpoint
    assert (final / "worldflux_checkpoint.json").stat().st_mtime_ns == stamp
