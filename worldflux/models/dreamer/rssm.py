"""The DreamerV3 recurrent state-space model (reference ``worldflux.models.dreamer.rssm``).

Categorical sampling (the ``sampling`` keyword, default from ``deterministic``): ``"sample"`` — Gumbel-softmax
with ``hard=True`` (straight-through; the reference's stochastic path); ``"mode"`` — ``onehot(argmax) + softmax -
sg(softmax)`` (the parity fixtures' stand-in for a sample); ``"argmax"`` — ``onehot(argmax)`` (the reference's
``deterministic=True``).

Constructor signatures, attribute and ``state_dict()`` names are the reference's, so a reference
``DreamerV3WorldModel`` state dict loads into these modules with ``strict=True``; our JAX ``DreamerV3WorldModel``
writes exactly that layout (``model.pt`` / ``model.safetensors``). The JAX model remains the fast path; these are
eager torch modules (reference §5.1). Shapes: B batch, A action_dim, D deter_dim, S stoch_discrete, K
stoch_classes, F = D + S*K features, N bins. Images are NCHW.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldflux.core.state import State

from .blocks import mlp

__all__ = ["RSSM", "SAMPLING_MODES", "sample_categorical"]

SAMPLING_MODES = ("sample", "mode", "argmax")
_INF_CLAMP = 1e4
_LOGIT_CLAMP = 30.0


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
        self.prior_net = mlp(deter_dim, hidden_dim, self.stoch_dim, 2)
        self.posterior_net = mlp(deter_dim + embed_dim, hidden_dim, self.stoch_dim, 2)

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
