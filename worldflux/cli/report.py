"""Run outputs written by ``worldflux train``: the run manifest's data-mode fields, ``episodes.jsonl``, the
dashboard snapshot and a PNG of returns and losses."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["append_episodes", "update_manifest", "write_json", "write_training_plot"]

DEGRADED_ENV = "env_collection_unavailable"
DEGRADED_RANDOM = "random_replay_fallback"


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (temp file in the same directory, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def update_manifest(output_dir: Path, data_mode: str, degraded_modes: Iterable[str], **extra: Any) -> Path:
    """Record ``data_mode``, ``degraded_modes`` (merged with what the trainer wrote) and ``extra`` keys in
    ``output_dir/run_manifest.json`` (created when the run wrote none)."""
    path = output_dir / "run_manifest.json"
    manifest: dict[str, Any] = {}
    if path.is_file():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            manifest = {}
    modes = list(manifest.get("degraded_modes") or [])
    modes += [mode for mode in degraded_modes if mode not in modes]
    manifest.update({"data_mode": data_mode, "degraded_modes": modes, **extra})
    if modes and manifest.get("run_classification") == "meaningful_local_training":
        manifest["run_classification"] = "contract_smoke"
    write_json(path, manifest)
    return path


def append_episodes(output_dir: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Append episode records (one JSON object per line) to ``output_dir/episodes.jsonl``."""
    path = output_dir / "episodes.jsonl"
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def write_training_plot(snapshot: dict[str, Any], path: Path, subtitle: str = "") -> Path:
    """A PNG with the episode returns (left) and the loss curves (right) of a dashboard snapshot."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax_ret, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    returns, evals = snapshot.get("returns", {}), snapshot.get("eval_returns", {})
    if returns.get("x"):
        ax_ret.plot(returns["x"], returns["y"], ".-", label="episode return", alpha=0.8)
    if evals.get("x"):
        ax_ret.plot(evals["x"], evals["y"], "o-", label="evaluation (mean)")
    if returns.get("x") or evals.get("x"):
        ax_ret.legend()
    else:
        ax_ret.text(0.5, 0.5, "no environment episodes\n(random replay)", ha="center", va="center",
                    transform=ax_ret.transAxes)
    ax_ret.set_xlabel("environment steps")
    ax_ret.set_ylabel("return")
    ax_ret.set_title("Episode returns")
    for name, curve in sorted(snapshot.get("losses", {}).items()):
        if curve.get("x"):
            ax_loss.plot(curve["x"], curve["y"], label=name)
    if snapshot.get("losses"):
        ax_loss.legend(fontsize=8)
        ax_loss.set_yscale("symlog", linthresh=1e-2)
    ax_loss.set_xlabel("train step")
    ax_loss.set_title("Losses")
    fig.suptitle(f"{snapshot.get('title', 'WorldFlux')} {subtitle}".strip())
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
