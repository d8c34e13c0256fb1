"""TD-MPC2 latent dynamics (reference ``worldflux.models.tdmpc2.dynamics``).

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

__all__ = ["Dynamics"]

_INPUT_CLAMP = 1e4
_DELTA_MAX_NORM = 10.0
_EPS = 1e-6


def _guard(x: Tensor) -> Tensor:
    return torch.nan_to_num(x, nan=0.0, posinf=_INPUT_CLAMP, neginf=-_INPUT_CLAMP).clamp(-_INPUT_CLAMP, _INPUT_CLAMP)


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
        self.mlp = mlp(input_dim, hidden_dim, latent_dim, 2)

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
