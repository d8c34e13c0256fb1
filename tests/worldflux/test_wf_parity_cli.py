"""`python -m worldflux.parity`: every reference fixture reproduced through the public WorldModel API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import FIXTURES
from worldflux import parity

CASES = sorted(FIXTURES.glob("*.npz"))
assert len(CASES) == 3, f"the shipped parity fixtures are missing from {FIXTURES}"


@pytest.mark.parametrize("fixture", CASES, ids=[p.stem for p in CASES])
def test_fixture_passes_through_public_api(fixture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parity.main([str(fixture), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    groups = {row["key"].split("/", 1)[0] for row in report["rows"]}
    assert {"encode", "transition", "decode", "rollout", "loss", "grad"} <= groups
    with np.load(fixture) as data:
        compared = [k for k in data.files if k.split("/", 1)[0] in parity_groups()]
    assert len(report["rows"]) == len(compared)  # every fixture key has a row


def parity_groups() -> tuple[str, ...]:
    from worldflux_jax.parity import COMPARED_GROUPS

    return COMPARED_GROUPS


def test_mismatch_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / "tdmpc2_ci.json", tmp_path / "case.json")
    with np.load(FIXTURES / "tdmpc2_ci.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["loss/total"] = arrays["loss/total"] + 1.0
    np.savez(tmp_path / "case.npz", **arrays)
    assert parity.main([str(tmp_path / "case.npz")]) == 1
    out = capsys.readouterr().out
    assert "loss/total" in out and "FAIL" in out and "1 outside" in out


def test_missing_fixture_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        parity.main([str(tmp_path / "nope.npz")])
