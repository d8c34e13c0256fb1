"""TD-MPC2 observation encoder (reference ``worldflux.models.tdmpc2.encoder``).

Constructor signatures and ``state_dict()`` names are the reference's (reference §5.2): a reference
``TDMPC2WorldModel`` state dict's ``_encoder.*``, ``_dynamics.*``, ``_reward_head.*``, ``_q_ensemble.*`` and
``_policy.*`` entries load into these modules with ``strict=True`` (our JAX ``TDMPC2WorldModel`` writes that
layout). Hidden layers are Linear -> LayerNorm -> Mish. Shapes: B batch, L latent_dim, A action_dim, K
num_q_networks.
"""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import mlp

__all__ = ["MLPEncoder"]


class MLPEncoder(nn.Module):
    """``mlp``: two hidden layers -> Linear(latent_dim). obs ``[B, obs_dim]`` (or ``[B, *obs_shape]``, flattened)
    -> ``[B, L]`` (before SimNorm)."""

    def __init__(self, obs_dim: int, hidden_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.obs_dim, self.hidden_dim, self.latent_dim = obs_dim, hidden_dim, latent_dim
        self.mlp = mlp(obs_dim, hidden_dim, latent_dim, 2)

    def forward(self, obs: Tensor) -> Tensor:
        return self.mlp(obs.flatten(start_dim=1) if obs.dim() > 2 else obs)
