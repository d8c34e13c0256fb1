"""Callbacks: hook order, both hook signatures, the bundled callbacks and their validation errors."""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
from wf_training_helpers import BATCH, SEQ, buffer, config, fresh_model

from worldflux.training import Callback, CheckpointCallback, LoggingCallback, Trainer, TrainingConfig
from worldflux.training import callbacks as callbacks_module
from worldflux.training.callbacks import (
    CallbackList,
    EarlyStoppingCallback,
    EventFileWriter,
    ProgressCallback,
    masked_crc32c,
)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def _record(self, name, trainer):
        self.events.append((name, trainer.state.global_step, trainer.state.epoch))

    def on_train_begin(self, trainer):
        self._record("train_begin", trainer)

    def on_train_end(self, trainer):
        self._record("train_end", trainer)

    def on_epoch_begin(self, trainer):
        self._record("epoch_begin", trainer)

    def on_epoch_end(self, trainer):
        self._record("epoch_end", trainer)

    def on_step_begin(self, trainer):
        self._record("step_begin", trainer)

    def on_step_end(self, trainer):
        self._record("step_end", trainer)


EXPECTED_5_STEPS_EPOCHS_OF_2 = [
    ("train_begin", 0, 0),
    ("epoch_begin", 0, 0), ("step_begin", 0, 0), ("step_end", 1, 0), ("step_begin", 1, 0), ("step_end", 2, 0),
    ("epoch_end", 2, 0),
    ("epoch_begin", 2, 1), ("step_begin", 2, 1), ("step_end", 3, 1), ("step_begin", 3, 1), ("step_end", 4, 1),
    ("epoch_end", 4, 1),
    ("epoch_begin", 4, 2), ("step_begin", 4, 2), ("step_end", 5, 2),
    ("epoch_end", 5, 2),
    ("train_end", 5, 2),
]


class SizedProvider:
    """A provider whose ``len`` makes one epoch = 2 steps of batch 4 x seq 8."""

    def __init__(self):
        self.inner = buffer()

    def __len__(self):
        return 2 * BATCH * SEQ

    def sample(self, batch_size, seq_len, device="cpu"):
        return self.inner.sample(batch_size, seq_len, device)


def test_every_hook_is_called_at_its_documented_moment(tmp_path):
    recorder = Recorder()
    trainer = Trainer(fresh_model("tdmpc2:ci"), config(tmp_path, total_steps=5), callbacks=[recorder])
    trainer.train(SizedProvider())
    assert recorder.events == EXPECTED_5_STEPS_EPOCHS_OF_2
    # An iterable: one epoch per pass (2 batches per pass).
    recorder.events.clear()
    batches = [SizedProvider().sample(BATCH, SEQ) for _ in range(2)]
    trainer2 = Trainer(fresh_model("tdmpc2:ci"), config(tmp_path / "it", total_steps=5), callbacks=[recorder])
    trainer2.train(batches)
    assert [e[:2] for e in recorder.events] == [e[:2] for e in EXPECTED_5_STEPS_EPOCHS_OF_2]


def test_seed_002_custom_callback_with_step_and_losses(tmp_path, capsys):
    """The Training API page's example signature ``on_step_end(self, step, losses)`` works as written."""

    class MyCallback(Callback):
        def on_step_end(self, step, losses):
            if step % 2 == 0:
                print(f"Step {step}: loss={losses['loss']:.4f}")

    trainer = Trainer(fresh_model("tdmpc2:ci"), config(tmp_path, total_steps=4))
    trainer.add_callback(MyCallback())
    trainer.train(buffer())
    # (the default LoggingCallback's "Step s/total (p%) | ..." console lines are left out)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Step ") and "|" not in line]
    assert [line.split(":")[0] for line in lines] == ["Step 2", "Step 4"]
    assert all("loss=" in line for line in lines)


def test_seed_002_complete_example_flow(tmp_path, monkeypatch):
    """The Complete Example of the Training API page with a tiny preset and few steps."""
    monkeypatch.chdir(tmp_path)
    model = fresh_model("tdmpc2:ci")
    config_ = TrainingConfig(total_steps=3, batch_size=BATCH, sequence_length=SEQ, learning_rate=3e-4,
                             log_interval=1000, output_dir=str(tmp_path / "outputs"))
    trainer = Trainer(model, config_)
    trainer.add_callback(ProgressCallback())
    trainer.add_callback(LoggingCallback(log_interval=100))
    trainer.add_callback(CheckpointCallback(output_dir="./ckpt", save_interval=10000))
    trained_model = trainer.train(buffer())
    trained_model.save_pretrained("./final_model")
    assert (tmp_path / "final_model").is_dir()
    assert (tmp_path / "ckpt" / "checkpoint_best.pt").is_dir()  # its own best tracking, next to the default one
    assert (tmp_path / "outputs" / "checkpoint_best.pt").is_dir()


def test_early_stopping_in_training(tmp_path):
    stopper = EarlyStoppingCallback(patience=1, min_delta=1e9)
    trainer = Trainer(fresh_model("tdmpc2:ci"), config(tmp_path, total_steps=20, log_interval=1),
                      callbacks=[stopper])
    trainer.train(buffer())
    assert trainer.state.should_stop and trainer.state.global_step == 2


def _fake_trainer(**state):
    values = {"global_step": 0, "epoch": 0, "best_loss": float("inf"), "should_stop": False, "metrics": {}}
    values.update(state)
    trainer = SimpleNamespace(
        state=SimpleNamespace(**values),
        config=SimpleNamespace(total_steps=10, output_dir="unused", to_dict=lambda: {}),
        metrics_synced=True,
        saves=[],
    )
    trainer.save_checkpoint = lambda path, wait=True, copies=(): trainer.saves.append((Path(path).name,
                                                                                        [Path(c).name for c in copies]))
    return trainer


def test_early_stopping_patience_in_steps():
    stopper = EarlyStoppingCallback(patience=3, min_delta=0.0)
    trainer = _fake_trainer()
    stopper.on_train_begin(trainer)
    for step, loss in enumerate([1.0, 0.5, 0.6, 0.6, 0.6], start=1):
        trainer.state.global_step, trainer.state.metrics = step, {"loss": loss}
        stopper.on_step_end(trainer)
        assert trainer.state.should_stop == (step == 5)
    assert stopper.best == 0.5 and stopper.counter == 3
    other = EarlyStoppingCallback(monitor="missing")
    other.on_step_end(trainer)  # missing metric: no-op
    unsynced = _fake_trainer(metrics={"loss": 0.0})
    unsynced.metrics_synced = False
    stopper2 = EarlyStoppingCallback(patience=1)
    stopper2.on_step_end(unsynced)
    assert stopper2.best == float("inf")


def test_checkpoint_callback_periodic_and_best(tmp_path):
    callback = CheckpointCallback(save_interval=2, output_dir=str(tmp_path / "c"), save_best=True, max_checkpoints=None)
    trainer = _fake_trainer()
    callback.on_train_begin(trainer)
    assert (tmp_path / "c").is_dir()
    for step, loss in enumerate([1.0, 0.5, 0.7, 0.9], start=1):
        trainer.state.global_step, trainer.state.metrics = step, {"loss": loss}
        callback.on_step_end(trainer)
    assert trainer.saves == [
        ("checkpoint_best.pt", []),
        ("checkpoint_2.pt", ["checkpoint_best.pt"]),  # written once, copied to the best name
        ("checkpoint_4.pt", []),
    ]
    assert trainer.state.best_loss == 0.5


def test_best_saves_are_held_back_while_writes_would_exceed_their_time_share(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(callbacks_module.time, "monotonic", lambda: clock[0])
    trainer = _fake_trainer()
    trainer.checkpoint_write_seconds = 0.2  # so each best save holds the next back for 0.2 / 0.02 = 10 s
    trainer.checkpoint_snapshot = lambda: ("snapshot of step", trainer.state.global_step)
    trainer.save_checkpoint = lambda path, wait=True, copies=(), snapshot=None: trainer.saves.append(
        (Path(path).name, [Path(c).name for c in copies], snapshot))
    callback = CheckpointCallback(save_interval=100, output_dir=str(tmp_path), save_best=True)
    callback.on_train_begin(trainer)

    def step(number: int, loss: float, at: float) -> None:
        clock[0] = at
        trainer.state.global_step, trainer.state.metrics = number, {"loss": loss}
        callback.on_step_end(trainer)

    step(1, 1.0, 100.0)  # first best: written at once
    step(2, 0.9, 101.0)  # held back: snapshot kept
    step(3, 0.8, 102.0)  # replaces the pending snapshot
    step(4, 0.85, 105.0)  # not better, still inside the window: nothing
    assert trainer.saves == [("checkpoint_best.pt", [], None)] and trainer.state.best_loss == 0.8
    step(5, 0.95, 110.5)  # window over: the pending best (step 3) is written
    assert trainer.saves[1] == ("checkpoint_best.pt", [], ("snapshot of step", 3))
    step(6, 0.7, 111.0)  # held back again; training ends: written then
    callback.on_train_end(trainer)
    assert trainer.saves[2:] == [("checkpoint_best.pt", [], ("snapshot of step", 6))]
    callback.on_train_end(trainer)
    assert len(trainer.saves) == 3  # nothing pending any more
    step(100, 0.6, 112.0)  # a periodic save that is also a best goes out at once, with the best copy
    assert trainer.saves[3] == ("checkpoint_100.pt", ["checkpoint_best.pt"], None)


def _read_events(path: Path) -> list[bytes]:
    data = path.read_bytes()
    events, offset = [], 0
    while offset < len(data):
        header = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[offset + 8:offset + 12])[0] == masked_crc32c(header)
        body = data[offset + 12:offset + 12 + length]
        assert struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])[0] == masked_crc32c(body)
        events.append(body)
        offset += 16 + length
    return events


def test_logging_callback_console_and_tensorboard(tmp_path, caplog):
    logging_cb = LoggingCallback(log_interval=2, tensorboard_dir=str(tmp_path / "tb"))
    trainer = _fake_trainer()
    with caplog.at_level(logging.INFO, logger="worldflux.training"):
        logging_cb.on_train_begin(trainer)
        for step in range(1, 5):
            trainer.state.global_step, trainer.state.metrics = step, {"loss": 1.0 / step}
            logging_cb.on_step_end(trainer)
        logging_cb.on_train_end(trainer)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Step ")]
    assert len(lines) == 2 and lines[0].startswith("Step 2/10 (20.0%) | loss=0.5000 |") and "steps/s" in lines[0]
    files = list((tmp_path / "tb").iterdir())
    assert len(files) == 1 and files[0].name.startswith("events.out.tfevents.")
    events = _read_events(files[0])
    assert b"brain.Event:2" in events[0]
    loss_events = [e for e in events if b"train/loss" in e]
    assert len(loss_events) == 2
    assert struct.pack("<f", 0.25) in loss_events[1]


def test_event_file_writer_framing(tmp_path):
    writer = EventFileWriter(tmp_path)
    writer.add_scalar("a/b", 3.5, 7)
    writer.close()
    writer.close()
    events = _read_events(writer.path)
    assert len(events) == 2 and b"a/b" in events[1] and struct.pack("<f", 3.5) in events[1]
    with pytest.raises(ValueError, match="closed"):
        writer.add_scalar("x", 1.0, 1)


def test_progress_callback_and_callback_list(capsys):
    progress = ProgressCallback(desc="Training")
    trainer = _fake_trainer()
    progress.on_train_begin(trainer)
    for step in range(1, 4):
        trainer.state.global_step, trainer.state.metrics = step, {"loss": 0.123456}
        progress.on_step_end(trainer)
    progress.on_train_end(trainer)
    err = capsys.readouterr().err
    assert "Training" in err and "3/10" in err

    calls = []

    class NoArgs(Callback):
        def on_train_begin(self):
            calls.append("no-args")

        def on_step_end(self, step, losses):
            calls.append(("step", step, dict(losses)))

    callbacks = CallbackList([NoArgs()])
    callbacks.on_train_begin(trainer)
    callbacks.on_step_end(trainer)
    callbacks.on_epoch_end(trainer)  # default no-op
    assert calls == ["no-args", ("step", 3, {"loss": 0.123456})] and len(callbacks) == 1


def test_documented_validation_errors():
    with pytest.raises(ValueError, match="log_interval must be positive"):
        LoggingCallback(log_interval=0)
    with pytest.raises(ValueError, match="save_interval must be positive"):
        CheckpointCallback(save_interval=0)
    with pytest.raises(ValueError, match="max_checkpoints must be positive"):
        CheckpointCallback(max_checkpoints=0)
    CheckpointCallback(max_checkpoints=None)
    with pytest.raises(ValueError, match="patience must be positive"):
        EarlyStoppingCallback(patience=0)
    with pytest.raises(ValueError, match="min_delta must be non-negative"):
        EarlyStoppingCallback(min_delta=-1.0)
    import worldflux.training as training

    assert {"Trainer", "train", "Callback", "LoggingCallback", "CheckpointCallback"} <= set(training.__all__)
    assert "EarlyStoppingCallback" not in training.__all__ and "ProgressCallback" not in training.__all__


def test_logging_callback_prints_when_logging_is_not_configured(capsys):
    import types

    from worldflux.training import callbacks as callbacks_module

    trainer = types.SimpleNamespace(
        state=types.SimpleNamespace(global_step=0, metrics={"loss": 0.25}),
        config=types.SimpleNamespace(total_steps=4),
        target_steps=4,
    )
    log = callbacks_module.logger
    saved = log.propagate, log.handlers[:]
    log.propagate, log.handlers[:] = False, []  # no handler anywhere: as in a script that configures no logging
    try:
        cb = LoggingCallback(log_interval=2)
        cb.on_train_begin(trainer)
        for step in (1, 2):
            trainer.state.global_step = step
            cb.on_step_end(trainer)
        quiet = LoggingCallback(log_interval=2, console=False)
        quiet.on_train_begin(trainer)
        quiet.on_step_end(trainer)
    finally:
        log.propagate, log.handlers[:] = saved
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Step ")]
    assert lines == [lines[0]] and lines[0].startswith("Step 2/4 (50.0%) | loss=0.2500 |")
