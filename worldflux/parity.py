"""Parity tool over the public API: recompute a reference fixture through ``WorldModel`` methods and compare.

    python -m worldflux.parity FIXTURE.npz [--json]

Same fixtures, rows, tolerances, output and exit status (0 = every key within tolerance, 1 otherwise) as
``python -m worldflux_jax.parity`` (whose ``compare`` / ``Row`` / tolerances this module reuses), but the forward
keys are produced by the documented torch-in/torch-out API instead of the core functions:

* the model is ``create_world_model(meta["model_id"], **meta["overrides"])`` (or, without a model id, built from
  the JSON's ``config``), loaded with ``load_state_dict`` of the ``param/*`` arrays as torch tensors;
* inside ``with model.sampling_mode("mode"):`` (the fixtures' straight-through-mode convention) it calls
  ``encode(obs[:, 0])``, ``transition(state, actions[:, 0], deterministic=True)``,
  ``update(state, actions[:, 0], obs[:, 1])``, ``decode(transition_state)``,
  ``rollout(state, actions.transpose(0, 1), deterministic=True)`` and ``loss(Batch(...))`` with torch tensors,
  and compares the torch outputs.

``grad/*`` keys: the public API has no autograd (``LossOutput`` tensors are values; the models are JAX-backed,
not ``torch.nn.Module``s), so gradients are ``jax.grad`` of the model's core loss at ``model.params`` — the same
function ``model.loss`` evaluates and the trainers differentiate — under the model's reference parameter names.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import torch

from worldflux_jax.parity import Row, compare, load_fixture, report

__all__ = ["build_model", "main", "recompute", "run_fixture"]

Arrays = dict[str, np.ndarray]


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _flat(prefix: str, tree: Mapping[str, Any]) -> Arrays:
    return {f"{prefix}/{k}": _np(v) for k, v in tree.items()}


def build_model(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Any:
    """The fixture's model through the public factory, loaded (strictly) with its ``param/*`` weights.

    Raises:
        ValueError: the metadata has neither ``model_id`` nor ``config``.
    """
    if meta.get("model_id"):
        overrides = dict(meta.get("overrides") or {})
        if "obs_shape" in overrides:
            overrides["obs_shape"] = tuple(overrides["obs_shape"])
        from worldflux.factory import create_world_model

        model = create_world_model(str(meta["model_id"]), **overrides)
    elif meta.get("config"):
        from worldflux.models import registry
        from worldflux_jax.config import config_from_dict

        config = dict(meta["config"])
        config.pop("device", None)
        model = registry.build_model(config_from_dict(config), device="cpu", api_version="v3")
    else:
        raise ValueError("fixture metadata needs 'model_id' (+ 'overrides') or 'config'")
    state_dict = {
        k.removeprefix("param/"): torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("param/")
    }
    model.load_state_dict(state_dict, strict=True)
    return model


def _core_grads(model: Any, arrays: Mapping[str, np.ndarray]) -> Arrays:
    """``grad/<name>`` from ``jax.grad`` of the core loss at ``model.params`` ("mode" sampling)."""
    batch_arrays = {k: jax.numpy.asarray(arrays[f"input/{k}"]) for k in ("obs", "actions", "rewards", "terminations")}
    core = model.core
    batch = model.core_batch(batch_arrays)
    grads = jax.jit(jax.grad(lambda p: core.reference_loss(p, model.extras, batch)[0]))(model.params)
    named = core.torch_state_dict(grads, None)
    return {f"grad/{k}": np.asarray(v) for k, v in named.items()}


def recompute(model: Any, arrays: Mapping[str, np.ndarray]) -> Arrays:
    """Every fixture key recomputed through the public ``WorldModel`` methods (torch in, torch out)."""
    from worldflux.core import Batch

    obs = torch.from_numpy(np.array(arrays["input/obs"]))
    actions = torch.from_numpy(np.array(arrays["input/actions"]))
    rewards = torch.from_numpy(np.array(arrays["input/rewards"]))
    terminations = torch.from_numpy(np.array(arrays["input/terminations"]))
    out: Arrays = {}
    with model.sampling_mode("mode"):
        encoded = model.encode(obs[:, 0])
        out.update(_flat("encode", encoded.tensors))
        prior = model.transition(encoded, actions[:, 0], deterministic=True)
        out.update(_flat("transition", prior.tensors))
        if any(k.startswith("update/") for k in arrays):
            out.update(_flat("update", model.update(encoded, actions[:, 0], obs[:, 1]).tensors))
        out.update(_flat("decode", model.decode(prior).predictions))
        trajectory = model.rollout(encoded, actions.transpose(0, 1), deterministic=True)
        for i, state in enumerate(trajectory.states):
            out.update(_flat(f"rollout/state{i}", state.tensors))
        out["rollout/rewards"] = _np(trajectory.rewards)
        out["rollout/continues"] = _np(trajectory.continues)
        loss = model.loss(Batch(obs=obs, actions=actions, rewards=rewards, terminations=terminations))
    out["loss/total"] = _np(loss.loss)
    out.update(_flat("loss", loss.components))
    out.update(_core_grads(model, arrays))
    return out


def run_fixture(npz_path: str | Path) -> list[Row]:
    """Load `npz_path` and its ``.json``, recompute every key through the public API, and compare."""
    meta, arrays = load_fixture(npz_path)
    model = build_model(meta, arrays)
    return compare(arrays, recompute(model, arrays))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 when every key is within tolerance)."""
    parser = argparse.ArgumentParser(prog="python -m worldflux.parity", description=__doc__.splitlines()[0])
    parser.add_argument("fixture", help="path to CASE.npz (CASE.json must sit beside it)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = run_fixture(args.fixture)
    return report(args.fixture, rows, args.json) if rows else 1


if __name__ == "__main__":
    sys.exit(main())
