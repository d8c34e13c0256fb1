"""Training utilities of WorldFlux: configuration, replay storage and batch providers.

Further entry points of the documented ``worldflux.training`` surface (``Trainer``, ``train``, callbacks, ...)
are added here by their own modules.
"""

from __future__ import annotations

from .api import train
from .callbacks import Callback, CheckpointCallback, LoggingCallback
from .config import TrainingConfig
from .data import (
    PrefetchBatchProvider,
    ReplayBuffer,
    ThreadSafeReplayBuffer,
    TokenSequenceProvider,
    TrajectoryDataset,
    TransitionArrayProvider,
)
from .trainer import Trainer

__all__ = [
    "TrainingConfig",
    "ReplayBuffer",
    "ThreadSafeReplayBuffer",
    "PrefetchBatchProvider",
    "TrajectoryDataset",
    "TokenSequenceProvider",
    "TransitionArrayProvider",
    "Trainer",
    "train",
    "Callback",
    "LoggingCallback",
    "CheckpointCallback",
]

from .online import OnlineResult, train_online  # noqa: E402 - needs Trainer and the agents

__all__ += ["OnlineResult", "train_online"]
