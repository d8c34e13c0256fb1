"""DreamerV3 observation decoders (reference ``worldflux.models.dreamer.decoder``): ``CNNDecoder`` (transposed
convolutions to images), ``MLPDecoder`` (vectors).

Constructor signatures, attribute and ``state_dict()`` names are the reference's, so a reference
``DreamerV3WorldModel`` state dict loads into these modules with ``strict=True``; our JAX ``DreamerV3WorldModel``
writes exactly that layout (``model.pt`` / ``model.safetensors``). The JAX model remains the fast path; these are
eager torch modules (reference §5.1). Shapes: B batch, A action_dim, D deter_dim, S stoch_discrete, K
stoch_classes, F = D + S*K features, N bins. Images are NCHW.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from .blocks import mlp

__all__ = ["CNNDecoder", "MLPDecoder"]


class CNNDecoder(nn.Module):
    """``fc`` Linear(F, C0*h*w) -> [C0, h, w], then per kernel (reversed) ``deconv`` ConvTranspose2d(k, stride,
    padding k//2 - 1) -> LayerNorm -> SiLU, the last stage mapping to the image channels without norm or
    activation. features ``[B, F]`` -> ``[B, C, H, W]`` (raw values)."""

    def __init__(
        self,
        feature_dim: int,
        obs_shape: tuple[int, ...],
        depth: int = 48,
        kernels: tuple[int, ...] = (4, 4, 4, 4),
        stride: int = 2,
    ) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"CNNDecoder requires obs_shape (C, H, W), got {tuple(obs_shape)}")
        self.obs_shape, self.depth = tuple(obs_shape), depth
        n = len(kernels)
        self.init_h, self.init_w = obs_shape[1] // stride**n, obs_shape[2] // stride**n
        self.init_channels = depth * 2 ** (n - 1)
        self.fc = nn.Linear(feature_dim, self.init_channels * self.init_h * self.init_w)
        layers: list[nn.Module] = []
        in_ch = self.init_channels
        for i, kernel in enumerate(reversed(kernels)):
            last = i == n - 1
            out_ch = obs_shape[0] if last else depth * 2 ** (n - 2 - i)
            layers.append(nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, padding=kernel // 2 - 1))
            if not last:
                scale = stride ** (i + 1)
                layers += [nn.LayerNorm([out_ch, self.init_h * scale, self.init_w * scale]), nn.SiLU()]
            in_ch = out_ch
        self.deconv = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.deconv(self.fc(features).view(-1, self.init_channels, self.init_h, self.init_w))


class MLPDecoder(nn.Module):
    """``mlp``: [Linear -> LayerNorm -> SiLU] * (num_layers - 1) -> Linear(prod(output_shape)), reshaped.
    features ``[B, F]`` -> ``[B, *output_shape]``."""

    def __init__(
        self, feature_dim: int, output_shape: tuple[int, ...], hidden_dim: int = 512, num_layers: int = 2
    ) -> None:
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.mlp = mlp(feature_dim, hidden_dim, math.prod(self.output_shape), num_layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features).view(-1, *self.output_shape)
