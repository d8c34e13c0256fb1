"""Pure-numpy conversion between Flax parameter trees and the reference torch `state_dict` layout.

Our Flax modules are named like the reference's torch modules (see `worldflux_jax.nn`), so a parameter
at path `("rssm", "prior_net", "0", "kernel")` is the torch tensor `rssm.prior_net.0.weight`. Only the
array layouts differ, and each kind of leaf has one exact, invertible transform:

| leaf | torch | ours |
|---|---|---|
| Linear weight | `[out, in]` | `kernel [in, out]` |
| Conv2d weight | `[out, in, kh, kw]` | `kernel [kh, kw, in, out]` |
| ConvTranspose2d weight | `[in, out, kh, kw]` | `kernel [kh, kw, in, out]`, spatially flipped |
| GRUCell weight_ih / weight_hh | `[3H, in]` (r, z, n) | the same (`weight_ih`, `weight_hh`) |
| LayerNorm over `[C, H, W]` | `weight/bias [C, H, W]` | `scale/bias [H, W, C]` |
| Embedding weight | `[num, dim]` | `embedding [num, dim]` |

Everything else (biases, 1-D LayerNorm parameters) is copied as is. Round trips are exact (pure
transposes and flips, no arithmetic).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

from worldflux_jax.errors import WorldFluxError

_LEAF_NAMES = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "weight_ih": "weight_ih",
    "weight_hh": "weight_hh",
    "bias_ih": "bias_ih",
    "bias_hh": "bias_hh",
    "embedding": "weight",  # nn.Embed's table is torch's nn.Embedding weight, same layout
}
_TORCH_LEAF_NAMES = {"weight", "bias", "weight_ih", "weight_hh", "bias_ih", "bias_hh"}


class StateDictError(WorldFluxError):
    """A state dict does not match the model: missing, unexpected or mis-shaped tensors."""

    error_code = "WF-K002"


def _path_keys(path: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)


def torch_name(keys: tuple[str, ...]) -> str:
    """Torch parameter name of a Flax leaf path."""
    return ".".join((*keys[:-1], _LEAF_NAMES[keys[-1]]))


def _is_deconv(keys: tuple[str, ...]) -> bool:
    return "deconv" in keys[:-1]


def leaf_to_torch(keys: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    """Our layout -> torch layout for the leaf at `keys`."""
    leaf = keys[-1]
    value = np.asarray(value)
    if leaf == "kernel" and value.ndim == 2:
        return np.ascontiguousarray(value.T)
    if leaf == "kernel" and value.ndim == 4:
        if _is_deconv(keys):
            return np.ascontiguousarray(value[::-1, ::-1].transpose(2, 3, 0, 1))
        return np.ascontiguousarray(value.transpose(3, 2, 0, 1))
    if leaf in ("scale", "bias") and value.ndim == 3:
        return np.ascontiguousarray(value.transpose(2, 0, 1))
    return np.array(value, copy=True)


def leaf_from_torch(keys: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    """Torch layout -> our layout for the leaf at `keys` (inverse of `leaf_to_torch`)."""
    leaf = keys[-1]
    value = np.asarray(value)
    if leaf == "kernel" and value.ndim == 2:
        return np.ascontiguousarray(value.T)
    if leaf == "kernel" and value.ndim == 4:
        if _is_deconv(keys):
            return np.ascontiguousarray(value.transpose(2, 3, 0, 1)[::-1, ::-1])
        return np.ascontiguousarray(value.transpose(2, 3, 1, 0))
    if leaf in ("scale", "bias") and value.ndim == 3:
        return np.ascontiguousarray(value.transpose(1, 2, 0))
    return np.array(value, copy=True)


def params_to_torch(params: Any) -> dict[str, np.ndarray]:
    """Flax params -> `{torch_name: array}` in torch layout, in tree order."""
    out: dict[str, np.ndarray] = {}
    for path, value in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = _path_keys(path)
        out[torch_name(keys)] = leaf_to_torch(keys, np.asarray(value))
    return out


def params_from_torch(
    template: Any,
    state_dict: Mapping[str, Any],
    *,
    ignore: Iterable[str] = (),
    dtype: Any = np.float32,
) -> Any:
    """`{torch_name: array}` -> a params tree shaped like `template` (arrays or `ShapeDtypeStruct`s).

    Raises `StateDictError` naming every missing, unexpected (not in `ignore`) or mis-shaped tensor.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [torch_name(_path_keys(path)) for path, _ in leaves]
    missing = [n for n in names if n not in state_dict]
    unexpected = sorted(set(state_dict) - set(names) - set(ignore))
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    converted = []
    for (path, spec), name in zip(leaves, names, strict=True):
        if name not in state_dict:
            continue
        keys = _path_keys(path)
        value = leaf_from_torch(keys, _to_numpy(state_dict[name]))
        if tuple(value.shape) != tuple(spec.shape):
            expected = leaf_to_torch(keys, np.zeros(spec.shape, np.float32)).shape
            problems.append(f"{name}: expected shape {tuple(expected)}, got {tuple(_to_numpy(state_dict[name]).shape)}")
        converted.append(value.astype(dtype))
    if problems:
        raise StateDictError("State dict does not match the model: " + "; ".join(problems))
    return jax.tree_util.tree_unflatten(treedef, converted)


def _to_numpy(value: Any) -> np.ndarray:
    """Array-likes (numpy, JAX, or anything with `.numpy()` such as a CPU torch tensor) -> numpy."""
    if hasattr(value, "detach"):
        value = value.detach()
    if hasattr(value, "cpu") and not isinstance(value, np.ndarray):
        value = value.cpu()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return np.asarray(value.numpy())
    return np.asarray(value)
