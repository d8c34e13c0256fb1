"""Run telemetry events as JSON lines (reference ``worldflux.telemetry.wasr``), written by the monitoring callbacks.

``write_event(*, event, scenario, success, duration_sec=0.0, ttfi_sec=0.0, artifacts=None, error="", run_id=None,
path=None, **fields)`` appends one JSON object per line to `path` (parent directories created; when None,
``$WORLDFLUX_METRICS_PATH`` or ``./.worldflux/metrics.jsonl``): ``{"event", "scenario", "success", "run_id",
"duration_sec", "ttfi_sec", "artifacts", "error", "timestamp" (Unix seconds), "time_utc" (ISO-8601),
**fields}``. Values JSON cannot encode are written as strings, non-finite floats as ``null`` (every line is
strict JSON). Nothing leaves the machine. ``read_events(path)`` reads a file back (``[]`` when it does not
exist; a torn last line is skipped). ``make_run_id()`` gives a fresh ``"run-<utc time>-<8 hex>"`` id.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_METRICS_PATH", "make_run_id", "read_events", "write_event"]

DEFAULT_METRICS_PATH = Path(".worldflux") / "metrics.jsonl"


def make_run_id() -> str:
    """A fresh run id: ``run-YYYYmmddTHHMMSSZ-<8 hex>``."""
    return f"run-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    try:
        return _clean(float(value))
    except (TypeError, ValueError):
        return str(value)


def write_event(
    *,
    event: str,
    scenario: str = "trainer",
    success: bool = True,
    duration_sec: float = 0.0,
    ttfi_sec: float = 0.0,
    artifacts: dict[str, Any] | None = None,
    error: str = "",
    run_id: str | None = None,
    path: str | os.PathLike[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Append one event line (see the module docstring); returns the record written."""
    now = time.time()
    record = {
        "event": event,
        "scenario": scenario,
        "success": bool(success),
        "run_id": run_id,
        "duration_sec": duration_sec,
        "ttfi_sec": ttfi_sec,
        "artifacts": dict(artifacts or {}),
        "error": error,
        "timestamp": now,
        "time_utc": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **fields,
    }
    record = {k: _clean(v) for k, v in record.items()}
    target = Path(path) if path is not None else Path(os.environ.get("WORLDFLUX_METRICS_PATH") or DEFAULT_METRICS_PATH)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, allow_nan=False) + "\n"
    with open(target, "a", encoding="utf-8") as handle:  # one write per line: appends do not interleave
        handle.write(line)
    return record


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete event of the file at `path` (``[]`` when there is no file)."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return []
    events = []
    with handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            events.append(json.loads(line))
    return events
