"""Run telemetry events as JSON lines (the reference's WASR event files), written by the monitoring callbacks.

``write_event(path, event, *, scenario, success, run_id, **fields)`` appends one JSON object per line to
`path` (parent directories created): ``{"event", "scenario", "success", "run_id", "timestamp" (Unix
seconds), "time_utc" (ISO-8601), **fields}``. Values that JSON cannot encode are written as strings; non-finite
floats as ``null`` (so every line is strict JSON). ``read_events(path)`` reads such a file back, skipping a
torn last line. ``make_run_id()`` gives a fresh ``"run-<utc time>-<8 hex>"`` id.
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

__all__ = ["make_run_id", "read_events", "write_event"]


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
    path: str | os.PathLike[str],
    event: str,
    *,
    scenario: str = "trainer",
    success: bool = True,
    run_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Append one event line to `path`; returns the record written."""
    now = time.time()
    record = {
        "event": event,
        "scenario": scenario,
        "success": bool(success),
        "run_id": run_id,
        "timestamp": now,
        "time_utc": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **{k: _clean(v) for k, v in fields.items()},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, allow_nan=False) + "\n"
    with open(target, "a", encoding="utf-8") as handle:  # one write per line: appends do not interleave
        handle.write(line)
    return record


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete event of the file at `path` (an unfinished last line is skipped)."""
    events = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            events.append(json.loads(line))
    return events
