"""Training utilities of WorldFlux: configuration, replay storage and batch providers.

Further entry points of the documented ``worldflux.training`` surface (``Trainer``, ``train``, callbacks, ...)
are added here by their own modules.
"""

from __future__ import annotations

from .api import train
from .backend import ExecutionDelegatingBackend, LocalBackend, TrainingBackend
from .callbacks import (
    Callback,
    CheckpointCallback,
    DiagnosisCallback,
    HeartbeatCallback,
    LoggingCallback,
    TrainingReportCallback,
)
from .config import TrainingConfig
from .data import (
    PrefetchBatchProvider,
    ReplayBuffer,
    ThreadSafeReplayBuffer,
    TokenSequenceProvider,
    TrajectoryDataset,
    TransitionArrayProvider,
)
from .delegated import JobHandle, JobStatus, OfficialBackendHandle
from .distributed import DDPTrainer, build_launch_config
from .profiling import PerformanceMonitor, TorchProfilerWrapper
from .replay_backends import MemoryReplayBackend, ParquetReplayBackend, ReplayBackend
from .report import HealthSignal, LossCurveSummary, TrainingReport
from .scheduling import LocalClock, RatioUpdateScheduler
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
    "DDPTrainer",
    "build_launch_config",
    "train",
    "Callback",
    "LoggingCallback",
    "CheckpointCallback",
    "HeartbeatCallback",
    "DiagnosisCallback",
    "TrainingReportCallback",
    "TrainingReport",
    "HealthSignal",
    "LossCurveSummary",
    "LocalClock",
    "RatioUpdateScheduler",
    "PerformanceMonitor",
    "TorchProfilerWrapper",
    "TrainingBackend",
    "LocalBackend",
    "ExecutionDelegatingBackend",
    "JobHandle",
    "JobStatus",
    "OfficialBackendHandle",
    "ReplayBackend",
    "MemoryReplayBackend",
    "ParquetReplayBackend",
]

from .online import OnlineResult, train_online  # noqa: E402 - needs Trainer and the agents

__all__ += ["OnlineResult", "train_online"]
