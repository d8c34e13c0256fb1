"""The reference's skeleton families (``dit``, ``ssm``, ``renderer3d``, ``physics``, ``gan``).

In the reference these are placeholders ("skeleton" maturity, "internal" support tier) with no working
model. Here the names stay importable (top-level access emits the reference's ``DeprecationWarning``), their
configs load and validate, and constructing one raises a ``ConfigurationError`` that names the family and
the buildable families to use instead (``docs/decisions.md``, "Skeleton families"). No half-model is built.
"""

from __future__ import annotations

from typing import Any, ClassVar

from worldflux.core.model import WorldModel
from worldflux.models.registry import skeleton_error

__all__ = [
    "DiTSkeletonWorldModel",
    "GANSkeletonWorldModel",
    "PhysicsSkeletonWorldModel",
    "Renderer3DSkeletonWorldModel",
    "SSMSkeletonWorldModel",
]


class _Skeleton(WorldModel):
    """A skeleton family: constructing it raises ``ConfigurationError`` (see the module docstring)."""

    model_type: ClassVar[str] = "base"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise skeleton_error(cls.model_type)


class DiTSkeletonWorldModel(_Skeleton):
    """DiT (diffusion transformer) skeleton; use ``DiffusionWorldModel`` (``"diffusion:ci"``)."""

    model_type = "dit"


class SSMSkeletonWorldModel(_Skeleton):
    """State-space-model skeleton; use ``DreamerV3WorldModel`` or ``TDMPC2WorldModel``."""

    model_type = "ssm"


class Renderer3DSkeletonWorldModel(_Skeleton):
    """3-D renderer skeleton; use ``DreamerV3WorldModel`` or ``DiffusionWorldModel``."""

    model_type = "renderer3d"


class PhysicsSkeletonWorldModel(_Skeleton):
    """Physics-simulator skeleton; use ``TDMPC2WorldModel`` or ``DreamerV3WorldModel``."""

    model_type = "physics"


class GANSkeletonWorldModel(_Skeleton):
    """GAN skeleton; use ``DiffusionWorldModel`` or ``DreamerV3WorldModel``."""

    model_type = "gan"
