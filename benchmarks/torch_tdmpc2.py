"""An eager torch implementation of the TD-MPC2 world model of `worldflux_jax.tdmpc2` (same architecture and
loss), the torch side of `benchmarks/tdmpc2.py` and `benchmarks/gpu_suite.py`.

Encoder MLP(h, h) -> SimNorm; dynamics z' = SimNorm(z + clip_norm(MLP(h, h)([z, a]), 10)); reward MLP(h); K
Q-networks MLP(h, h); tanh policy MLP(h); Mish + LayerNorm hidden layers. Loss over t = 0..T-2: consistency,
reward, TD (target ensemble min at pi(z')) and policy terms, weighted by the config's coefficients.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _mlp(in_dim: int, hidden: tuple[int, ...], out: int, out_act: str = "none") -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.LayerNorm(width), nn.Mish()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out))
    if out_act == "tanh":
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def simnorm(x: Tensor, group: int) -> Tensor:
    shape = x.shape
    return F.softmax(x.reshape(*shape[:-1], shape[-1] // group, group), dim=-1).reshape(shape)


class TorchTDMPC2(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = config
        h, lat, a = int(config["hidden_dim"]), int(config["latent_dim"]), int(config["action_dim"])
        obs = 1
        for d in config["obs_shape"]:
            obs *= int(d)
        self.encoder = _mlp(obs, (h, h), lat)
        self.dynamics = _mlp(lat + a, (h, h), lat)
        self.reward = _mlp(lat + a, (h,), 1)
        self.q = nn.ModuleList(_mlp(lat + a, (h, h), 1) for _ in range(int(config["num_q_networks"])))
        self.policy = _mlp(lat, (h,), a, out_act="tanh")
        self.target_q = copy.deepcopy(self.q).requires_grad_(False)
        self.group = int(config.get("simnorm_dim", 8))

    def encode(self, obs: Tensor) -> Tensor:
        return simnorm(self.encoder(obs.flatten(1)), self.group)

    def transition(self, z: Tensor, a: Tensor) -> Tensor:
        delta = self.dynamics(torch.cat([z, a], -1))
        norm = delta.norm(dim=-1, keepdim=True)
        return simnorm(z + delta * torch.clamp(10.0 / (norm + 1e-6), max=1.0), self.group)

    def qs(self, z: Tensor, a: Tensor, target: bool = False) -> Tensor:
        za = torch.cat([z, a], -1)
        return torch.stack([q(za)[..., 0] for q in (self.target_q if target else self.q)])

    def loss(self, obs: Tensor, actions: Tensor, rewards: Tensor, terms: Tensor) -> Tensor:
        cfg = self.cfg
        b, t = obs.shape[:2]
        z_all = self.encode(obs.reshape(b * t, -1)).reshape(b, t, -1)
        z = z_all[:, :-1].reshape(b * (t - 1), -1)
        z_next = z_all[:, 1:].reshape(b * (t - 1), -1).detach()
        act = actions[:, :-1].reshape(b * (t - 1), -1)
        rew = rewards[:, 1:].reshape(-1)
        mask = 1.0 - terms[:, 1:].reshape(-1)
        consistency = ((self.transition(z, act) - z_next) ** 2).mean()
        reward = ((self.reward(torch.cat([z, act], -1))[..., 0] - rew) ** 2).mean()
        with torch.no_grad():
            target = rew + float(cfg["gamma"]) * mask * self.qs(z_next, self.policy(z_next), target=True).min(0).values
        td = ((self.qs(z, act).mean(0) - target) ** 2).mean()
        zd = z.detach()
        policy = -self.qs(zd, self.policy(zd)).min(0).values.mean()
        return (
            float(cfg["consistency_loss_coef"]) * consistency
            + float(cfg["reward_loss_coef"]) * reward
            + float(cfg["td_loss_coef"]) * td
            + float(cfg["policy_loss_coef"]) * policy
        )

    @torch.no_grad()
    def update_target(self) -> None:
        tau = float(self.cfg["target_q_tau"])
        for target, online in zip(self.target_q.parameters(), self.q.parameters(), strict=True):
            target.lerp_(online, tau)


def torch_train_step(
    model: TorchTDMPC2, optimizer: torch.optim.Optimizer, batch: tuple[Tensor, ...], grad_clip: float
) -> float:
    """One eager step: loss, backward, clip, update, target EMA. Returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss = model.loss(*batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    model.update_target()
    return float(loss.detach())
