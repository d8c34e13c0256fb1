"""Shared test helpers: fixture locations and trace counting."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "parity"  # shipped copies of the reference parity fixtures


def fixtures(prefix: str) -> list[Path]:
    """Every shipped parity fixture whose name starts with `prefix`."""
    return sorted(FIXTURES.glob(f"{prefix}*.npz"))
