"""TD-MPC2 (reference ``worldflux.models.tdmpc2``): the JAX-backed ``TDMPC2WorldModel`` (``world_model``) and the
reference's torch layers (``encoder``, ``dynamics``, ``heads``)."""

from __future__ import annotations

from .dynamics import Dynamics
from .encoder import MLPEncoder
from .heads import PolicyHead, QEnsemble, QNetwork, RewardHead
from .world_model import TDMPC2WorldModel

__all__ = ["TDMPC2WorldModel", "MLPEncoder", "Dynamics", "RewardHead", "QNetwork", "QEnsemble", "PolicyHead"]
