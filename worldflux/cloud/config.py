"""Cloud defaults of a project (the ``[cloud]`` and ``[flywheel]`` sections of ``worldflux.toml``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from worldflux.core.exceptions import ConfigurationError

__all__ = ["CloudConfig", "FlywheelConfig"]


def _from_mapping(cls: Any, section: str, data: Mapping[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigurationError(f"Unknown key(s) {unknown} in [{section}]; known: {sorted(known)}")
    return cls(**dict(data))


@dataclass(frozen=True)
class CloudConfig:
    """Cloud execution defaults: GPU type, spot instances, region, job timeout in hours (> 0)."""

    gpu_type: str = "a100"
    spot: bool = True
    region: str = "us-east-1"
    timeout_hours: int = 24

    def __post_init__(self) -> None:
        for name in ("gpu_type", "region"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigurationError(f"cloud.{name} must be a non-empty string, got {getattr(self, name)!r}")
        if not isinstance(self.spot, bool):
            raise ConfigurationError(f"cloud.spot must be true or false, got {self.spot!r}")
        if isinstance(self.timeout_hours, bool) or not isinstance(self.timeout_hours, int) or self.timeout_hours <= 0:
            raise ConfigurationError(f"cloud.timeout_hours must be a positive integer, got {self.timeout_hours!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CloudConfig:
        """From a ``[cloud]`` table; unknown keys are a ``ConfigurationError``."""
        return _from_mapping(cls, "cloud", data)


@dataclass(frozen=True)
class FlywheelConfig:
    """Data-flywheel privacy defaults: upload opt-in, differential-privacy epsilon (> 0) and delta (in [0, 1))."""

    opt_in: bool = False
    privacy_epsilon: float = 1.0
    privacy_delta: float = 1e-5

    def __post_init__(self) -> None:
        if not isinstance(self.opt_in, bool):
            raise ConfigurationError(f"flywheel.opt_in must be true or false, got {self.opt_in!r}")
        if not isinstance(self.privacy_epsilon, int | float) or not self.privacy_epsilon > 0:
            raise ConfigurationError(f"flywheel.privacy_epsilon must be > 0, got {self.privacy_epsilon!r}")
        if not isinstance(self.privacy_delta, int | float) or not 0 <= self.privacy_delta < 1:
            raise ConfigurationError(f"flywheel.privacy_delta must be in [0, 1), got {self.privacy_delta!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FlywheelConfig:
        """From a ``[flywheel]`` table; unknown keys are a ``ConfigurationError``."""
        return _from_mapping(cls, "flywheel", data)
