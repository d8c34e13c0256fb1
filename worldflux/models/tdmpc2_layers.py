"""The reference TD-MPC2 torch layers (reference ``worldflux.models.tdmpc2``; §5.2 of the API facts), for code
that builds its own torch networks out of them.

Constructor signatures and ``state_dict()`` names are the reference's: ``MLPEncoder.mlp``, ``Dynamics.mlp``
(+ ``task_embedding`` when ``num_tasks > 1``), ``RewardHead.mlp``, ``QNetwork.mlp``,
``QEnsemble.q_networks.{k}.mlp``, ``PolicyHead.mlp``; a reference ``TDMPC2WorldModel`` state dict's
``_encoder.*``, ``_dynamics.*``, ``_reward_head.*``, ``_q_ensemble.*`` and ``_policy.*`` entries load into
them with ``strict=True`` (our JAX ``TDMPC2WorldModel`` writes that layout). Hidden layers are
Linear -> LayerNorm -> Mish.

Shapes: B batch, L latent_dim, A action_dim, K num_q_networks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Dynamics", "MLPEncoder", "PolicyHead", "QEnsemble", "QNetwork", "RewardHead"]

_INPUT_CLAMP = 1e4
_DELTA_MAX_NORM = 10.0
_EPS = 1e-6


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, hidden_layers: int, *, tanh: bool = False) -> nn.Sequential:
    """``[Linear -> LayerNorm -> Mish] * hidden_layers -> Linear (-> Tanh)``."""
    mods: list[nn.Module] = []
    for _ in range(hidden_layers):
        mods += [nn.Linear(in_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.Mish()]
        in_dim = hidden_dim
    mods.append(nn.Linear(in_dim, out_dim))
    if tanh:
        mods.append(nn.Tanh())
    return nn.Sequential(*mods)


def _guard(x: Tensor) -> Tensor:
    return torch.nan_to_num(x, nan=0.0, posinf=_INPUT_CLAMP, neginf=-_INPUT_CLAMP).clamp(-_INPUT_CLAMP, _INPUT_CLAMP)


class MLPEncoder(nn.Module):
    """``mlp``: two hidden layers -> Linear(latent_dim). obs ``[B, obs_dim]`` (or ``[B, *obs_shape]``, flattened)
    -> ``[B, L]`` (before SimNorm)."""

    def __init__(self, obs_dim: int, hidden_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.obs_dim, self.hidden_dim, self.latent_dim = obs_dim, hidden_dim, latent_dim
        self.mlp = _mlp(obs_dim, hidden_dim, latent_dim, 2)

    def forward(self, obs: Tensor) -> Tensor:
        return self.mlp(obs.flatten(start_dim=1) if obs.dim() > 2 else obs)


class Dynamics(nn.Module):
    """Latent dynamics delta: ``mlp`` over ``[z, a(, task embedding)]`` with two hidden layers -> ``[B, L]``.

    ``forward(z, action, task_id=None)`` returns the residual update ``delta`` (inputs NaN-guarded and clamped
    to +-1e4, ``delta`` rescaled to an L2 norm of at most 10); the caller forms ``SimNorm(z + delta)``. With
    ``num_tasks > 1`` a ``task_embedding`` (``Embedding(num_tasks, task_dim)``) is appended (zeros when
    ``task_id`` is None; ids clamped to the valid range).
    """

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int, num_tasks: int = 1, task_dim: int = 96):
        super().__init__()
        self.latent_dim, self.action_dim, self.hidden_dim = latent_dim, action_dim, hidden_dim
        self.num_tasks, self.task_dim = num_tasks, task_dim
        input_dim = latent_dim + action_dim
        self.task_embedding: nn.Embedding | None = None
        if num_tasks > 1:
            input_dim += task_dim
            self.task_embedding = nn.Embedding(num_tasks, task_dim)
        self.mlp = _mlp(input_dim, hidden_dim, latent_dim, 2)

    def forward(self, z: Tensor, action: Tensor, task_id: Tensor | None = None) -> Tensor:
        z, action = _guard(z), _guard(action)
        parts = [z, action]
        if self.task_embedding is not None:
            if task_id is None:
                parts.append(torch.zeros(z.shape[0], self.task_dim, dtype=z.dtype, device=z.device))
            else:
                parts.append(self.task_embedding(task_id.long().clamp(0, self.num_tasks - 1)).to(z.dtype))
        delta = torch.nan_to_num(self.mlp(_guard(torch.cat(parts, dim=-1))), nan=0.0, posinf=_INPUT_CLAMP,
                                 neginf=-_INPUT_CLAMP)
        scale = torch.clamp(_DELTA_MAX_NORM / (delta.norm(dim=-1, keepdim=True) + _EPS), max=1.0)
        return delta * scale


class RewardHead(nn.Module):
    """``mlp``: Linear(L + A, h) -> LN -> Mish -> Linear(1). (z ``[B, L]``, action ``[B, A]``) -> ``[B, 1]``."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.latent_dim, self.action_dim, self.hidden_dim = latent_dim, action_dim, hidden_dim
        self.mlp = _mlp(latent_dim + action_dim, hidden_dim, 1, 1)

    def forward(self, z: Tensor, action: Tensor) -> Tensor:
        return self.mlp(torch.cat([z, action], dim=-1))


class QNetwork(nn.Module):
    """``mlp``: two hidden layers over ``[z, a]`` -> Linear(1). -> Q ``[B, 1]``."""

    def __init__(self, latent_dim: int, action_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.latent_dim, self.action_dim, self.hidden_dim = latent_dim, action_dim, hidden_dim
        self.mlp = _mlp(latent_dim + action_dim, hidden_dim, 1, 2)

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
        self.mlp = _mlp(latent_dim, hidden_dim, action_dim, 1, tanh=True)

    def forward(self, z: Tensor) -> Tensor:
        return self.mlp(z)
