"""The hidden-layer block of the DreamerV3 torch layers: ``[Linear -> LayerNorm -> SiLU] * (layers - 1) ->
Linear``."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp"]


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    """``[Linear -> LayerNorm -> SiLU] * (layers - 1) -> Linear``."""
    mods: list[nn.Module] = []
    for _ in range(layers - 1):
        mods += [nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.SiLU()]
        in_dim = hidden
    mods.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*mods)
