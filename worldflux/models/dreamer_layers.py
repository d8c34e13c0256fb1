"""The reference DreamerV3 torch layers (reference ``worldflux.models.dreamer``; §5.1 of the API facts), for code
that builds its own torch networks out of them.

Constructor signatures, attribute and ``state_dict()`` names are the reference's, so a reference
``DreamerV3WorldModel`` state dict loads into these modules with ``strict=True`` (``encoder.conv.*`` /
``encoder.mlp.*``, ``rssm.gru``, ``rssm.prior_net``, ``rssm.posterior_net``, ``decoder.fc``,
``decoder.deconv.*`` / ``decoder.mlp.*``, ``reward_head.mlp`` + buffer ``reward_head.bins``,
``continue_head.mlp``); our JAX ``DreamerV3WorldModel`` writes exactly that layout (``model.pt`` /
``model.safetensors``). The JAX model remains the fast path; these are eager torch modules.

Shapes: B batch, A action_dim, D deter_dim, S stoch_discrete, K stoch_classes, F = D + S*K features, N bins.
Images are NCHW. Activations SiLU, LayerNorm after every hidden Linear / conv.

Categorical sampling (``RSSM``; the ``sampling`` keyword, default from ``deterministic``): ``"sample"`` —
Gumbel-softmax with ``hard=True`` (straight-through; the reference's stochastic path); ``"mode"`` —
``onehot(argmax) + softmax - sg(softmax)`` (the parity fixtures' stand-in for a sample); ``"argmax"`` —
``onehot(argmax)`` (the reference's ``deterministic=True``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldflux.core.state import State

__all__ = [
    "RSSM",
    "CNNDecoder",
    "CNNEncoder",
    "ContinueHead",
    "ContinuousActorHead",
    "CriticHead",
    "DiscreteActorHead",
    "MLPDecoder",
    "MLPEncoder",
    "RewardHead",
    "compute_td_lambda",
    "sample_categorical",
    "symexp",
    "symlog",
    "twohot_encode",
    "twohot_expected_value",
]

SAMPLING_MODES = ("sample", "mode", "argmax")
_INF_CLAMP = 1e4
_LOGIT_CLAMP = 30.0

# ---------------------------------------------------------------------------------------------- functions


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


def _stabilize(x: Tensor, clamp: float) -> Tensor:
    """The reference RSSM's guard: NaN -> 0, +-inf -> +-clamp, then clamp to [-clamp, clamp]."""
    return torch.nan_to_num(x, nan=0.0, posinf=clamp, neginf=-clamp).clamp(-clamp, clamp)


def sample_categorical(logits: Tensor, sampling: str) -> Tensor:
    """One-hot sample of `logits` ``[..., K]`` -> ``[..., K]`` (``sampling`` as in the module docstring)."""
    if sampling == "argmax":
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    if sampling == "mode":
        probs = torch.softmax(logits, dim=-1)
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype) + probs - probs.detach()
    if sampling == "sample":
        return F.gumbel_softmax(logits, tau=1.0, hard=True, dim=-1)
    raise ValueError(f"sampling must be one of {list(SAMPLING_MODES)}, got {sampling!r}")


def _mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    """``[Linear -> LayerNorm -> SiLU] * (layers - 1) -> Linear``."""
    mods: list[nn.Module] = []
    for _ in range(layers - 1):
        mods += [nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.SiLU()]
        in_dim = hidden
    mods.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*mods)


# ---------------------------------------------------------------------------------------------- encoders / decoders


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
        self.mlp = _mlp(input_dim, hidden_dim, output_dim, num_layers)

    @property
    def output_dim(self) -> int:
        return self._output_dim

    def forward(self, obs: Tensor) -> Tensor:
        return self.mlp(obs.flatten(start_dim=1) if obs.dim() > 2 else obs)


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
        self.mlp = _mlp(feature_dim, hidden_dim, math.prod(self.output_shape), num_layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features).view(-1, *self.output_shape)


# ---------------------------------------------------------------------------------------------- heads


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
        self.mlp = _mlp(feature_dim, hidden_dim, num_bins if use_twohot else 1, 3)
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
        self.mlp = _mlp(feature_dim, hidden_dim, 1, 3)

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
        self.mlp = _mlp(feature_dim, hidden_dim, action_dim, 3)

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
        self.mlp = _mlp(feature_dim, hidden_dim, action_dim * 2, 3)

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
        self.mlp = _mlp(feature_dim, hidden_dim, num_bins, 3)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features)

    def predict(self, features: Tensor) -> Tensor:
        return symexp(twohot_expected_value(self.forward(features), self.bins))


# ---------------------------------------------------------------------------------------------- RSSM


class RSSM(nn.Module):
    """Recurrent state-space model: ``gru`` GRUCell(S*K + A -> D); ``prior_net`` D -> hidden -> S*K;
    ``posterior_net`` (D + E) -> hidden -> S*K; inputs and hidden state guarded (NaN -> 0, clamp +-1e4),
    logits clamped to +-30.

    ``initial_state(B)`` -> State ``deter`` zeros ``[B, D]``, ``stoch`` one-hot on class 0 ``[B, S, K]``;
    ``prior_step(state, action [B, A])`` -> ``deter``, ``stoch``, ``logits`` = ``prior_logits``;
    ``posterior_step(state, action, obs_embed [B, E])`` -> also ``posterior_logits`` (= ``logits``). The
    ``*_tensors`` variants take and return plain dicts of tensors.
    """

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        deter_dim: int = 4096,
        stoch_discrete: int = 32,
        stoch_classes: int = 32,
        hidden_dim: int = 640,
    ) -> None:
        super().__init__()
        self.embed_dim, self.action_dim, self.hidden_dim = embed_dim, action_dim, hidden_dim
        self.deter_dim, self.stoch_discrete, self.stoch_classes = deter_dim, stoch_discrete, stoch_classes
        self.stoch_dim = stoch_discrete * stoch_classes
        self.gru = nn.GRUCell(self.stoch_dim + action_dim, deter_dim)
        self.prior_net = _mlp(deter_dim, hidden_dim, self.stoch_dim, 2)
        self.posterior_net = _mlp(deter_dim + embed_dim, hidden_dim, self.stoch_dim, 2)

    @property
    def feature_dim(self) -> int:
        return self.deter_dim + self.stoch_dim

    def initial_tensors(self, batch_size: int, device: torch.device | str | None = None) -> dict[str, Tensor]:
        stoch = torch.zeros(batch_size, self.stoch_discrete, self.stoch_classes, device=device)
        stoch[..., 0] = 1.0
        return {"deter": torch.zeros(batch_size, self.deter_dim, device=device), "stoch": stoch}

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        return State(tensors=self.initial_tensors(batch_size, device), meta={"latent_type": "categorical"})

    def _deter_and_prior(self, state: Mapping[str, Tensor], action: Tensor) -> tuple[Tensor, Tensor]:
        if "deter" not in state or "stoch" not in state:
            raise ValueError(f"RSSM requires 'deter' and 'stoch' tensors in the state, got {sorted(state)}")
        z_flat = _stabilize(state["stoch"].flatten(start_dim=1), _INF_CLAMP)
        gru_input = _stabilize(torch.cat([z_flat, _stabilize(action, _INF_CLAMP)], dim=-1), _INF_CLAMP)
        deter = _stabilize(self.gru(gru_input, state["deter"]), _INF_CLAMP)
        prior_logits = self.prior_net(deter).view(-1, self.stoch_discrete, self.stoch_classes)
        return deter, _stabilize(prior_logits, _LOGIT_CLAMP)

    def prior_tensors(self, state: Mapping[str, Tensor], action: Tensor, sampling: str = "sample") -> dict[str, Tensor]:
        deter, prior_logits = self._deter_and_prior(state, action)
        stoch = sample_categorical(prior_logits, sampling)
        return {"deter": deter, "stoch": stoch, "logits": prior_logits, "prior_logits": prior_logits}

    def posterior_tensors(
        self, state: Mapping[str, Tensor], action: Tensor, obs_embed: Tensor, sampling: str = "sample"
    ) -> dict[str, Tensor]:
        deter, prior_logits = self._deter_and_prior(state, action)
        post_input = _stabilize(torch.cat([deter, _stabilize(obs_embed, _INF_CLAMP)], dim=-1), _INF_CLAMP)
        post_logits = self.posterior_net(post_input).view(-1, self.stoch_discrete, self.stoch_classes)
        post_logits = _stabilize(post_logits, _LOGIT_CLAMP)
        return {
            "deter": deter,
            "stoch": sample_categorical(post_logits, sampling),
            "logits": post_logits,
            "prior_logits": prior_logits,
            "posterior_logits": post_logits,
        }

    def prior_step(
        self, state: State, action: Tensor, deterministic: bool = False, *, sampling: str | None = None
    ) -> State:
        """Imagination step (no observation)."""
        mode = sampling or ("argmax" if deterministic else "sample")
        return State(tensors=self.prior_tensors(state.tensors, action, mode), meta={"latent_type": "categorical"})

    def posterior_step(self, state: State, action: Tensor, obs_embed: Tensor, *, sampling: str = "sample") -> State:
        """Filtering step (with the observation's embedding); the reference always samples here."""
        tensors = self.posterior_tensors(state.tensors, action, obs_embed, sampling)
        return State(tensors=tensors, meta={"latent_type": "categorical"})
