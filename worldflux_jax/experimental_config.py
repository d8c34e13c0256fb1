"""Configurations of the experimental families (reference §2.4): JEPA, V-JEPA 2, token and diffusion models.

Fields and defaults are the reference's; presets add a small ``ci`` size for tests and smoke runs. The
user-facing package ``worldflux`` subclasses these (as it does `DreamerV3Config`) to add file helpers.
Every invalid value raises `ConfigurationError` naming the field and what it accepts.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, ClassVar

from worldflux_jax.config import WorldModelConfig

PREDICTION_TARGETS = ("noise", "x0", "v")
ACTION_CONDITIONERS = ("none", "adaln", "adagn")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _Checks(WorldModelConfig):
    """Validation helpers shared by the family configs (each raises `ConfigurationError`)."""

    def _positive_ints(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0):
                raise self._error(f"{name} must be a positive int, got {value!r}")

    def _unit_interval(self, name: str) -> None:
        value = getattr(self, name)
        if not (_is_number(value) and 0.0 <= value < 1.0):
            raise self._error(f"{name} must be in [0, 1), got {value!r}")

    def _choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise self._error(f"{name} must be one of {list(choices)}, got {value!r}")


@dataclasses.dataclass
class JEPABaseConfig(_Checks):
    """JEPA: a transformer encoder over observation patches, an EMA target encoder and an action-conditioned
    latent predictor (``worldflux_jax.jepa``)."""

    model_type: str = "jepa"
    encoder_dim: int = 512
    predictor_dim: int = 512
    projection_dim: int = 512
    num_layers: int = 6
    num_heads: int = 8
    dropout: float = 0.0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "ci": dict(encoder_dim=32, predictor_dim=32, projection_dim=32, num_layers=1, num_heads=2, hidden_dim=32),
        "base": {},
    }

    def _validate(self) -> None:
        super()._validate()
        self._positive_ints("encoder_dim", "predictor_dim", "projection_dim", "num_layers", "num_heads")
        if self.encoder_dim % self.num_heads:
            raise self._error(f"encoder_dim ({self.encoder_dim}) must be divisible by num_heads ({self.num_heads})")
        self._unit_interval("dropout")


@dataclasses.dataclass
class VJEPA2Config(JEPABaseConfig):
    """V-JEPA 2: JEPA over temporal windows of ``temporal_window`` frames with ``mask_ratio`` of the tokens
    masked (``worldflux_jax.jepa.VJEPA2``)."""

    model_type: str = "vjepa2"
    mask_ratio: float = 0.5
    temporal_window: int = 8

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "ci": dict(
            encoder_dim=32,
            predictor_dim=32,
            projection_dim=32,
            num_layers=1,
            num_heads=2,
            temporal_window=2,
            hidden_dim=32,
        ),
        "tiny": dict(
            encoder_dim=128, predictor_dim=128, projection_dim=128, num_layers=2, num_heads=4, temporal_window=4
        ),
        "base": {},
    }

    def _validate(self) -> None:
        super()._validate()
        self._unit_interval("mask_ratio")
        self._positive_ints("temporal_window")


@dataclasses.dataclass
class TokenWorldModelConfig(_Checks):
    """Token world model: observations quantized into ``vocab_size`` tokens, a causal transformer predicting
    the next observation's tokens after an action token (``worldflux_jax.token_model``)."""

    model_type: str = "token"
    vocab_size: int = 1024
    token_dim: int = 256
    num_layers: int = 4
    num_heads: int = 4
    dropout: float = 0.1

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "ci": dict(vocab_size=64, token_dim=32, num_layers=1, num_heads=2, dropout=0.0, hidden_dim=32),
        "base": {},
    }

    def _validate(self) -> None:
        super()._validate()
        self._positive_ints("vocab_size", "token_dim", "num_layers", "num_heads")
        if self.vocab_size < 2:
            raise self._error(f"vocab_size must be >= 2, got {self.vocab_size!r}")
        if self.token_dim % self.num_heads:
            raise self._error(f"token_dim ({self.token_dim}) must be divisible by num_heads ({self.num_heads})")
        self._unit_interval("dropout")


@dataclasses.dataclass
class DiffusionWorldModelConfig(_Checks):
    """Diffusion world model: a DDPM denoiser of the next observation conditioned on the current one and the
    action (``worldflux_jax.diffusion``); ``hidden_dim`` is the denoiser width."""

    model_type: str = "diffusion"
    diffusion_steps: int = 4
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_target: str = "noise"
    action_conditioner: str = "none"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"ci": dict(hidden_dim=64), "base": {}}

    def _validate(self) -> None:
        super()._validate()
        self._positive_ints("diffusion_steps")
        ok = _is_number(self.beta_start) and _is_number(self.beta_end) and 0.0 < self.beta_start < self.beta_end < 1.0
        if not ok:
            raise self._error(
                "beta_start and beta_end must satisfy 0 < beta_start < beta_end < 1, "
                f"got beta_start={self.beta_start!r}, beta_end={self.beta_end!r}"
            )
        self._choice("prediction_target", PREDICTION_TARGETS)
        self._choice("action_conditioner", ACTION_CONDITIONERS)
