"""Latent spaces for torch world models (reference ``worldflux.core.latent_space``): sampling and
KL(posterior || prior) per batch element for Gaussian, categorical and SimNorm latents. They are
``nn.Module``s without parameters, for user models built on the open ``WorldModel`` base class."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CategoricalLatentSpace", "GaussianLatentSpace", "LatentSpace", "SimNormLatentSpace"]


class LatentSpace(ABC, nn.Module):
    """Sampling from distribution parameters and ``kl_divergence(posterior, prior, free_nats=0.0) -> [B]``."""

    @abstractmethod
    def sample(self, params: Tensor, deterministic: bool = False) -> Tensor:
        """A latent sample from `params` (the mode when `deterministic`)."""

    @abstractmethod
    def kl_divergence(self, posterior_params: Tensor, prior_params: Tensor, free_nats: float = 0.0) -> Tensor:
        """KL(posterior || prior) per batch element ``[B]``; `free_nats` is the free-bits threshold."""

    @property
    @abstractmethod
    def param_dim(self) -> int:
        """Size of the parameter vector the distribution needs."""


class GaussianLatentSpace(LatentSpace):
    """Diagonal Gaussian: params ``[B, 2 * dim]`` = mean and raw std, std = min + (max - min) * sigmoid(raw)."""

    def __init__(self, dim: int, min_std: float = 0.1, max_std: float = 2.0) -> None:
        super().__init__()
        self.dim, self.min_std, self.max_std = int(dim), float(min_std), float(max_std)

    @property
    def param_dim(self) -> int:
        return 2 * self.dim

    def _mean_std(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw = params.chunk(2, dim=-1)
        return mean, self.min_std + (self.max_std - self.min_std) * torch.sigmoid(raw)

    def sample(self, params: Tensor, deterministic: bool = False) -> Tensor:
        mean, std = self._mean_std(params)
        return mean if deterministic else mean + std * torch.randn_like(std)

    def kl_divergence(self, posterior_params: Tensor, prior_params: Tensor, free_nats: float = 0.0) -> Tensor:
        p_mean, p_std = self._mean_std(posterior_params)
        q_mean, q_std = self._mean_std(prior_params)
        p_var, q_var = p_std.square(), q_std.square()
        kl = 0.5 * (torch.log(q_var / p_var) + (p_var + (p_mean - q_mean).square()) / q_var - 1).sum(-1)
        return torch.clamp(kl - free_nats, min=0.0) if free_nats > 0 else kl


class CategoricalLatentSpace(LatentSpace):
    """``num_categoricals`` categoricals of ``num_classes`` classes; samples are one-hot (Gumbel-softmax,
    straight-through by default); KL is summed over categoricals, with ``max(free_nats, kl)`` free bits."""

    def __init__(
        self, num_categoricals: int = 32, num_classes: int = 32, temperature: float = 1.0, straight_through: bool = True
    ) -> None:
        super().__init__()
        self.num_categoricals, self.num_classes = int(num_categoricals), int(num_classes)
        self.temperature, self.straight_through = float(temperature), bool(straight_through)

    @property
    def param_dim(self) -> int:
        return self.num_categoricals * self.num_classes

    @property
    def sample_dim(self) -> int:
        return self.num_categoricals * self.num_classes

    def _grouped(self, logits: Tensor) -> Tensor:
        return logits.view(-1, self.num_categoricals, self.num_classes) if logits.dim() == 2 else logits

    def sample(self, logits: Tensor, deterministic: bool = False) -> Tensor:
        logits = self._grouped(logits)
        if deterministic:
            return F.one_hot(logits.argmax(-1), self.num_classes).float()
        return F.gumbel_softmax(logits, tau=self.temperature, hard=self.straight_through, dim=-1)

    def kl_divergence(self, posterior_logits: Tensor, prior_logits: Tensor, free_nats: float = 0.0) -> Tensor:
        post, prior = self._grouped(posterior_logits), self._grouped(prior_logits)
        log_post = F.log_softmax(post, -1)
        kl = (log_post.exp() * (log_post - F.log_softmax(prior, -1))).sum(-1).sum(-1)
        return torch.clamp(kl, min=free_nats) if free_nats > 0 else kl


class SimNormLatentSpace(LatentSpace):
    """TD-MPC2's simplicial normalization: softmax over groups of ``simnorm_dim`` (deterministic)."""

    def __init__(self, dim: int = 512, simnorm_dim: int = 8) -> None:
        super().__init__()
        if dim % simnorm_dim != 0:
            raise ValueError(f"dim ({dim}) must be divisible by simnorm_dim ({simnorm_dim})")
        self.dim, self.simnorm_dim, self.num_simplices = int(dim), int(simnorm_dim), dim // simnorm_dim

    @property
    def param_dim(self) -> int:
        return self.dim

    def sample(self, params: Tensor, deterministic: bool = False) -> Tensor:
        return F.softmax(params.view(-1, self.num_simplices, self.simnorm_dim), -1).view(-1, self.dim)

    def kl_divergence(self, posterior_params: Tensor, prior_params: Tensor, free_nats: float = 0.0) -> Tensor:
        shape = (-1, self.num_simplices, self.simnorm_dim)
        post = F.softmax(posterior_params.view(shape), -1)
        prior = F.softmax(prior_params.view(shape), -1)
        kl = (post * (torch.log(post + 1e-8) - torch.log(prior + 1e-8))).sum(-1).sum(-1)
        return torch.clamp(kl - free_nats, min=0.0) if free_nats > 0 else kl
