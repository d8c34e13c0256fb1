"""A self-contained torch replica of the reference WorldFlux DreamerV3 world model.

Same architecture, parameter names and `state_dict()` layout as the reference `DreamerV3WorldModel`
(WorldFlux 0.1.1; see `shared/reference/worldflux-api.md` §4.3 and §5.1), written eagerly with per-time-step
Python loops like the reference. It serves as

* the torch baseline of the same architecture in `benchmarks/dreamerv3_train_step.py`, and
* a generator of new parity fixtures (`make_fixture`) in exactly the format of the shipped ones
  (`tests/fixtures/parity/README.md`), for other dims, observation shapes and free nats.

`tests/test_torch_dreamer_replica.py` proves that it reproduces the shipped reference fixtures.

Shapes: B batch, T time, A action_dim, D deter_dim, S stoch_discrete, K stoch_classes,
F = D + S*K features, N reward bins. Images are NCHW. A state is a dict of tensors: `deter` [B, D],
`stoch` [B, S, K], `logits` and `prior_logits` [B, S, K] (plus `posterior_logits` after a posterior step).

Categorical sampling (`sampling` argument):

* ``"sample"``: Gumbel-softmax with ``hard=True`` (the reference's stochastic path);
* ``"mode"``: ``onehot(argmax(logits)) + softmax(logits) - softmax(logits).detach()`` (the straight-through
  mode the fixtures use in place of every stochastic sample);
* ``"argmax"``: ``onehot(argmax(logits))`` (the reference's ``deterministic=True``).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldflux.models.dreamer.decoder import CNNDecoder, MLPDecoder
from worldflux.models.dreamer.encoder import CNNEncoder, MLPEncoder
from worldflux.models.dreamer.heads import (
    ContinueHead,
    RewardHead,
    symexp,
    symlog,
    twohot_encode,
    twohot_expected_value,
)
from worldflux.models.dreamer.rssm import RSSM

State = dict[str, Tensor]

SAMPLING_NOTE = (
    "categorical samples use the straight-through mode onehot(argmax)+p-sg(p); deterministic=True uses "
    "onehot(argmax)"
)


# ----------------------------------------------------------------------------------------------------------
# The layers and elementwise helpers are the package's reference layers (`worldflux.models.dreamer.*`);
# only the loss's KL lives here.
# ----------------------------------------------------------------------------------------------------------


def categorical_kl(posterior_logits: Tensor, prior_logits: Tensor, free_nats: float = 0.0) -> Tensor:
    """KL(post || prior) summed over the S categoricals, then max(KL, free_nats) when free_nats > 0.

    posterior_logits, prior_logits: [B, S, K] -> [B].
    """
    posterior = F.softmax(posterior_logits, dim=-1)
    log_ratio = F.log_softmax(posterior_logits, dim=-1) - F.log_softmax(prior_logits, dim=-1)
    kl = (posterior * log_ratio).sum(dim=-1).sum(dim=-1)
    if free_nats > 0:
        kl = torch.maximum(kl, torch.tensor(free_nats, device=kl.device))
    return kl


class RolloutOutput(NamedTuple):
    """`states`: T + 1 states (the initial one first); `rewards`, `continues` (logits): [T, B]."""

    states: list[State]
    rewards: Tensor
    continues: Tensor


class TorchDreamerV3(nn.Module):
    """The reference DreamerV3 world model, built from a reference config dict (`config.to_dict()`).

    Children in reference order (and so the reference `state_dict()` layout and default-init RNG order):
    `encoder`, `rssm`, `decoder`, `reward_head`, `continue_head`, then the empty buffer `_device_tracker`.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = copy.deepcopy(dict(config))
        cfg = self.config
        self.obs_shape = tuple(int(d) for d in cfg["obs_shape"])
        self.action_dim = int(cfg["action_dim"])
        self.encoder_type = cfg.get("encoder_type", "cnn")
        self.decoder_type = cfg.get("decoder_type", "cnn")
        self.kl_free = float(cfg.get("kl_free", 1.0))
        self.use_symlog = bool(cfg.get("use_symlog", True))
        self.use_twohot = bool(cfg.get("use_twohot", True))
        self.loss_scales = dict(cfg["loss_scales"])
        deter, hidden = int(cfg["deter_dim"]), int(cfg["hidden_dim"])
        discrete, classes = int(cfg["stoch_discrete"]), int(cfg["stoch_classes"])
        depth = int(cfg.get("cnn_depth", 48))
        kernels = tuple(int(k) for k in cfg.get("cnn_kernels", (4, 4, 4, 4)))
        if "cnn" in (self.encoder_type, self.decoder_type):
            if len(self.obs_shape) != 3:
                raise ValueError(f"CNN encoder/decoder requires 3D obs_shape (C, H, W), got {self.obs_shape}")
            if any(d % 2 ** len(kernels) for d in self.obs_shape[1:]):
                raise ValueError(f"H and W must be divisible by {2 ** len(kernels)}, got {self.obs_shape}")

        self.encoder: CNNEncoder | MLPEncoder
        if self.encoder_type == "cnn":
            self.encoder = CNNEncoder(self.obs_shape, depth, kernels)
        else:
            self.encoder = MLPEncoder(math.prod(self.obs_shape), hidden, deter)
        self.rssm = RSSM(self.encoder.output_dim, self.action_dim, deter, discrete, classes, hidden)
        feature_dim = deter + discrete * classes
        self.decoder: CNNDecoder | MLPDecoder
        if self.decoder_type == "cnn":
            self.decoder = CNNDecoder(feature_dim, self.obs_shape, depth, kernels)
        else:
            self.decoder = MLPDecoder(feature_dim, self.obs_shape, hidden)
        self.reward_head = RewardHead(
            feature_dim,
            hidden,
            self.use_symlog,
            self.use_twohot,
            int(cfg.get("reward_num_bins", 255)),
            float(cfg.get("reward_bin_min", -20.0)),
            float(cfg.get("reward_bin_max", 20.0)),
        )
        self.continue_head = ContinueHead(feature_dim, hidden)
        self.register_buffer("_device_tracker", torch.empty(0))

    # -- world-model API ----------------------------------------------------------------------------------

    def initial_state(self, batch_size: int) -> State:
        """deter zeros [B, D]; stoch one-hot on class 0 [B, S, K]."""
        return self.rssm.initial_tensors(batch_size, self._device_tracker.device)

    def _zero_action(self, batch_size: int, like: Tensor) -> Tensor:
        return torch.zeros(batch_size, self.action_dim, device=like.device)

    def encode(self, obs: Tensor, sampling: str = "sample") -> State:
        """obs [B, *obs_shape] -> posterior state from the initial state with a zero action."""
        embed = self.encoder(obs)
        batch = obs.shape[0]
        initial = self.rssm.initial_tensors(batch, obs.device)
        return self.rssm.posterior_tensors(initial, self._zero_action(batch, obs), embed, sampling)

    def transition(self, state: State, action: Tensor | None, sampling: str = "sample") -> State:
        """Prior step: state, action [B, A] (zeros if None) -> next state."""
        if action is None:
            action = self._zero_action(state["deter"].shape[0], state["deter"])
        return self.rssm.prior_tensors(state, action, sampling)

    def update(self, state: State, action: Tensor | None, obs: Tensor, sampling: str = "sample") -> State:
        """Posterior step: state, action [B, A] (zeros if None), obs [B, *obs_shape] -> next state."""
        if action is None:
            action = self._zero_action(obs.shape[0], obs)
        return self.rssm.posterior_tensors(state, action, self.encoder(obs), sampling)

    @staticmethod
    def features(state: State) -> Tensor:
        """concat(deter [B, D], flatten(stoch) [B, S*K]) -> [B, F]."""
        return torch.cat([state["deter"], state["stoch"].flatten(start_dim=1)], dim=-1)

    def _reward_value(self, reward_out: Tensor) -> Tensor:
        """Reward head output [B, N] -> scalar reward prediction [B, 1]."""
        if self.use_twohot:
            value = twohot_expected_value(reward_out, self.reward_head.bins).unsqueeze(-1)
        else:
            value = reward_out
        return symexp(value) if self.use_symlog else value

    def decode(self, state: State) -> dict[str, Tensor]:
        """state -> {"obs": [B, *obs_shape] (raw decoder output), "reward": [B, 1] (symexp of the expected
        value), "continue": [B, 1] (raw logit)}."""
        feats = self.features(state)
        return {
            "obs": self.decoder(feats),
            "reward": self._reward_value(self.reward_head(feats)),
            "continue": self.continue_head(feats),
        }

    def rollout(self, state: State, actions: Tensor, sampling: str = "sample") -> RolloutOutput:
        """Open-loop prior rollout: actions [T, B, A] -> T + 1 states, rewards [T, B], continue logits [T, B]."""
        states = [state]
        rewards, continues = [], []
        for t in range(actions.shape[0]):
            state = self.transition(state, actions[t], sampling)
            decoded = self.decode(state)
            states.append(state)
            rewards.append(decoded["reward"])
            continues.append(decoded["continue"])
        if not rewards:
            empty = torch.zeros(0, state["deter"].shape[0], device=state["deter"].device)
            return RolloutOutput(states, empty, empty.clone())
        return RolloutOutput(
            states, torch.stack(rewards).squeeze(-1), torch.stack(continues).squeeze(-1)
        )

    def loss(
        self, obs: Tensor, actions: Tensor, rewards: Tensor, terminations: Tensor, sampling: str = "sample"
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """World-model loss of a sequence batch.

        obs [B, T, *obs_shape], actions [B, T, A], rewards [B, T], terminations [B, T] ->
        (scalar total, components {kl_dynamics, kl_representation, kl, reconstruction, reward, continue}).
        """
        batch, seq_len = obs.shape[:2]
        continues = 1.0 - terminations
        state = self.initial_state(batch)
        states = []
        for t in range(seq_len):
            action = self._zero_action(batch, obs) if t == 0 else actions[:, t - 1]
            state = self.update(state, action, obs[:, t], sampling)
            states.append(state)

        zero = torch.tensor(0.0, device=obs.device)
        kl_dyn, kl_rep, recon, reward_loss, cont_loss = zero, zero, zero, zero, zero
        for t, st in enumerate(states):
            post, prior = st["posterior_logits"], st["prior_logits"]
            kl_dyn = kl_dyn + categorical_kl(post.detach(), prior, self.kl_free).mean()
            kl_rep = kl_rep + categorical_kl(post, prior.detach(), self.kl_free).mean()
            decoded = self.decode(st)
            target = obs[:, t]
            if self.use_symlog and self.decoder_type != "cnn":
                target = symlog(target)
            recon = recon + F.mse_loss(decoded["obs"], target)
            if t == 0:
                continue
            feats = self.features(st)
            reward_target = symlog(rewards[:, t]) if self.use_symlog else rewards[:, t]
            reward_out = self.reward_head(feats)
            if self.use_twohot:
                soft = twohot_encode(reward_target, self.reward_head.bins)
                reward_loss = reward_loss - (soft * F.log_softmax(reward_out, dim=-1)).sum(-1).mean()
            else:
                reward_loss = reward_loss + F.mse_loss(reward_out.squeeze(-1), reward_target)
            cont_loss = cont_loss + F.binary_cross_entropy_with_logits(
                self.continue_head(feats).squeeze(-1), continues[:, t]
            )
        steps = max(seq_len - 1, 1)
        components = {
            "kl_dynamics": kl_dyn / seq_len,
            "kl_representation": kl_rep / seq_len,
        }
        components["kl"] = components["kl_dynamics"] + components["kl_representation"]
        components["reconstruction"] = recon / seq_len
        components["reward"] = reward_loss / steps
        components["continue"] = cont_loss / steps
        scales = self.loss_scales
        total = (
            scales.get("reconstruction", 1.0) * components["reconstruction"]
            + scales.get("kl_dynamics", 0.5) * components["kl_dynamics"]
            + scales.get("kl_representation", 0.1) * components["kl_representation"]
            + scales.get("reward", 1.0) * components["reward"]
            + scales.get("continue", 1.0) * components["continue"]
        )
        return total, components


# ----------------------------------------------------------------------------------------------------------
# Fixture generation
# ----------------------------------------------------------------------------------------------------------

_OVERRIDE_FIELDS = (
    "obs_shape",
    "action_dim",
    "encoder_type",
    "decoder_type",
    "deter_dim",
    "stoch_discrete",
    "stoch_classes",
    "hidden_dim",
    "cnn_depth",
    "kl_free",
)


def derive_config(base: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A full reference-style config: `base` (e.g. a shipped fixture's `config`) with `overrides` applied and
    the dependent fields re-derived (`stoch_dim`, `action_spec.dim`, `observation_modalities`, list types)."""
    cfg = copy.deepcopy(dict(base))
    cfg.update(copy.deepcopy(overrides))
    cfg["obs_shape"] = [int(d) for d in cfg["obs_shape"]]
    cfg["cnn_kernels"] = [int(k) for k in cfg.get("cnn_kernels", (4, 4, 4, 4))]
    cfg["stoch_dim"] = int(cfg["stoch_discrete"]) * int(cfg["stoch_classes"])
    spec = dict(cfg.get("action_spec") or {"kind": "continuous", "discrete": False})
    spec["dim"] = int(cfg["action_dim"])
    cfg["action_spec"] = spec
    kind = {1: "vector", 3: "image", 4: "video"}.get(len(cfg["obs_shape"]), "other")
    cfg["observation_modalities"] = {"obs": {"dtype": "float32", "kind": kind, "shape": list(cfg["obs_shape"])}}
    return cfg


def _state_arrays(prefix: str, state: State) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": v.detach().cpu().numpy().astype(np.float32) for k, v in state.items()}


def fixture_arrays(model: TorchDreamerV3, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every non-`param/`, non-`input/` fixture key, computed by `model` from `inputs` (`obs` [B, T, ...],
    `actions` [B, T, A], `rewards` [B, T], `terminations` [B, T]) with the fixture sampling convention."""
    obs, actions, rewards, terms = (
        torch.from_numpy(np.asarray(inputs[k], dtype=np.float32))
        for k in ("obs", "actions", "rewards", "terminations")
    )
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        enc = model.encode(obs[:, 0], "mode")
        trans = model.transition(enc, actions[:, 0], "argmax")
        upd = model.update(enc, actions[:, 0], obs[:, 1], "mode")
        out.update(_state_arrays("encode", enc))
        out.update(_state_arrays("transition", trans))
        out.update(_state_arrays("update", upd))
        out.update(_state_arrays("decode", model.decode(trans)))
        roll = model.rollout(enc, actions.transpose(0, 1), "argmax")
        for i, st in enumerate(roll.states):
            out.update(_state_arrays(f"rollout/state{i}", st))
        out["rollout/rewards"] = roll.rewards.numpy()
        out["rollout/continues"] = roll.continues.numpy()
    model.zero_grad(set_to_none=True)
    total, components = model.loss(obs, actions, rewards, terms, "mode")
    total.backward()
    out["loss/total"] = total.detach().numpy()
    for name, value in components.items():
        out[f"loss/{name}"] = value.detach().numpy()
    for name, param in model.named_parameters():
        grad = param.grad if param.grad is not None else torch.zeros_like(param)
        out[f"grad/{name}"] = grad.detach().numpy().copy()
    model.zero_grad(set_to_none=True)
    return out


def make_fixture(
    config_dict: dict[str, Any],
    obs_shape: tuple[int, ...] | list[int],
    B: int,  # noqa: N803 - the fixture format's name
    T: int,  # noqa: N803
    seed: int,
    path_stem: str | Path,
    *,
    case: str | None = None,
    model_id: str = "dreamerv3:ci",
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Write `path_stem.npz` and `path_stem.json`, a parity fixture in the shipped format; returns the .npz.

    Weights: torch default init after `torch.manual_seed(seed)` (global RNG state is restored afterwards).
    Inputs (numpy `default_rng(seed)`): obs [B, T, *obs_shape] standard normal, actions [B, T, A] uniform
    [-1, 1], rewards [B, T] standard normal, terminations [B, T] Bernoulli(0.1) as float32.
    `overrides` is recorded in the JSON (default: the architecture fields of the config).
    """
    cfg = derive_config(config_dict, obs_shape=list(obs_shape))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TorchDreamerV3(cfg)
    rng = np.random.default_rng(seed)
    shape = tuple(cfg["obs_shape"])
    inputs = {
        "obs": rng.standard_normal((B, T, *shape), dtype=np.float32),
        "actions": rng.uniform(-1.0, 1.0, (B, T, cfg["action_dim"])).astype(np.float32),
        "rewards": rng.standard_normal((B, T), dtype=np.float32),
        "terminations": (rng.random((B, T)) < 0.1).astype(np.float32),
    }
    arrays: dict[str, np.ndarray] = {
        f"param/{k}": v.detach().numpy().copy() for k, v in model.state_dict().items() if k != "_device_tracker"
    }
    arrays.update({f"input/{k}": v for k, v in inputs.items()})
    arrays.update(fixture_arrays(model, inputs))

    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    npz_path = stem.with_name(stem.name + ".npz")
    np.savez(npz_path, **arrays)
    meta = {
        "batch_size": B,
        "case": case or stem.name,
        "config": cfg,
        "keys": sorted(arrays),
        "model_id": model_id,
        "overrides": overrides if overrides is not None else {k: cfg[k] for k in _OVERRIDE_FIELDS},
        "parameter_count": sum(p.numel() for p in model.parameters()),
        "reference_version": "0.1.1",
        "generator": "benchmarks/torch_dreamer.py (torch replica of the reference)",
        "sampling": SAMPLING_NOTE,
        "seq_len": T,
        "torch_version": torch.__version__,
    }
    stem.with_name(stem.name + ".json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return npz_path
