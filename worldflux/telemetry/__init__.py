"""Local run telemetry (reference ``worldflux.telemetry``): JSON-lines event files; see ``worldflux.telemetry.wasr``."""

from __future__ import annotations

from .wasr import make_run_id, read_events, write_event

__all__ = ["make_run_id", "read_events", "write_event"]
