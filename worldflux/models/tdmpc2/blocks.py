"""The hidden-layer block of the TD-MPC2 torch layers: ``[Linear -> LayerNorm -> Mish] * hidden_layers -> Linear
(-> Tanh)``."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp"]


def mlp(in_dim: int, hidden_dim: int, out_dim: int, hidden_layers: int, *, tanh: bool = False) -> nn.Sequential:
    """``[Linear -> LayerNorm -> Mish] * hidden_layers -> Linear (-> Tanh)``."""
    mods: list[nn.Module] = []
    for _ in range(hidden_layers):
        mods += [nn.Linear(in_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.Mish()]
        in_dim = hidden_dim
    mods.append(nn.Linear(in_dim, out_dim))
    if tanh:
        mods.append(nn.Tanh())
    return nn.Sequential(*mods)
