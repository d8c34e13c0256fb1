"""DreamerV3 prediction heads and their numerics (reference ``worldflux.models.dreamer.heads``).

``symlog`` / ``symexp``, two-hot encoding over bins, ``compute_td_lambda``; ``RewardHead`` (two-hot or scalar),
``ContinueHead`` (logit), ``DiscreteActorHead`` / ``ContinuousActorHead`` (actor-critic) and ``CriticHead``.

Constructor signatures, attribute and ``state_dict()`` names are the reference's, so a reference
``DreamerV3WorldModel`` state dict loads into these modules with ``strict=True``; our JAX ``DreamerV3WorldModel``
writes exactly that layout (``model.pt`` / ``model.safetensors``). The JAX model remains the fast path; these are
eager torch modules (reference §5.1). Shapes: B batch, A action_dim, D deter_dim, S stoch_discrete, K
stoch_classes, F = D + S*K features, N bins. Images are NCHW.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import mlp

__all__ = [
    "ContinueHead",
    "ContinuousActorHead",
    "CriticHead",
    "DiscreteActorHead",
    "RewardHead",
    "compute_td_lambda",
    "symexp",
    "symlog",
    "twohot_encode",
    "twohot_expected_value",
]


def symlog(x: Tensor) -> Tensor:
    """``sign(x) * ln(|x| + 1)``, elementwise."""
    return torch.sign(x) * torch.log(torch.abs(x) + 1)


def symexp(x: Tensor) -> Tensor:
    """``sign(x) * (exp(min(|x|, 88)) - 1)``, elementwise; the inverse of ``symlog`` (the clamp keeps float32
    finite)."""
    return torch.sign(x) * (torch.exp(torch.clamp(torch.abs(x), max=88.0)) - 1)


def twohot_encode(x: Tensor, bins: Tensor) -> Tensor:
    """Two-hot targets of `x` ``[*batch]`` (already in symlog space) over ascending `bins` ``[N]`` ->
    ``[*batch, N]``: the weight splits linearly between the two bins around ``x`` (clamped to the range)."""
    x = x.clamp(bins[0], bins[-1])
    lower = (torch.searchsorted(bins, x.contiguous(), right=False) - 1).clamp(0, len(bins) - 2)
    upper = lower + 1
    weight_upper = (x - bins[lower]) / (bins[upper] - bins[lower] + 1e-8)
    target = torch.zeros(*x.shape, len(bins), device=x.device, dtype=x.dtype)
    target.scatter_(-1, lower.unsqueeze(-1), (1.0 - weight_upper).unsqueeze(-1))
    target.scatter_(-1, upper.unsqueeze(-1), weight_upper.unsqueeze(-1))
    return target


def twohot_expected_value(logits: Tensor, bins: Tensor) -> Tensor:
    """``sum(softmax(logits) * bins)``: logits ``[*batch, N]``, bins ``[N]`` -> ``[*batch]`` (symlog space)."""
    return (torch.softmax(logits, dim=-1) * bins).sum(dim=-1)


def compute_td_lambda(
    rewards: Tensor, values: Tensor, continues: Tensor, gamma: float = 0.997, lambda_: float = 0.95
) -> Tensor:
    """TD(lambda) returns ``[H, N]`` from rewards ``[H, N]``, values ``[H + 1, N]``, continues ``[H, N]``:
    ``R_t = r_t + gamma * c_t * ((1 - lambda) * v_{t+1} + lambda * R_{t+1})`` with ``R_H = v_H``."""
    horizon = rewards.shape[0]
    if values.shape[0] != horizon + 1 or continues.shape[0] != horizon:
        raise ValueError(
            f"compute_td_lambda needs values [H+1, ...] and continues [H, ...] for rewards [H, ...]; got rewards "
            f"{tuple(rewards.shape)}, values {tuple(values.shape)}, continues {tuple(continues.shape)}"
        )
    returns = torch.zeros_like(rewards)
    last = values[horizon]
    for t in reversed(range(horizon)):
        last = rewards[t] + gamma * continues[t] * ((1 - lambda_) * values[t + 1] + lambda_ * last)
        returns[t] = last
    return returns


class RewardHead(nn.Module):
    """``mlp``: [Linear -> LN -> SiLU] x2 -> Linear(N) with N = num_bins (two-hot) or 1; buffer ``bins`` =
    ``linspace(bin_min, bin_max, num_bins)`` (symlog space) with two-hot. ``forward`` -> raw output ``[B, N]``;
    ``predict`` -> scalar reward ``[B]`` (expected value, symexp'd when ``use_symlog``)."""

    bins: Tensor

    def __init__(
        self,
        feature_dim: int,
        hidden_dim: int = 512,
        use_symlog: bool = True,
        use_twohot: bool = False,
        num_bins: int = 255,
        bin_min: float = -20.0,
        bin_max: float = 20.0,
    ) -> None:
        super().__init__()
        self.use_symlog, self.use_twohot, self.num_bins = use_symlog, use_twohot, num_bins
        self.mlp = mlp(feature_dim, hidden_dim, num_bins if use_twohot else 1, 3)
        if use_twohot:
            self.register_buffer("bins", torch.linspace(bin_min, bin_max, num_bins))

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features)

    def predict(self, features: Tensor) -> Tensor:
        out = self.mlp(features)
        value = twohot_expected_value(out, self.bins) if self.use_twohot else out.squeeze(-1)
        return symexp(value) if self.use_symlog else value


class ContinueHead(nn.Module):
    """``mlp``: [Linear -> LN -> SiLU] x2 -> Linear(1). ``forward`` -> logit ``[B, 1]``; ``predict`` ->
    continue probability ``[B]``."""

    def __init__(self, feature_dim: int, hidden_dim: int = 512) -> None:
        super().__init__()
        self.mlp = mlp(feature_dim, hidden_dim, 1, 3)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features)

    def predict(self, features: Tensor) -> Tensor:
        return torch.sigmoid(self.mlp(features).squeeze(-1))


class DiscreteActorHead(nn.Module):
    """Categorical policy: ``mlp`` [Linear -> LN -> SiLU] x2 -> Linear(A) logits. ``sample`` -> (straight-through
    one-hot action ``[B, A]``, log-prob ``[B]``); ``entropy`` -> ``[B]``."""

    def __init__(self, feature_dim: int, action_dim: int, hidden_dim: int = 512, entropy_coef: float = 3e-4):
        super().__init__()
        self.action_dim, self.entropy_coef = action_dim, entropy_coef
        self.mlp = mlp(feature_dim, hidden_dim, action_dim, 3)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features)

    def sample(self, features: Tensor) -> tuple[Tensor, Tensor]:
        probs = torch.softmax(self.forward(features), dim=-1)
        dist = torch.distributions.Categorical(probs=probs)
        index = dist.sample()
        onehot = F.one_hot(index, self.action_dim).to(probs.dtype)
        return onehot + probs - probs.detach(), dist.log_prob(index)

    def entropy(self, features: Tensor) -> Tensor:
        return torch.distributions.Categorical(logits=self.forward(features)).entropy()


class ContinuousActorHead(nn.Module):
    """Tanh-squashed normal policy: ``mlp`` -> Linear(2A) split into mean and ``softplus(raw) + min_std``.
    ``sample`` -> (action in (-1, 1) ``[B, A]``, log-prob with the tanh correction ``log(1 - a^2 + 1e-6)``,
    summed ``[B]``); ``entropy`` -> Gaussian entropy (before squashing) ``[B]``."""

    def __init__(
        self, feature_dim: int, action_dim: int, hidden_dim: int = 512, min_std: float = 0.1,
        entropy_coef: float = 1e-4,
    ) -> None:
        super().__init__()
        self.action_dim, self.min_std, self.entropy_coef = action_dim, min_std, entropy_coef
        self.mlp = mlp(feature_dim, hidden_dim, action_dim * 2, 3)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw_std = self.mlp(features).chunk(2, dim=-1)
        return mean, F.softplus(raw_std) + self.min_std

    def sample(self, features: Tensor) -> tuple[Tensor, Tensor]:
        mean, std = self.forward(features)
        dist = torch.distributions.Normal(mean, std)
        raw = dist.rsample()
        action = torch.tanh(raw)
        log_prob = (dist.log_prob(raw) - torch.log(1 - action.pow(2) + 1e-6)).sum(dim=-1)
        return action, log_prob

    def entropy(self, features: Tensor) -> Tensor:
        _, std = self.forward(features)
        return 0.5 * torch.log(2 * math.pi * math.e * std.pow(2)).sum(dim=-1)


class CriticHead(nn.Module):
    """Two-hot value head (the reward head's architecture): ``forward`` -> logits ``[B, num_bins]``;
    ``predict`` -> symexp of the expected value ``[B]``."""

    bins: Tensor

    def __init__(
        self, feature_dim: int, hidden_dim: int = 512, num_bins: int = 255, bin_min: float = -20.0,
        bin_max: float = 20.0,
    ) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.register_buffer("bins", torch.linspace(bin_min, bin_max, num_bins))
        self.mlp = mlp(feature_dim, hidden_dim, num_bins, 3)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features)

    def predict(self, features: Tensor) -> Tensor:
        return symexp(twohot_expected_value(self.forward(features), self.bins))
