"""Reports, health signals, clocks, the monitoring / report / eval / event-bus callbacks and the profilers."""

from __future__ import annotations

import json
import math
import time
from types import SimpleNamespace

import pytest
import torch
from wf_training_helpers import buffer, config, fresh_model

from worldflux.core.events import Event, EventBus
from worldflux.telemetry.wasr import read_events
from worldflux.training import (
    DiagnosisCallback,
    HealthSignal,
    HeartbeatCallback,
    LocalClock,
    LossCurveSummary,
    PerformanceMonitor,
    RatioUpdateScheduler,
    TorchProfilerWrapper,
    Trainer,
    TrainingReport,
    TrainingReportCallback,
)
from worldflux.training.callbacks import CallbackAdapter, EvalCallback
from worldflux.training.event_callbacks import EventBusCallback
from worldflux.training.report import assess_health, health_score, summarize_loss_curve

# ---------------------------------------------------------------------------------------------- reports


def test_loss_curve_summary_by_hand():
    summary = summarize_loss_curve([4.0, 3.0, 2.0, 2.5], steps=[10, 20, 30, 40])
    assert (summary.initial_loss, summary.final_loss, summary.best_loss, summary.best_step) == (4.0, 2.5, 2.0, 30)
    # least squares over x = 0..3: slope = sum((x-1.5)(y-2.875)) / sum((x-1.5)^2) = -2.75 / 5
    assert summary.convergence_slope == pytest.approx(-0.55)
    assert not summary.plateau_detected
    flat = summarize_loss_curve([5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    assert flat.plateau_detected  # last quarter [1, 1] vs the quarter before [1, 1]
    falling = summarize_loss_curve([8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    assert not falling.plateau_detected and falling.convergence_slope == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="steps"):
        summarize_loss_curve([1.0, 2.0], steps=[1])


def test_health_signals_and_score():
    good = summarize_loss_curve([3.0, 2.0, 1.0])
    signals = assess_health(good, num_losses=3, non_finite_count=0, throughputs=[10.0, 10.0], grad_norms=[1.0])
    assert {s.status for s in signals.values()} == {"healthy"} and health_score(signals) == pytest.approx(1.0)
    bad = assess_health(summarize_loss_curve([1.0, 2.0]), num_losses=2, non_finite_count=1,
                        throughputs=[1.0, 10.0], grad_norms=[float("nan")])
    assert bad["loss_convergence"].status == "warning"
    assert bad["numerical_stability"].status == "critical" and bad["numerical_stability"].value == pytest.approx(2 / 3)
    assert bad["throughput_stability"].status == "warning"  # CV = 4.5 / 5.5 > 0.5
    assert bad["gradient_health"].status == "critical"
    # weights 0.4 (warning 0.5) + 0.3 (critical) + 0.15 (warning) + 0.15 (critical), normalised by 1.0
    assert health_score(bad) == pytest.approx(0.4 * 0.5 + 0.15 * 0.5)
    assert assess_health(summarize_loss_curve([]), num_losses=0, non_finite_count=0)["loss_convergence"].status == (
        "critical")
    with pytest.raises(ValueError, match="status"):
        HealthSignal("x", "fine", 1.0, "")


def test_training_report_round_trip(tmp_path):
    summary = LossCurveSummary(2.0, 1.0, 0.5, 7, -0.1, False)
    report = TrainingReport("M", 10, 1.5, 1.0, 0.5, 0.2, 6.6, 0.9, {"a": HealthSignal("a", "healthy", 1.0, "ok")},
                            summary, ["r"])
    path = tmp_path / "sub" / "report.json"
    report.save(path)
    assert TrainingReport.from_dict(json.loads(path.read_text())) == report


# ---------------------------------------------------------------------------------------------- clocks


def test_local_clock_counts_every_crossed_boundary():
    clock = LocalClock(interval=10)
    assert not clock.ready(9) and clock.consume(9) == 0
    assert clock.ready(10) and clock.consume(10) == 1 and clock.consume(10) == 0
    assert clock.consume(35) == 2 and clock.consume(39) == 0 and clock.consume(40) == 1
    assert LocalClock(interval=0).interval == 1


def test_ratio_update_scheduler_follows_train_ratio():
    scheduler = RatioUpdateScheduler(train_ratio=16, batch_size=4, batch_length=8)
    assert scheduler.updates_per_env_step == 0.5
    assert [scheduler.on_env_step() for _ in range(4)] == [0, 1, 0, 1]
    assert scheduler.on_env_step(7) == 3 and scheduler.credit == pytest.approx(0.5)
    assert scheduler.target_updates == 5
    with pytest.raises(ValueError, match="env_steps"):
        scheduler.on_env_step(-1)


# ---------------------------------------------------------------------------------------------- fake trainer


def _fake(tmp_path, **metrics):
    state = SimpleNamespace(global_step=0, epoch=0, metrics=dict(metrics), ttfi_sec=0.5, train_start_time=None)
    return SimpleNamespace(state=state, config=SimpleNamespace(output_dir=str(tmp_path)), metrics_synced=True,
                           model=torch.nn.Linear(2, 1), runtime_profile=lambda: {"throughput_steps_per_sec": 4.0})


def _run(callback, trainer, losses, synced=lambda step: True, **extra):
    callback.on_train_begin(trainer)
    for i, loss in enumerate(losses, start=1):
        trainer.state.global_step = i
        trainer.metrics_synced = synced(i)
        trainer.state.metrics = {"loss": loss, **{k: v(i) if callable(v) else v for k, v in extra.items()}}
        callback.on_step_end(trainer)


def test_heartbeat_fires_at_the_next_synced_step(tmp_path):
    trainer = _fake(tmp_path)
    heartbeat = HeartbeatCallback(interval_steps=3, run_id="r1")
    _run(heartbeat, trainer, [1.0] * 10, synced=lambda s: s % 2 == 0, flops=8.0, power_watts=2.0)
    events = read_events(tmp_path / "heartbeat.jsonl")
    assert [e["step"] for e in events] == [4, 6, 10]  # due at 3 -> 4, at 6, at 9 -> 10
    assert {e["event"] for e in events} == {"heartbeat"} and {e["run_id"] for e in events} == {"r1"}
    assert events[0]["throughput_steps_per_sec"] == 4.0 and events[0]["flops_per_watt"] == 4.0
    with pytest.raises(ValueError, match="interval_steps"):
        HeartbeatCallback(interval_steps=0)


def test_diagnosis_flags_each_pathology(tmp_path):
    kinds = lambda cb: [i["kind"] for i in cb.issues]  # noqa: E731
    nan = DiagnosisCallback(check_interval=1)
    _run(nan, _fake(tmp_path), [1.0, float("nan")], grad_norm=1.0)
    assert kinds(nan) == ["non_finite_loss"] and "non-finite" in nan.last_suggestions[0]
    assert read_events(tmp_path / "diagnostics.jsonl")[-1]["kinds"] == ["non_finite_loss"]

    diverging = DiagnosisCallback(check_interval=1, metrics_path=tmp_path / "d.jsonl")
    _run(diverging, _fake(tmp_path), [2.0, 1.5, 30.0], grad_norm=1.0)
    assert kinds(diverging) == ["diverging_loss"]

    stalled = DiagnosisCallback(check_interval=1, stall_checks=3)
    _run(stalled, _fake(tmp_path), [1.0, 1.0, 1.0, 1.0, 0.5], grad_norm=1.0)
    assert kinds(stalled) == ["stalled_loss"] and stalled.last_suggestions == []  # recovered at the last check

    grads = DiagnosisCallback(check_interval=2, gradient_min_norm=1e-3)
    _run(grads, _fake(tmp_path), [3.0, 2.0, 1.0, 0.5], grad_norm=lambda s: 1e-6 if s == 2 else float("inf"),
         skipped_steps=lambda s: 0.0 if s < 4 else 2.0, latent_std=0.0)
    assert kinds(grads) == ["vanishing_gradients", "latent_collapse", "non_finite_gradients", "skipped_steps",
                            "latent_collapse"]

    healthy = DiagnosisCallback(check_interval=1)
    _run(healthy, _fake(tmp_path), [3.0, 2.0, 1.0], grad_norm=0.5)
    assert healthy.issues == []


def test_diagnosis_reads_torch_gradients(tmp_path):
    trainer = _fake(tmp_path)
    for p in trainer.model.parameters():
        p.grad = torch.full_like(p, float("nan"))
    callback = DiagnosisCallback(check_interval=1)
    _run(callback, trainer, [1.0])
    assert [i["kind"] for i in callback.issues] == ["non_finite_gradients"]


def test_report_callback_counts_non_finite_and_skips_unsynced(tmp_path):
    trainer = _fake(tmp_path)
    callback = TrainingReportCallback(output_dir=tmp_path, metrics_path=tmp_path / "ev.jsonl")
    _run(callback, trainer, [5.0, 9.0, 4.0, float("nan"), 3.0, 2.0], synced=lambda s: s != 2)
    callback.on_train_end(trainer)
    saved = json.loads((tmp_path / "training_report.json").read_text())
    assert saved["loss_curve_summary"]["initial_loss"] == 5.0 and saved["loss_curve_summary"]["best_step"] == 6
    assert saved["health_signals"]["numerical_stability"]["status"] == "critical"  # 1 of 5 synced losses
    assert saved["total_steps"] == 6 and saved["model_id"] == "Linear"
    assert read_events(tmp_path / "ev.jsonl")[-1]["event"] == "run.summary"


def test_eval_callback_records_failures_and_disables_after_ten_in_a_row(tmp_path):
    class Broken:
        def evaluate(self, data, num_batches):
            raise RuntimeError("no data")

    trainer = _fake(tmp_path)
    trainer.evaluate = Broken().evaluate
    callback = EvalCallback(eval_interval=1, data=object())
    for step in range(1, 15):
        trainer.state.global_step = step
        callback.on_step_end(trainer)
    assert len(callback.history) == EvalCallback.MAX_CONSECUTIVE_EVAL_FAILURES == 10
    assert callback.eval_disabled and callback.history[0]["failures"] == ["RuntimeError: no data"]
    with pytest.raises(ValueError, match="suite"):
        EvalCallback(suite="exhaustive")


# ---------------------------------------------------------------------------------------------- events


def test_event_bus_patterns_priorities_and_isolation(caplog):
    bus, seen = EventBus(), []
    bus.subscribe("step.end", lambda e: seen.append(("exact", e.data["step"])), priority=60)
    bus.subscribe("step.*", lambda e: seen.append(("glob", e.event_type)), priority=10)
    bus.subscribe("step.end", lambda e: 1 / 0)
    sub = bus.subscribe("train.*", lambda e: seen.append(("train", e.event_type)))
    bus.publish(Event("step.end", {"step": 3}))
    bus.publish(Event("train.begin"))
    assert seen == [("glob", "step.end"), ("exact", 3), ("train", "train.begin")]
    assert "failed for event step.end" in caplog.text
    bus.unsubscribe(sub)
    bus.enabled = False
    bus.publish(Event("step.end", {"step": 4}))
    bus.enabled = True
    bus.publish(Event("train.end"))
    assert len(seen) == 3 and bus.subscriber_count == 3


def test_callback_adapter_drives_both_hook_signatures(tmp_path):
    bus, calls = EventBus(), []

    class New:
        def on_step_end(self, trainer):
            calls.append(("new", trainer.state.global_step))

    class Old:
        def on_step_end(self, step, losses):
            calls.append(("old", step, losses["loss"]))

    adapters = [CallbackAdapter(bus, New()), CallbackAdapter(bus, Old())]
    trainer = _fake(tmp_path, loss=0.25)
    trainer.state.global_step = 5
    EventBusCallback(bus).on_step_end(trainer)
    assert calls == [("new", 5), ("old", 5, 0.25)]
    for adapter in adapters:
        adapter.close()
    EventBusCallback(bus).on_step_end(trainer)
    assert len(calls) == 2 and bus.subscriber_count == 0
    with pytest.raises(TypeError, match="EventBus"):
        CallbackAdapter(object(), New())


# ---------------------------------------------------------------------------------------------- profiling


def test_performance_monitor_measures_and_summarises(tmp_path):
    monitor = PerformanceMonitor(enabled=True)
    for _ in range(3):
        with monitor.measure("sleep_ms"):
            time.sleep(0.01)
    monitor.record("x", 1.0)
    monitor.record("x", 3.0)
    summary = monitor.summary()
    assert summary["sleep_ms"]["count"] == 3 and summary["sleep_ms"]["mean"] >= 9.0
    assert summary["x"] == {"mean": 2.0, "p95": pytest.approx(2.9), "max": 3.0, "count": 2.0}
    off = PerformanceMonitor()
    with off.measure("y"):
        pass
    assert off.summary() == {}
    # as a callback: per-step time over the spans between synced steps
    trainer = _fake(tmp_path)
    monitor.reset()
    monitor.on_train_begin(trainer)
    for step in range(1, 5):
        time.sleep(0.01)
        trainer.state.global_step, trainer.metrics_synced = step, step % 2 == 0
        monitor.on_step_end(trainer)
    assert monitor.summary()["step_ms"]["count"] == 2 and monitor.summary()["step_ms"]["mean"] >= 9.0
    assert 0 < monitor.throughput() <= 110


def test_torch_profiler_wrapper_writes_a_torch_trace(tmp_path):
    wrapper = TorchProfilerWrapper(str(tmp_path / "torch"), wait_steps=0, warmup_steps=1, active_steps=1)
    layer = torch.nn.Linear(4, 4)
    assert wrapper.resolve_backend(layer) == "torch"
    with wrapper.profile(layer) as prof:
        for _ in range(3):
            layer(torch.randn(2, 4)).sum().backward()
            prof.step()
    assert any(p.name.endswith(".pt.trace.json") for p in (tmp_path / "torch").iterdir())
    with pytest.raises(ValueError, match="active_steps"):
        TorchProfilerWrapper(active_steps=0)


def test_torch_profiler_wrapper_uses_jax_profiler_for_jax_models(tmp_path):
    import jax.numpy as jnp

    model = fresh_model("tdmpc2:ci")
    wrapper = TorchProfilerWrapper(str(tmp_path / "jax"), wait_steps=1, warmup_steps=0, active_steps=2, repeat=1)
    assert wrapper.resolve_backend(model) == "jax"
    with wrapper.profile(model) as prof:
        for i in range(5):
            (jnp.ones((8, 8)) * i).sum().block_until_ready()
            prof.step()
    assert prof.traces == 1
    assert list((tmp_path / "jax").rglob("*.xplane.pb"))


# ---------------------------------------------------------------------------------------------- a real run


def test_monitoring_callbacks_in_a_real_jax_run(tmp_path):
    data = buffer()
    bus, steps_seen = EventBus(), []
    bus.subscribe("step.end", lambda e: steps_seen.append(e.data["step"]))
    report = TrainingReportCallback(output_dir=tmp_path / "out")
    evaluation = EvalCallback(eval_interval=3, data=data, metrics_path=tmp_path / "eval.jsonl")
    diagnosis = DiagnosisCallback(check_interval=2)
    heartbeat = HeartbeatCallback(interval_steps=2)
    cfg = config(tmp_path, total_steps=6, profile=True)
    trainer = Trainer(fresh_model("tdmpc2:ci"), cfg, callbacks=[report, evaluation, diagnosis, heartbeat,
                                                               EventBusCallback(bus)])
    trainer.train(data)
    assert steps_seen == [1, 2, 3, 4, 5, 6]
    saved = json.loads((tmp_path / "out" / "training_report.json").read_text())
    assert saved["total_steps"] == 6 and saved["model_id"] == "TDMPC2WorldModel"
    assert math.isfinite(saved["final_loss"]) and saved["health_signals"]["numerical_stability"]["status"] == (
        "healthy")
    assert report.report.loss_curve_summary.best_step in (2, 4, 6)  # synced every log_interval=2 steps
    assert [r["step"] for r in evaluation.history] == [3, 6] and all(r["passed"] for r in evaluation.history)
    assert {"eval/loss", "eval/imagined_reward_mean"} <= set(evaluation.history[0]["metrics"])
    assert [e["event"] for e in read_events(tmp_path / "eval.jsonl")] == ["eval.quick", "eval.quick"]
    assert diagnosis.issues == [] or {i["kind"] for i in diagnosis.issues} <= {"stalled_loss"}
    assert [e["step"] for e in read_events(tmp_path / "out" / "heartbeat.jsonl")] == [2, 4, 6]
    monitors = [cb for cb in trainer.callbacks if isinstance(cb, PerformanceMonitor)]
    assert len(monitors) == 1 and monitors[0].summary()["step_ms"]["count"] == 3
