"""The training dashboard: recorded state, the JSON endpoint, the callback hooks, shutdown, and the page in a
real headless chromium (content asserted after live updates)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest

from worldflux.dashboard import DashboardCallback, DashboardServer, DashboardState


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def _fake_trainer(step: int, loss: float, synced: bool = True) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(global_step=step, metrics={"loss": loss, "reward": loss / 2}),
                           metrics_synced=synced, target_steps=100)


def test_callback_records_trainer_and_online_hooks() -> None:
    state = DashboardState(history_max_points=10, max_frames=3)
    callback = DashboardCallback(state, frames=True, fps=1000)
    assert callback.wants_frames and callback.wants_imagination
    callback.on_train_begin(_fake_trainer(0, 1.0))
    for step in range(1, 41):
        callback.on_step_end(_fake_trainer(step, 1.0 / step, synced=step % 2 == 0))
    callback.on_phase_change("collecting")
    callback.on_episode_end({"index": 0, "return": -123.5, "length": 200, "env_steps": 200, "terminated": False})
    callback.on_eval_end({"env_steps": 200, "returns": [-1.0, -3.0], "mean_return": -2.0})
    for _ in range(5):
        time.sleep(0.003)  # fps=1000: at most one frame per millisecond is kept
        callback.on_env_frame(np.full((6, 4, 3), 200, np.uint8))
    callback.on_env_frame(np.zeros((6, 4, 3), np.uint8))  # arrives too soon after the last one: dropped
    callback.on_imagination({"real": np.zeros((5, 3)), "imagined": np.ones((5, 3))})
    snap = state.snapshot()
    assert snap["phase"] == "collecting"
    assert snap["train_step"] == 40 and snap["target_steps"] == 100
    loss = snap["losses"]["loss"]
    assert len(loss["x"]) <= 10 and loss["x"][0] == 2 and loss["x"][-1] >= 36  # thinned, still spans the run
    assert snap["episodes"] == 1 and snap["last_return"] == -123.5 and snap["env_steps"] == 200
    assert snap["eval_returns"]["y"] == [-2.0]
    assert snap["frames_seen"] == 5 and snap["frame"]["width"] == 4 and snap["frame"]["height"] == 6
    assert snap["imagination"]["kind"] == "series" and len(snap["imagination"]["real"]) == 3
    assert json.loads(json.dumps(snap)) == snap
    restored = DashboardState.from_snapshot(snap).snapshot()
    assert restored["losses"] == snap["losses"] and restored["returns"] == snap["returns"]
    with pytest.raises(ValueError, match="phase must be one of"):
        state.set_phase("sleeping")


def test_frames_not_requested_without_gameplay() -> None:
    assert DashboardCallback(DashboardState(), frames=False).wants_frames is False


def test_server_serves_json_keeps_serving_and_closes_fast() -> None:
    state = DashboardState(title="unit")
    server = DashboardServer(state, port=0, refresh_ms=200)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        page = _get(server.url).decode()
        assert "WorldFlux dashboard" in page and "setTimeout(poll, 200)" in page
        state.record_losses(5, {"loss": 0.5})
        state.set_phase("done")  # training over: the server still answers
        data = json.loads(_get(server.url + "api/state"))
        assert data["phase"] == "done" and data["losses"]["loss"]["y"] == [0.5]
    finally:
        start = time.perf_counter()
        server.close()
        assert time.perf_counter() - start < 3.0
    server.close()  # idempotent
    with pytest.raises(ValueError, match="loopback"):
        DashboardServer(state, host="0.0.0.0", port=0)


def test_close_does_not_wait_for_a_stalled_client() -> None:
    import socket

    server = DashboardServer(DashboardState(), port=0)
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    stalled.sendall(b"GET /api/state HTTP/1.1\r\n")  # an unfinished request: its handler thread blocks reading
    time.sleep(0.2)
    try:
        start = time.perf_counter()
        server.close()
        assert time.perf_counter() - start < 3.0
    finally:
        stalled.close()


def _find_browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _dump_dom(browser: str, url: str) -> str:
    with tempfile.TemporaryDirectory(prefix="wf-chromium-") as profile:
        args = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=4000", "--dump-dom", url,
        ]
        result = subprocess.run(args, capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": profile})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _text(dom: str, element_id: str) -> str:
    marker = f'id="{element_id}"'
    start = dom.index(marker)
    start = dom.index(">", start) + 1
    return dom[start:dom.index("<", start)]


def _attr(dom: str, element_id: str, attribute: str) -> str:
    start = dom.index(f'id="{element_id}"')
    tag = dom[dom.rindex("<", 0, start):dom.index(">", start)]
    key = f'{attribute}="'
    begin = tag.index(key) + len(key)
    return tag[begin:tag.index('"', begin)]


def test_dashboard_page_in_headless_chromium_shows_live_updates() -> None:
    browser = _find_browser()
    if browser is None:
        pytest.skip("no chromium browser installed (apt-get install chromium); .ci/run installs it where it can")
    state = DashboardState(title="browser-test")
    callback = DashboardCallback(state, frames=True, fps=1000)
    server = DashboardServer(state, port=0, refresh_ms=100)
    try:
        callback.on_phase_change("training")
        callback.on_train_begin(_fake_trainer(0, 2.0))
        for step in range(1, 11):
            callback.on_step_end(_fake_trainer(step, 2.0 / step))
        first = _dump_dom(browser, server.url)
        assert _text(first, "phase") == "training"
        assert _text(first, "loss-latest") == "0.2000"
        assert int(_attr(first, "loss-plot", "data-points")) == 20  # loss + reward, 10 points each
        assert _text(first, "episodes") == "0"

        # live updates: an episode, an evaluation, a frame, imagination, and the end of training
        callback.on_phase_change("collecting")
        callback.on_episode_end({"index": 0, "return": -321.25, "length": 200, "env_steps": 200,
                                 "terminated": False})
        callback.on_eval_end({"env_steps": 200, "returns": [-100.0], "mean_return": -100.0})
        callback.on_env_frame(np.zeros((8, 8, 3), np.uint8))
        callback.on_imagination({"real": np.arange(6.0), "imagined": np.arange(6.0) + 1})
        for step in range(11, 16):
            callback.on_step_end(_fake_trainer(step, 0.1))
        callback.on_phase_change("done")
        second = _dump_dom(browser, server.url)
        assert _text(second, "phase") == "done"
        assert _text(second, "episodes") == "1"
        assert _text(second, "last-return") == "-321.3"
        assert _text(second, "frames-seen") == "1"
        assert _text(second, "loss-latest") == "0.1000"
        assert int(_attr(second, "return-plot", "data-points")) == 2  # one episode + one evaluation
        assert int(_attr(second, "imagination-plot", "data-points")) == 12
        assert "browser-test" in second
    finally:
        server.close()
