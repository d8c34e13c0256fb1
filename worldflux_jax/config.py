"""Model configurations: the reference WorldFlux fields, defaults, presets and validation.

The dataclasses here hold every field of the reference `WorldModelConfig`, `DreamerV3Config` and
`TDMPC2Config` (``../shared/reference/worldflux-api.md`` §2) so that a config dict written by the
reference (`config.to_dict()`) builds the same model here, and ours loads back into the reference.
The user-facing package `worldflux` subclasses them to add file and override helpers.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from enum import Enum, StrEnum
from typing import Any, ClassVar, TypeVar

from worldflux_jax.errors import ConfigurationError

C = TypeVar("C", bound="WorldModelConfig")


class LatentType(StrEnum):
    DETERMINISTIC = "deterministic"
    GAUSSIAN = "gaussian"
    CATEGORICAL = "categorical"
    VQ = "vq"
    SIMNORM = "simnorm"


class DynamicsType(StrEnum):
    RSSM = "rssm"
    MLP = "mlp"
    TRANSFORMER = "transformer"
    SSM = "ssm"


_ACTION_TYPES = ("none", "continuous", "discrete", "token", "latent", "text", "hybrid")
_ACTION_TYPES_NEEDING_DIM = ("continuous", "discrete", "token", "latent", "hybrid")
_DTYPES = ("float32", "float16", "bfloat16")


def _infer_modality_kind(shape: tuple[int, ...]) -> str:
    return {1: "vector", 3: "image", 4: "video"}.get(len(shape), "other")


@dataclasses.dataclass
class WorldModelConfig:
    """Fields shared by every world model (reference §2.1)."""

    model_type: str = "base"
    model_name: str = "unnamed"
    obs_shape: tuple[int, ...] = (3, 64, 64)
    action_dim: int = 6
    action_type: str = "continuous"
    observation_modalities: dict[str, Any] = dataclasses.field(default_factory=dict)
    action_spec: dict[str, Any] = dataclasses.field(default_factory=dict)
    latent_type: LatentType = LatentType.DETERMINISTIC
    latent_dim: int = 256
    deter_dim: int = 256
    stoch_dim: int = 32
    dynamics_type: DynamicsType = DynamicsType.MLP
    hidden_dim: int = 512
    learning_rate: float = 3e-4
    grad_clip: float = 100.0
    device: str = "cuda"
    dtype: str = "float32"

    # Presets of the subclass: name -> field overrides (class data, not a dataclass field).
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    _TUPLE_FIELDS: ClassVar[tuple[str, ...]] = ("obs_shape",)

    def __post_init__(self) -> None:
        self._normalize()
        self._validate()

    # -- normalisation -------------------------------------------------------------------------
    def _normalize(self) -> None:
        self.obs_shape = tuple(int(d) for d in self.obs_shape)
        self.latent_type = LatentType(self.latent_type)
        self.dynamics_type = DynamicsType(self.dynamics_type)
        modalities: dict[str, Any] = {}
        if not self.observation_modalities:
            modalities["obs"] = {
                "shape": self.obs_shape,
                "kind": _infer_modality_kind(self.obs_shape),
                "dtype": self.dtype,
            }
        else:
            for name, spec in self.observation_modalities.items():
                spec = dict(spec)
                shape = tuple(int(d) for d in spec.get("shape", self.obs_shape))
                spec["shape"] = shape
                spec.setdefault("kind", _infer_modality_kind(shape))
                spec.setdefault("dtype", self.dtype)
                modalities[name] = spec
        self.observation_modalities = modalities
        if "obs" in modalities:
            self.obs_shape = tuple(modalities["obs"]["shape"])
        spec = dict(self.action_spec)
        spec.setdefault("kind", self.action_type)
        spec.setdefault("dim", self.action_dim)
        spec.setdefault("discrete", spec["kind"] == "discrete")
        if spec["kind"] == "discrete":
            spec.setdefault("num_actions", spec["dim"])
        self.action_spec = spec
        self.action_type = str(spec["kind"])
        self.action_dim = int(spec["dim"])

    # -- validation ----------------------------------------------------------------------------
    def _error(self, message: str) -> ConfigurationError:
        return ConfigurationError(message, config_name=self.model_name)

    def _require_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise self._error(f"{name} must be positive, got {value!r}")

    def _validate(self) -> None:
        if not self.obs_shape or any(d <= 0 for d in self.obs_shape):
            raise self._error(f"obs_shape must be a non-empty tuple of positive ints, got {self.obs_shape}")
        if self.action_type not in _ACTION_TYPES:
            raise self._error(f"action_type must be one of {list(_ACTION_TYPES)}, got {self.action_type!r}")
        if self.action_type == "hybrid":
            warnings.warn("action_type 'hybrid' is deprecated", DeprecationWarning, stacklevel=3)
        if self.action_type in _ACTION_TYPES_NEEDING_DIM:
            if self.action_dim <= 0:
                raise self._error(
                    f"action_dim must be positive for action_type {self.action_type!r}, got {self.action_dim}"
                )
        elif self.action_dim < 0:
            raise self._error(f"action_dim must be >= 0, got {self.action_dim}")
        self._require_positive("hidden_dim", "learning_rate")
        if self.grad_clip < 0:
            raise self._error(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.dtype not in _DTYPES:
            raise self._error(f"dtype must be one of {list(_DTYPES)}, got {self.dtype!r}")

    # -- dict round trip -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict in the reference layout (enums as strings, tuples as lists)."""

        def plain(value: Any) -> Any:
            if isinstance(value, Enum):
                return value.value
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            return value

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build from `to_dict()` output (ours or the reference's); unknown keys are an error."""
        data = dict(data)
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ConfigurationError(
                f"Unknown config field(s) {unknown} for {cls.__name__}; accepted fields: {sorted(cls.field_names())}",
                config_name=data.get("model_name"),
            )
        for name in cls._TUPLE_FIELDS:
            if name in data and data[name] is not None:
                data[name] = tuple(data[name])
        return cls(**data)

    @classmethod
    def from_size(cls: type[C], size: str, **overrides: Any) -> C:
        """Preset `size` with `overrides` applied on top (`ValueError` for an unknown size)."""
        if size not in cls.PRESETS:
            raise ValueError(f"Unknown size: {size}. Available: {list(cls.PRESETS)}")
        values = {"model_name": size, **cls.PRESETS[size], **overrides}
        return cls.from_dict(values)


#: `DreamerV3Config.behavior_profile`: "reference" (the reference's actor-critic) or "paper" (the DreamerV3
#: paper's: losses weighted by the cumulative predicted continue, λ-returns from the online critic with the slow
#: critic as a regulariser, 1% unimix in the discrete actor). See docs/decisions.md.
DREAMER_BEHAVIOR_PROFILES = ("reference", "paper")
#: `DreamerV3Config.actor_gradient`: "reinforce" (reference, both action types) or "dynamics" (continuous
#: actors only: the return is differentiated through the imagined trajectory, DreamerV3's first release).
DREAMER_ACTOR_GRADIENTS = ("reinforce", "dynamics")
#: Config fields the reference does not have; `to_dict` leaves them out at their defaults so that files stay
#: loadable by the reference.
_DREAMER_EXTENSIONS = ("behavior_profile", "actor_gradient", "imagination_starts", "replay_critic")


@dataclasses.dataclass
class DreamerV3Config(WorldModelConfig):
    """DreamerV3 with the reference architecture (reference §2.2, §5.1).

    `kl_balance` (documented in the configuration guide, absent from the reference code) is the share of
    the total KL weight given to the dynamics term: when set, `loss_scales["kl_dynamics"] =
    kl_balance * w` and `loss_scales["kl_representation"] = (1 - kl_balance) * w`, where `w` is the sum
    of the two scales (0.6 by default). Left at `None`, the reference scales 0.5 / 0.1 apply.
    """

    model_type: str = "dreamer"
    latent_type: LatentType = LatentType.CATEGORICAL
    dynamics_type: DynamicsType = DynamicsType.RSSM
    stoch_discrete: int = 32
    stoch_classes: int = 32
    encoder_type: str = "cnn"
    decoder_type: str = "cnn"
    cnn_depth: int = 48
    cnn_kernels: tuple[int, ...] = (4, 4, 4, 4)
    learning_rate: float = 1e-4
    grad_clip: float = 1000.0
    kl_free: float = 1.0
    kl_balance: float | None = None
    loss_scales: dict[str, float] = dataclasses.field(
        default_factory=lambda: {
            "reconstruction": 1.0,
            "kl_dynamics": 0.5,
            "kl_representation": 0.1,
            "reward": 1.0,
            "continue": 1.0,
        }
    )
    use_symlog: bool = True
    reference_tier: str = "reference"
    parity_profile: str = ""
    use_twohot: bool = True
    reward_num_bins: int = 255
    reward_bin_min: float = -20.0
    reward_bin_max: float = 20.0
    actor_critic: bool = False
    imagination_horizon: int = 15
    actor_lr: float = 3e-5
    critic_lr: float = 3e-5
    gamma: float = 0.997
    lambda_: float = 0.95
    slow_critic_fraction: float = 0.02
    actor_entropy_coef: float = 3e-4
    return_normalization: bool = True
    behavior_profile: str = "reference"
    actor_gradient: str = "reinforce"
    imagination_starts: int = 0
    #: Weight of the critic's λ-return loss on the replayed posterior states (real rewards and terminations,
    #: DreamerV3's `repval`, 0.3 in the paper); 0 = off (reference).
    replay_critic: float = 0.0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "ci": dict(
            deter_dim=64,
            stoch_discrete=4,
            stoch_classes=4,
            hidden_dim=32,
            cnn_depth=8,
            reference_tier="compatibility",
        ),
        "size12m": dict(deter_dim=2048, stoch_discrete=16, stoch_classes=16, hidden_dim=256),
        "size25m": dict(deter_dim=4096, stoch_discrete=32, stoch_classes=16, hidden_dim=512),
        "size50m": dict(deter_dim=4096, stoch_discrete=32, stoch_classes=32, hidden_dim=640),
        "size100m": dict(deter_dim=8192, stoch_discrete=32, stoch_classes=32, hidden_dim=768),
        "size200m": dict(deter_dim=8192, stoch_discrete=32, stoch_classes=32, hidden_dim=1024),
        "official_xl": dict(
            deter_dim=8192,
            stoch_discrete=32,
            stoch_classes=64,
            hidden_dim=1024,
            cnn_depth=64,
            reference_tier="proof",
            parity_profile="official_xl",
        ),
    }
    _TUPLE_FIELDS: ClassVar[tuple[str, ...]] = ("obs_shape", "cnn_kernels")

    def __post_init__(self) -> None:
        self._normalize()
        self.cnn_kernels = tuple(int(k) for k in self.cnn_kernels)
        self.loss_scales = dict(self.loss_scales)
        self.stoch_dim = self.stoch_discrete * self.stoch_classes
        if self.kl_balance is not None:
            if not 0.0 <= float(self.kl_balance) <= 1.0:
                raise self._error(f"kl_balance must be in [0, 1] (or None), got {self.kl_balance!r}")
            weight = self.loss_scales.get("kl_dynamics", 0.5) + self.loss_scales.get("kl_representation", 0.1)
            self.loss_scales["kl_dynamics"] = float(self.kl_balance) * weight
            self.loss_scales["kl_representation"] = (1.0 - float(self.kl_balance)) * weight
        if self.actor_critic:
            self.loss_scales.setdefault("actor", 1.0)
            self.loss_scales.setdefault("critic", 1.0)
            if self.action_type == "continuous" and self.actor_entropy_coef == 3e-4:
                self.actor_entropy_coef = 1e-4
        self._validate()

    def _validate(self) -> None:
        super()._validate()
        self._require_positive("stoch_discrete", "stoch_classes", "deter_dim", "cnn_depth", "reward_num_bins")
        for name in ("encoder_type", "decoder_type"):
            if getattr(self, name) not in ("cnn", "mlp"):
                raise self._error(f"{name} must be 'cnn' or 'mlp', got {getattr(self, name)!r}")
        if "cnn" in (self.encoder_type, self.decoder_type):
            if len(self.obs_shape) != 3:
                raise self._error(
                    f"CNN encoder requires 3D obs_shape (C, H, W), got {self.obs_shape} "
                    "(encoder_type/decoder_type must be 'mlp' for vector observations)"
                )
            stride = 2 ** len(self.cnn_kernels)
            hint = ""
            if self.obs_shape[2] <= 4 < self.obs_shape[0]:
                hint = f"; obs_shape {self.obs_shape} looks like (H, W, C): the CNN expects (C, H, W)"
                warnings.warn(hint[2:], UserWarning, stacklevel=3)
            if self.obs_shape[1] % stride or self.obs_shape[2] % stride:
                raise self._error(
                    f"obs_shape H and W must be divisible by {stride} for {len(self.cnn_kernels)} CNN stages, "
                    f"got {self.obs_shape}{hint}"
                )
            if any(k != 4 for k in self.cnn_kernels):
                raise self._error(f"cnn_kernels must all be 4 (the reference stride-2 stages), got {self.cnn_kernels}")
        if self.kl_free < 0:
            raise self._error(f"kl_free must be >= 0, got {self.kl_free}")
        if self.reward_bin_max <= self.reward_bin_min:
            raise self._error(
                f"reward_bin_max must exceed reward_bin_min, got {self.reward_bin_min}..{self.reward_bin_max}"
            )
        missing = {"reconstruction", "kl_dynamics", "kl_representation", "reward", "continue"} - set(self.loss_scales)
        if missing:
            raise self._error(f"loss_scales is missing keys {sorted(missing)}")
        if self.behavior_profile not in DREAMER_BEHAVIOR_PROFILES:
            raise self._error(
                f"behavior_profile must be one of {list(DREAMER_BEHAVIOR_PROFILES)}, got {self.behavior_profile!r}"
            )
        if self.actor_gradient not in DREAMER_ACTOR_GRADIENTS:
            raise self._error(
                f"actor_gradient must be one of {list(DREAMER_ACTOR_GRADIENTS)}, got {self.actor_gradient!r}"
            )
        if self.actor_gradient == "dynamics" and self.action_type != "continuous":
            raise self._error(
                f"actor_gradient='dynamics' needs action_type='continuous' (got {self.action_type!r}); "
                "discrete actors use 'reinforce'"
            )
        if isinstance(self.imagination_starts, bool) or not isinstance(self.imagination_starts, int):
            raise self._error(f"imagination_starts must be an int >= 0, got {self.imagination_starts!r}")
        if self.imagination_starts < 0:
            raise self._error(
                f"imagination_starts must be >= 0 (0: every posterior state), got {self.imagination_starts}"
            )
        if isinstance(self.replay_critic, bool) or not isinstance(self.replay_critic, (int, float)):
            raise self._error(f"replay_critic must be a number >= 0, got {self.replay_critic!r}")
        if not math.isfinite(self.replay_critic) or self.replay_critic < 0:
            raise self._error(f"replay_critic must be a finite number >= 0 (0: off), got {self.replay_critic}")
        if self.replay_critic > 0 and not self.actor_critic:
            raise self._error(f"replay_critic={self.replay_critic} trains the critic, which needs actor_critic=True")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if data["kl_balance"] is None:
            # Keep files loadable by the reference, which has no such field.
            del data["kl_balance"]
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in _DREAMER_EXTENSIONS}
        for name, default in defaults.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DreamerV3Config:
        data = dict(data)
        obs_shape = tuple(data.get("obs_shape", (3, 64, 64)))
        # A vector observation gets the MLP encoder/decoder unless the caller chose explicitly.
        if len(obs_shape) == 1:
            data.setdefault("encoder_type", "mlp")
            data.setdefault("decoder_type", "mlp")
        return super().from_dict(data)

    @property
    def feature_dim(self) -> int:
        return self.deter_dim + self.stoch_dim

    @property
    def obs_size(self) -> int:
        return math.prod(self.obs_shape)


TDMPC2_OBJECTIVES = ("reference", "symlog")


@dataclasses.dataclass
class TDMPC2Config(WorldModelConfig):
    """TD-MPC2 with the reference architecture (reference §2.3, §5.2)."""

    model_type: str = "tdmpc2"
    latent_type: LatentType = LatentType.SIMNORM
    dynamics_type: DynamicsType = DynamicsType.MLP
    simnorm_dim: int = 8
    num_hidden_layers: int = 2
    task_dim: int = 96
    num_tasks: int = 1
    num_q_networks: int = 5
    horizon: int = 5
    num_samples: int = 512
    num_elites: int = 64
    temperature: float = 0.5
    momentum: float = 0.1
    gamma: float = 0.99
    training_tier: str = "reference"
    parity_profile: str = ""
    target_q_tau: float = 0.01
    consistency_loss_coef: float = 1.0
    reward_loss_coef: float = 1.0
    td_loss_coef: float = 1.0
    policy_loss_coef: float = 1.0
    use_decoder: bool = False
    #: "reference": the reference's loss (MSE on raw rewards and returns, policy through the online Q);
    #: "symlog": reward and Q heads regress symlog targets and predict symexp of their output, and the policy
    #: maximises the frozen Q heads (scale-free: for online RL, where returns reach hundreds; see
    #: docs/decisions.md). Parameter names and shapes are the same in both.
    objective: str = "reference"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "ci": dict(latent_dim=32, hidden_dim=32, num_q_networks=2, training_tier="compatibility"),
        "5m": dict(latent_dim=256, hidden_dim=256),
        "proof_5m": dict(
            latent_dim=256, hidden_dim=256, training_tier="proof", parity_profile="proof_5m", model_name="5m"
        ),
        "5m_legacy": dict(latent_dim=256, hidden_dim=256, training_tier="compatibility", model_name="5m"),
        "19m": dict(latent_dim=512, hidden_dim=512),
        "48m": dict(latent_dim=512, hidden_dim=1024),
        "317m": dict(latent_dim=1024, hidden_dim=2048),
    }

    def _validate(self) -> None:
        super()._validate()
        self._require_positive("latent_dim", "simnorm_dim", "num_tasks", "task_dim")
        if self.latent_dim % self.simnorm_dim:
            raise self._error(f"latent_dim ({self.latent_dim}) must be divisible by simnorm_dim ({self.simnorm_dim})")
        for name in ("num_hidden_layers", "num_q_networks", "horizon", "num_samples", "num_elites"):
            if getattr(self, name) < 1:
                raise self._error(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_elites > self.num_samples:
            raise self._error(f"num_elites ({self.num_elites}) must be <= num_samples ({self.num_samples})")
        if self.temperature <= 0:
            raise self._error(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.momentum <= 1.0:
            raise self._error(f"momentum must be in [0, 1], got {self.momentum}")
        if not 0.0 < self.gamma <= 1.0:
            raise self._error(f"gamma must be in (0, 1], got {self.gamma}")
        if self.training_tier not in ("compatibility", "reference", "proof"):
            raise self._error(
                f"training_tier must be one of ['compatibility', 'reference', 'proof'], got {self.training_tier!r}"
            )
        if not 0.0 < self.target_q_tau <= 1.0:
            raise self._error(f"target_q_tau must be in (0, 1], got {self.target_q_tau}")
        if self.objective not in TDMPC2_OBJECTIVES:
            raise self._error(f"objective must be one of {list(TDMPC2_OBJECTIVES)}, got {self.objective!r}")

    @property
    def obs_size(self) -> int:
        return math.prod(self.obs_shape)


CONFIG_CLASSES: dict[str, type[WorldModelConfig]] = {
    "dreamer": DreamerV3Config,
    "tdmpc2": TDMPC2Config,
}


def config_from_dict(data: dict[str, Any]) -> WorldModelConfig:
    """Build the config class named by `data["model_type"]` ("dreamer" or "tdmpc2")."""
    model_type = data.get("model_type")
    if model_type not in CONFIG_CLASSES:
        raise ConfigurationError(f"model_type must be one of {sorted(CONFIG_CLASSES)}, got {model_type!r}")
    return CONFIG_CLASSES[model_type].from_dict(data)
