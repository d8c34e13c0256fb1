"""Argument checks of ``Trainer`` / ``train`` / ``evaluate`` and the preparation of a run's ``output_dir``.

Each check raises a named error (``ConfigurationError`` for arguments and configuration, ``CheckpointError``
for a directory another writer holds) whose message names the argument and what it accepts, before any work is
done. The trainer calls each function with one line.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

from worldflux.core.exceptions import ConfigurationError

from .run_dir import OutputDirLock, acquire_output_dir, clean_leftovers

__all__ = ["check_train_steps", "prepare_output_dir"]

_MAX_STEPS = 2**31 - 1  # the step counter of the compiled train state is int32


def check_training_config(config: Any) -> Any:
    """The ``TrainingConfig`` every trainer engine starts from (a default one for None); refuses what no
    engine applies (``model_overrides``, ``ema_decay``) with the reference's messages."""
    from .config import TrainingConfig

    config = config if config is not None else TrainingConfig()
    if not isinstance(config, TrainingConfig):
        raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
    if config.model_overrides:
        raise ConfigurationError(
            "TrainingConfig.model_overrides is not applied by Trainer. Pass model overrides at model creation time."
        )
    if config.ema_decay is not None:
        raise ConfigurationError("TrainingConfig.ema_decay is not implemented yet. Set ema_decay=None.")
    return config


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_train_steps(num_steps: Any, default: int) -> int:
    """The absolute step target of ``train``: ``num_steps`` (a positive integer) or ``default`` when None.

    Raises:
        ConfigurationError: ``num_steps`` is not None and not a positive integer below 2**31 (negative, zero,
            fractional, bool, str, ...).
    """
    if num_steps is None:
        return int(default)
    if not _is_int(num_steps) or not 1 <= int(num_steps) <= _MAX_STEPS:
        raise ConfigurationError(
            f"num_steps must be a positive integer (the global_step to train up to) or None for "
            f"config.total_steps, got {num_steps!r}"
        )
    return int(num_steps)


def prepare_output_dir(output_dir: Any, owner: Any = None) -> OutputDirLock:
    """Create ``output_dir``, make the caller its only writer (lock released with ``owner`` or the process) and
    remove the leftovers of killed runs in it.

    Raises:
        ConfigurationError: ``output_dir`` is empty, not a path, an existing non-directory, or cannot be created.
        CheckpointError: another Trainer (this process or another) writes to the directory.
    """
    if not isinstance(output_dir, str | os.PathLike) or not os.fspath(output_dir).strip():
        raise ConfigurationError(f"output_dir must be a non-empty directory path, got {output_dir!r}")
    root = Path(os.fspath(output_dir))
    if root.exists() and not root.is_dir():
        raise ConfigurationError(f"output_dir {str(root)!r} exists and is not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"output_dir {str(root)!r} cannot be created: {exc}") from exc
    lock = acquire_output_dir(root, owner)
    clean_leftovers(root)
    return lock
