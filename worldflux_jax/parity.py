"""Parity tool: recompute a reference fixture with our models and compare every number.

    python -m worldflux_jax.parity FIXTURE.npz [--json]

`FIXTURE.npz` and its `FIXTURE.json` follow `tests/fixtures/parity/README.md`: the model is built from
the JSON's `config`, loaded with the `param/*` weights, fed the `input/*` arrays, and every `encode/`,
`transition/`, `update/`, `decode/`, `rollout/`, `loss/` and `grad/` key is recomputed with the "mode"
sampling convention. One row per key; exit status 1 if any key is missing or out of tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from worldflux_jax.config import config_from_dict
from worldflux_jax.torch_layout import params_to_torch

FORWARD_TOL = (1e-4, 1e-5)  # (rtol, atol)
GRAD_TOL = (1e-3, 1e-5)
COMPARED_GROUPS = ("encode", "transition", "update", "decode", "rollout", "loss", "grad")

Arrays = dict[str, np.ndarray]


class Row(NamedTuple):
    key: str
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""


def _flat(prefix: str, tree: dict[str, Any]) -> Arrays:
    return {f"{prefix}/{k}": np.asarray(v) for k, v in tree.items()}


def recompute_dreamer(config: Any, arrays: Arrays) -> Arrays:
    """Every fixture key of a DreamerV3 case, recomputed through `worldflux_jax.dreamer`."""
    from worldflux_jax.dreamer import Batch, DreamerV3

    model = DreamerV3(config)
    params = model.from_torch_state_dict(_params(arrays))
    # actor_critic: the actor / critic heads load from (and gradients export to) their torch names; the slow
    # critic and the normaliser buffers come from the fixture when present.
    extras = model.extras_from_torch_state_dict(_params(arrays), params)
    obs = jnp.asarray(arrays["input/obs"])
    actions = jnp.asarray(arrays["input/actions"])
    # Jitted: one compile per function is much faster than running these models op by op.
    encode = jax.jit(model.encode, static_argnames="sampling")
    transition = jax.jit(model.transition, static_argnames="sampling")
    update = jax.jit(model.update, static_argnames="sampling")
    rollout = jax.jit(model.rollout, static_argnames="sampling")
    out: Arrays = {}
    encoded = encode(params, obs[:, 0], sampling="mode")
    out.update(_flat("encode", encoded))
    prior = transition(params, encoded, actions[:, 0], sampling="argmax")
    out.update(_flat("transition", prior))
    out.update(_flat("update", update(params, encoded, actions[:, 0], obs[:, 1], sampling="mode")))
    out.update(_flat("decode", jax.jit(model.decode)(params, prior)))

    states, rewards, continues = rollout(params, encoded, jnp.swapaxes(actions, 0, 1), sampling="argmax")
    out.update(_flat("rollout/state0", encoded))
    for t in range(actions.shape[1]):
        out.update(_flat(f"rollout/state{t + 1}", {k: v[t] for k, v in states.items()}))
    out["rollout/rewards"] = np.asarray(rewards)
    out["rollout/continues"] = np.asarray(continues)

    batch = Batch(obs, actions, jnp.asarray(arrays["input/rewards"]), jnp.asarray(arrays["input/terminations"]))

    def total(p: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        return model.loss(p, batch, sampling="mode", extras=extras)

    (loss, components), grads = jax.jit(jax.value_and_grad(total, has_aux=True))(params)
    out["loss/total"] = np.asarray(loss)
    out.update(_flat("loss", components))
    out.update(_flat("grad", params_to_torch(grads)))
    return out


def recompute_tdmpc2(config: Any, arrays: Arrays) -> Arrays:
    """Every fixture key of a TD-MPC2 case, recomputed through `worldflux_jax.tdmpc2` (two jitted calls)."""
    from worldflux_jax.tdmpc2 import TDMPC2, Batch

    model = TDMPC2(config)
    params, target = model.from_torch_state_dict(_params(arrays))
    obs = jnp.asarray(arrays["input/obs"])
    actions = jnp.asarray(arrays["input/actions"])

    @jax.jit
    def forward(params: Any) -> dict[str, jax.Array]:
        encoded = model.encode(params, obs[:, 0])
        nxt = model.transition(params, encoded, actions[:, 0])
        states, rewards, continues = model.rollout(params, encoded, jnp.swapaxes(actions, 0, 1))
        out = {
            "encode/latent": encoded["latent"],
            "transition/latent": nxt["latent"],
            "rollout/state0/latent": encoded["latent"],
            "rollout/rewards": rewards,
            "rollout/continues": continues,
        }
        out.update({f"decode/{k}": v for k, v in model.decode(params, nxt).items()})
        for t in range(actions.shape[1]):
            out[f"rollout/state{t + 1}/latent"] = states["latent"][t]
        return out

    batch = Batch(obs, actions, jnp.asarray(arrays["input/rewards"]), jnp.asarray(arrays["input/terminations"]))

    def total(p: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        return model.loss(p, target, batch)

    (loss, components), grads = jax.jit(jax.value_and_grad(total, has_aux=True))(params)
    out = {k: np.asarray(v) for k, v in forward(params).items()}
    out["loss/total"] = np.asarray(loss)
    out.update(_flat("loss", components))
    out.update(_flat("grad", model.named_parameters(grads)))
    return out


def _params(arrays: Arrays) -> Arrays:
    return {k.removeprefix("param/"): v for k, v in arrays.items() if k.startswith("param/")}


#: model_type -> function(config, arrays) -> recomputed arrays.
RECOMPUTE: dict[str, Callable[[Any, Arrays], Arrays]] = {
    "dreamer": recompute_dreamer,
    "tdmpc2": recompute_tdmpc2,
}


def compare(expected: Arrays, got: Arrays) -> list[Row]:
    """One row per compared fixture key (forward keys at `FORWARD_TOL`, `grad/` keys at `GRAD_TOL`)."""
    rows = []
    for key in sorted(expected):
        if key.split("/", 1)[0] not in COMPARED_GROUPS:
            continue
        ref = np.asarray(expected[key], np.float64)
        if key not in got:
            rows.append(Row(key, float("nan"), float("nan"), False, "missing"))
            continue
        val = np.asarray(got[key], np.float64)
        if val.shape != ref.shape:
            rows.append(Row(key, float("nan"), float("nan"), False, f"shape {val.shape} != {ref.shape}"))
            continue
        rtol, atol = GRAD_TOL if key.startswith("grad/") else FORWARD_TOL
        diff = np.abs(val - ref)
        ok = bool(np.all(diff <= atol + rtol * np.abs(ref)) and np.all(np.isfinite(val)))
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float((diff / np.maximum(np.abs(ref), 1e-12)).max()) if diff.size else 0.0
        rows.append(Row(key, max_abs, max_rel, ok))
    return rows


def load_fixture(npz_path: str | Path) -> tuple[dict[str, Any], Arrays]:
    """`(meta, arrays)` of `CASE.npz` and the `CASE.json` beside it (clear errors when either is missing)."""
    npz_path = Path(npz_path)
    json_path = npz_path.with_suffix(".json")
    if not npz_path.is_file():
        raise FileNotFoundError(f"fixture not found: {npz_path}")
    if not json_path.is_file():
        raise FileNotFoundError(f"fixture metadata not found: {json_path} (expected beside the .npz)")
    meta = json.loads(json_path.read_text())
    with np.load(npz_path) as data:
        arrays = {k: data[k] for k in data.files}
    return meta, arrays


def run_fixture(npz_path: str | Path) -> list[Row]:
    """Load `npz_path` and its `.json`, recompute every key, and compare."""
    meta, arrays = load_fixture(npz_path)
    config = config_from_dict(meta["config"])
    recompute = RECOMPUTE.get(config.model_type)
    if recompute is None:
        raise ValueError(f"no parity recompute for model_type {config.model_type!r}; known: {sorted(RECOMPUTE)}")
    return compare(arrays, recompute(config, arrays))


def report(fixture: str, rows: list[Row], as_json: bool = False) -> int:
    """Print one row per key (or JSON); returns the exit status: 1 if any key failed."""
    failed = [r for r in rows if not r.ok]
    if as_json:
        print(json.dumps({"fixture": fixture, "passed": not failed, "rows": [r._asdict() for r in rows]}, indent=1))
        return 1 if failed else 0
    width = max((len(r.key) for r in rows), default=3)
    print(f"{'key':<{width}}  {'max_abs':>10}  {'max_rel':>10}  result")
    for r in rows:
        status = "ok" if r.ok else f"FAIL {r.note}".rstrip()
        print(f"{r.key:<{width}}  {r.max_abs:10.3e}  {r.max_rel:10.3e}  {status}")
    print(f"parity {fixture}: {len(rows) - len(failed)} keys within tolerance, {len(failed)} outside")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worldflux_jax.parity", description=__doc__.splitlines()[0])
    parser.add_argument("fixture", help="path to CASE.npz (CASE.json must sit beside it)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    return report(args.fixture, run_fixture(args.fixture), args.json)


if __name__ == "__main__":
    sys.exit(main())
