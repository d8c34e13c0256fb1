"""Trainer metadata stored in a checkpoint marker: its fingerprint and its validation.

The marker of a checkpoint (``worldflux_checkpoint.json``) holds the trainer metadata (global_step, epoch,
best_loss, total_loss, num_batches, the TrainingConfig dict, ...) next to the leaf table. ``metadata_sha256``
(written since this module exists; older markers lack it and are accepted) is the SHA-256 of the canonical JSON
text of that metadata, so an edited or corrupted value is detected like a corrupted array. Before a load changes
anything, :func:`validate_metadata` checks the fingerprint and each known key by type and range.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from worldflux.core.exceptions import CheckpointError

__all__ = ["metadata_fingerprint", "validate_metadata"]


def metadata_fingerprint(metadata: Any) -> str:
    """SHA-256 of the canonical JSON text of the (JSON-safe) trainer metadata stored in a marker."""
    text = json.dumps(metadata, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Trainer metadata keys: (accepted check, description). Values are validated before a load changes anything.
def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _is_loss(value: Any) -> bool:  # non-finite losses are stored as null
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value))


_METADATA_RULES = {
    "global_step": (_is_count, "a non-negative integer"),
    "epoch": (_is_count, "a non-negative integer"),
    "num_batches": (_is_count, "a non-negative integer"),
    "best_loss": (_is_loss, "a finite number or null"),
    "total_loss": (_is_loss, "a finite number or null"),
    "config": (lambda v: v is None or isinstance(v, dict), "an object"),
    "model_config": (lambda v: v is None or isinstance(v, dict), "an object or null"),
}


def validate_metadata(shown: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer metadata of a marker, checked against its fingerprint and by type and range.

    Raises:
        CheckpointError: not an object, fingerprint mismatch (corrupted or edited), or a key with a value of the
            wrong type or range (the message names the key).
    """
    metadata = payload.get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"Checkpoint {shown!r} is corrupted: marker 'metadata' is not an object")
    expected = payload.get("metadata_sha256")
    if expected is not None:
        try:
            actual = metadata_fingerprint(metadata)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"Checkpoint {shown!r} is corrupted: marker metadata is not plain JSON") from exc
        if actual != expected:
            raise CheckpointError(
                f"Checkpoint {shown!r} is corrupted: its metadata (global_step, best_loss, ...) does not match the "
                "fingerprint recorded when it was saved"
            )
    for key, (accept, description) in _METADATA_RULES.items():
        if key in metadata and not accept(metadata[key]):
            raise CheckpointError(
                f"Checkpoint {shown!r} has invalid metadata: {key} must be {description}, got {metadata[key]!r}"
            )
    return dict(metadata)
