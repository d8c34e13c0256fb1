"""``quick_verify``: load a saved world model and check its imagination (reference ``worldflux.verify.quick``).

``quick_verify(target, *, env="atari/pong", episodes=10, horizon=15, device="cpu", baseline_path=None)``
loads `target` (a ``save_pretrained`` directory, or a run directory holding one under ``model/``), then runs
`episodes` imagined episodes: episode ``i`` encodes a standard-normal observation (torch seed ``42 + i``) and
rolls out `horizon` standard-normal actions; its score is the sum of the predicted rewards (the negative norm
of the last latent for models without rewards). Verdict:

* every score and state must be finite;
* with a baseline for `env` in the JSON file `baseline_path` (``{env: {"mean": m, "margin_ratio": r, ...}}``):
  the one-sided 95% bootstrap upper bound (2000 resamples, seed 0) of the mean drop ratio
  ``(m - score) / |m|`` must be below ``r`` (non-inferiority; default margin 0.15).

The reference bundles baseline numbers for two environments; we bundle none (see ``docs/decisions.md``): without
a baseline for `env` only the finiteness check decides.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PROTOCOL_VERSION", "QuickVerifyResult", "quick_verify"]

PROTOCOL_VERSION = "1.0"
DEFAULT_MARGIN = 0.15


@dataclass(frozen=True)
class QuickVerifyResult:
    """The outcome of ``quick_verify``; ``stats`` holds the scores and, with a baseline, the test's numbers."""

    passed: bool
    target: str
    env: str
    episodes: int
    mean_score: float
    baseline_mean: float | None
    elapsed_seconds: float
    protocol_version: str = PROTOCOL_VERSION
    stats: dict[str, Any] = field(default_factory=dict)
    verdict_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _model_dir(target: Path) -> Path:
    for candidate in (target, target / "model"):
        if (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"No saved model in {target}: expected a save_pretrained directory (config.json + model.safetensors or "
        "model.pt) or a run directory with one under model/"
    )


def _baseline(baseline_path: str | os.PathLike[str] | None, env: str) -> dict[str, Any] | None:
    if baseline_path is None:
        return None
    data = json.loads(Path(baseline_path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{baseline_path}: baselines must be a JSON object {{env: {{mean, margin_ratio}}}}")
    entry = data.get(env)
    if entry is not None and not (isinstance(entry, dict) and isinstance(entry.get("mean"), int | float)):
        raise ValueError(f"{baseline_path}: baseline for {env!r} needs a numeric 'mean', got {entry!r}")
    return entry


def _scores(model: Any, episodes: int, horizon: int, device: str) -> tuple[list[float], bool]:
    import torch

    config = model.config
    finite = True
    scores = []
    with torch.no_grad():
        for episode in range(episodes):
            gen = torch.Generator().manual_seed(42 + episode)
            obs = torch.randn(1, *config.obs_shape, generator=gen).to(device)
            actions = torch.randn(horizon, 1, int(config.action_dim), generator=gen).to(device)
            trajectory = model.rollout(model.encode(obs), actions)
            for state in trajectory.states:
                finite &= all(bool(torch.isfinite(t).all()) for t in state.tensors.values() if t.is_floating_point())
            if trajectory.rewards is not None:
                score = float(trajectory.rewards.sum())
            else:
                last = next(iter(trajectory.states[-1].tensors.values()))
                score = -float(last.float().norm())
            finite &= math.isfinite(score)
            scores.append(score)
    return scores, finite


def _upper_bound(drops: np.ndarray, samples: int = 2000, confidence: float = 0.95) -> float:
    rng = np.random.default_rng(0)
    means = drops[rng.integers(0, len(drops), size=(samples, len(drops)))].mean(axis=1)
    return float(np.quantile(means, confidence))


def quick_verify(
    target: str | os.PathLike[str],
    *,
    env: str = "atari/pong",
    episodes: int = 10,
    horizon: int = 15,
    device: str = "cpu",
    baseline_path: str | os.PathLike[str] | None = None,
) -> QuickVerifyResult:
    """Verify the model saved at `target` (see the module docstring).

    Raises:
        FileNotFoundError: no saved model at `target`.
        ValueError: `episodes` < 2 or `horizon` < 1, or a malformed baseline file.
    """
    from worldflux import create_world_model

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 2:
        raise ValueError(f"episodes must be an integer >= 2, got {episodes!r}")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    start = time.monotonic()
    baseline = _baseline(baseline_path, env)
    model = create_world_model(os.fspath(_model_dir(Path(target))), device=device)
    scores, finite = _scores(model, episodes, horizon, device)
    mean_score = float(np.mean(scores))
    stats: dict[str, Any] = {"scores": scores, "horizon": horizon}
    if not finite:
        passed, reason = False, "non-finite imagination (states or predicted rewards)"
    elif baseline is None:
        passed, reason = True, f"finite imagination; no baseline for env {env!r}, so no score comparison"
    else:
        mean = float(baseline["mean"])
        margin = float(baseline.get("margin_ratio", DEFAULT_MARGIN))
        drops = np.array([(mean - s) / abs(mean) if abs(mean) > 1e-10 else 0.0 for s in scores])
        upper = _upper_bound(drops)
        stats.update(mean_drop_ratio=float(drops.mean()), ci_upper_ratio=upper, margin_ratio=margin,
                     confidence=0.95, baseline_std=float(baseline.get("std", 0.0)))
        passed = upper < margin
        reason = (f"non-inferior: upper bound {upper:.3f} < margin {margin}" if passed
                  else f"inferior to the baseline: upper bound {upper:.3f} >= margin {margin}")
    return QuickVerifyResult(
        passed=passed,
        target=os.fspath(target),
        env=env,
        episodes=episodes,
        mean_score=mean_score,
        baseline_mean=None if baseline is None else float(baseline["mean"]),
        elapsed_seconds=round(time.monotonic() - start, 3),
        stats=stats,
        verdict_reason=reason,
    )
