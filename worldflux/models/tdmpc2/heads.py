"""TD-MPC2 heads (reference ``worldflux.models.tdmpc2.heads``): reward, Q-network, Q ensemble, policy prior.

Constructor signatures and ``state_dict()`` names are the reference's (reference §5.2): a reference
``TDMPC2WorldModel`` state dict's ``_encoder.*``, ``_dynamics.*``, ``_reward_head.*``, ``_q_ensemble.*`` and
``_policy.*`` entries load into these modules with ``strict=True`` (our JAX ``TDMPC2WorldModel`` writes that
layout). Hidden layers are Linear -> LayerNorm -> Mish. Shapes: B batch, L latent_dim, A action_dim, K
num_q_networks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import mlp

__all__ = ["PolicyHead", "QEnsemble", "QNetwork", "RewardHead"]


class RewardHead(nn.Module):
    """``mlp``: Linear(L + A, h) -> LN -> Mish -> Linear(1). (z ``[B, L]``, action ``[B, A]``) -> ``[B, 1]``."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.latent_dim, self.action_dim, self.hidden_dim = latent_dim, action_dim, hidden_dim
        self.mlp = mlp(latent_dim + action_dim, hidden_dim, 1, 1)

    def forward(self, z: Tensor, action: Tensor) -> Tensor:
        return self.mlp(torch.cat([z, action], dim=-1))


class QNetwork(nn.Module):
    """``mlp``: two hidden layers over ``[z, a]`` -> Linear(1). -> Q ``[B, 1]``."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.latent_dim, self.action_dim, self.hidden_dim = latent_dim, action_dim, hidden_dim
        self.mlp = mlp(latent_dim + action_dim, hidden_dim, 1, 2)

    def forward(self, z: Tensor, action: Tensor) -> Tensor:
        return self.mlp(torch.cat([z, action], dim=-1))


class QEnsemble(nn.Module):
    """``q_networks``: ``num_q_networks`` independent ``QNetwork``s. -> Q-values ``[K, B, 1]``."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int, num_q_networks: int = 5) -> None:
        super().__init__()
        if num_q_networks < 1:
            raise ValueError(f"num_q_networks must be >= 1, got {num_q_networks}")
        self.latent_dim, self.action_dim, self.hidden_dim = latent_dim, action_dim, hidden_dim
        self.num_q_networks = num_q_networks
        self.q_networks = nn.ModuleList(QNetwork(latent_dim, action_dim, hidden_dim) for _ in range(num_q_networks))

    def forward(self, z: Tensor, action: Tensor) -> Tensor:
        return torch.stack([q(z, action) for q in self.q_networks], dim=0)


class PolicyHead(nn.Module):
    """``mlp``: Linear(L, h) -> LN -> Mish -> Linear(A) -> Tanh. z ``[B, L]`` -> action in [-1, 1] ``[B, A]``."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.latent_dim, self.action_dim, self.hidden_dim = latent_dim, action_dim, hidden_dim
        self.mlp = mlp(latent_dim, hidden_dim, action_dim, 1, tanh=True)

    def forward(self, z: Tensor) -> Tensor:
        return self.mlp(z)
