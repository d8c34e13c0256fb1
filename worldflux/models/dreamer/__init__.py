"""DreamerV3 (reference ``worldflux.models.dreamer``): the JAX-backed ``DreamerV3WorldModel`` (``world_model``) and the
reference's torch layers (``rssm``, ``encoder``, ``decoder``, ``heads``)."""

from __future__ import annotations

from .decoder import CNNDecoder, MLPDecoder
from .encoder import CNNEncoder, MLPEncoder
from .heads import (
    ContinueHead,
    ContinuousActorHead,
    CriticHead,
    DiscreteActorHead,
    RewardHead,
    compute_td_lambda,
    symexp,
    symlog,
    twohot_encode,
    twohot_expected_value,
)
from .rssm import RSSM
from .world_model import DreamerV3WorldModel

__all__ = [
    "DreamerV3WorldModel",
    "RSSM",
    "CNNEncoder",
    "MLPEncoder",
    "CNNDecoder",
    "MLPDecoder",
    "RewardHead",
    "ContinueHead",
    "DiscreteActorHead",
    "ContinuousActorHead",
    "CriticHead",
    "compute_td_lambda",
    "symlog",
    "symexp",
    "twohot_encode",
    "twohot_expected_value",
]
