"""DreamerV3 observation encoders (reference ``worldflux.models.dreamer.encoder``): ``CNNEncoder`` for images,
``MLPEncoder`` for vectors.

Constructor signatures, attribute and ``state_dict()`` names are the reference's, so a reference
``DreamerV3WorldModel`` state dict loads into these modules with ``strict=True``; our JAX ``DreamerV3WorldModel``
writes exactly that layout (``model.pt`` / ``model.safetensors``). The JAX model remains the fast path; these are
eager torch modules (reference §5.1). Shapes: B batch, A action_dim, D deter_dim, S stoch_discrete, K
stoch_classes, F = D + S*K features, N bins. Images are NCHW.
"""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import mlp

__all__ = ["CNNEncoder", "MLPEncoder"]


class CNNEncoder(nn.Module):
    """``conv``: per kernel Conv2d(k, stride, padding k//2 - 1) -> LayerNorm[C, H', W'] -> SiLU, channels
    ``depth * 2**i``. obs ``[B, C, H, W]`` -> embed ``[B, output_dim]``."""

    def __init__(
        self, obs_shape: tuple[int, ...], depth: int = 48, kernels: tuple[int, ...] = (4, 4, 4, 4), stride: int = 2
    ) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"CNNEncoder requires obs_shape (C, H, W), got {tuple(obs_shape)}")
        self.obs_shape, self.depth = tuple(obs_shape), depth
        in_ch = obs_shape[0]
        layers: list[nn.Module] = []
        for i, kernel in enumerate(kernels):
            out_ch, scale = depth * 2**i, stride ** (i + 1)
            layers += [
                nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2 - 1),
                nn.LayerNorm([out_ch, obs_shape[1] // scale, obs_shape[2] // scale]),
                nn.SiLU(),
            ]
            in_ch = out_ch
        self.conv = nn.Sequential(*layers)
        n = len(kernels)
        self._output_dim = depth * 2 ** (n - 1) * (obs_shape[1] // stride**n) * (obs_shape[2] // stride**n)

    @property
    def output_dim(self) -> int:
        return self._output_dim

    def forward(self, obs: Tensor) -> Tensor:
        return self.conv(obs).flatten(start_dim=1)


class MLPEncoder(nn.Module):
    """``mlp``: [Linear -> LayerNorm -> SiLU] * (num_layers - 1) -> Linear(output_dim). obs ``[B, ...]``
    (flattened) -> ``[B, output_dim]``."""

    def __init__(self, input_dim: int, hidden_dim: int = 512, output_dim: int = 512, num_layers: int = 2) -> None:
        super().__init__()
        self._output_dim = output_dim
        self.mlp = mlp(input_dim, hidden_dim, output_dim, num_layers)

    @property
    def output_dim(self) -> int:
        return self._output_dim

    def forward(self, obs: Tensor) -> Tensor:
        return self.mlp(obs.flatten(start_dim=1) if obs.dim() > 2 else obs)
