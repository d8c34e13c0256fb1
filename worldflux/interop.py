"""Array interop between torch, numpy and JAX, without copies where DLPack allows.

The world models compute with JAX; their public methods accept torch tensors, numpy arrays or JAX arrays
and answer in the *array kind* they were given (``"torch"`` by default):

* :func:`to_jax` — torch -> JAX through DLPack. A contiguous CPU tensor of a dtype JAX supports
  (float32, bfloat16, float16, int32, uint8, int8, bool, ...) is **shared, not copied**: the JAX array
  reads the tensor's memory. A copy is made (silently) when the tensor is non-contiguous (made contiguous
  first), needs a dtype conversion (``dtype=`` differs, or float64/int64 while JAX runs without x64, which
  JAX canonicalizes to 32 bits), lives on a device JAX does not see (copied to the host), or its storage
  offset is not aligned the way XLA requires. Tensors that require grad are detached first. numpy ->
  ``jnp.asarray`` (JAX decides whether to copy); JAX arrays pass through.
* :func:`to_torch` — JAX -> torch without a copy: a CPU array through its host view (``np.asarray``, then
  ``torch.from_numpy``; half the cost of a DLPack import), other devices through ``torch.from_dlpack``; the
  tensor shares the JAX buffer. JAX arrays are immutable, so treat these tensors as **read-only views**:
  writing into them in place also changes the JAX array. When torch cannot import the buffer (e.g. a GPU
  array with a CPU-only torch build, or an array sharded over several devices) the data is copied through
  host memory.
* :func:`to_numpy` — JAX -> ``np.asarray`` (a read-only view on CPU); torch -> ``tensor.numpy()``.

A tensor produced by :func:`to_torch` remembers the JAX array it views, so feeding it back into a model
(for example a ``State`` returned by ``encode`` passed to ``transition``) skips any conversion, as long as the
tensor still has the buffer, shape, strides and dtype it was made with (an in-place ``t_()`` or ``resize_()``
makes it an ordinary tensor again).
"""

from __future__ import annotations

import functools
import warnings
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import torch

__all__ = [
    "ARRAY_KINDS",
    "ArrayKind",
    "array_kind",
    "cpu_to_torch",
    "infer_kind",
    "is_array",
    "jax_origin",
    "to_jax",
    "to_jit_input",
    "to_kind",
    "to_numpy",
    "to_torch",
    "torch_dtype",
    "torch_meta_like",
    "tree_to_kind",
]

ArrayKind = Literal["torch", "numpy", "jax"]
ARRAY_KINDS: tuple[str, ...] = ("torch", "numpy", "jax")


class _Origin:
    """A tensor made by `to_torch` and the JAX array whose buffer it views, with the tensor's layout at that
    moment (a tensor whose layout has changed in place no longer views the whole array as made)."""

    __slots__ = ("array", "data_ptr", "device", "dtype", "ref", "shape", "stride")

    def __init__(self, ref: weakref.ref[torch.Tensor], tensor: torch.Tensor, array: jax.Array) -> None:
        self.ref = ref
        self.array = array
        self.data_ptr = tensor.data_ptr()
        self.shape = tensor.shape
        self.stride = tensor.stride()
        self.dtype = tensor.dtype
        self.device: jax.Device | None = None  # the array's device, looked up on first use

    def placement(self) -> jax.Device | None:
        if self.device is None:
            self.device = _device_of(self.array)
        return self.device


# Tensors made by `to_torch` -> their `_Origin`: id(tensor) -> entry. Kept outside the tensor (an attribute
# would be pickled by `torch.save`); entries leave with their tensor.
_ORIGINS: dict[int, _Origin] = {}


def _remember_origin(tensor: torch.Tensor, array: jax.Array) -> None:
    key = id(tensor)

    def forget(ref: weakref.ref[torch.Tensor], key: int = key) -> None:
        entry = _ORIGINS.get(key)
        if entry is not None and entry.ref is ref:
            del _ORIGINS[key]

    _ORIGINS[key] = _Origin(weakref.ref(tensor, forget), tensor, array)


def _origin_entry(tensor: torch.Tensor) -> _Origin | None:
    entry = _ORIGINS.get(id(tensor))
    if entry is None or entry.ref() is not tensor:
        return None
    return entry


def jax_origin(tensor: torch.Tensor) -> jax.Array | None:
    """The JAX array a tensor made by :func:`to_torch` views (None for any other tensor)."""
    entry = _origin_entry(tensor)
    return None if entry is None else entry.array


_BFLOAT16 = np.dtype(jnp.bfloat16)
_TORCH_DTYPES: dict[Any, torch.dtype] = {
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float64): torch.float64,
    np.dtype(np.float16): torch.float16,
    np.dtype(np.int32): torch.int32,
    np.dtype(np.int64): torch.int64,
    np.dtype(np.int16): torch.int16,
    np.dtype(np.int8): torch.int8,
    np.dtype(np.uint8): torch.uint8,
    np.dtype(np.bool_): torch.bool,
    _BFLOAT16: torch.bfloat16,
}


def array_kind(x: Any) -> ArrayKind | None:
    """``"torch"``, ``"numpy"`` or ``"jax"`` for an array of that library, else None."""
    if isinstance(x, torch.Tensor):
        return "torch"
    if isinstance(x, jax.Array):
        return "jax"
    if isinstance(x, np.ndarray | np.generic):
        return "numpy"
    return None


def is_array(x: Any) -> bool:
    """True for a torch tensor, numpy array/scalar or JAX array."""
    return array_kind(x) is not None


def _iter_leaves(value: Any, depth: int = 0) -> Iterable[Any]:
    """Arrays inside `value`, looking through mappings, sequences and objects with ``tensors``/``tensor``."""
    if depth > 4 or value is None:
        return
    if array_kind(value) is not None:
        yield value
        return
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _iter_leaves(item, depth + 1)
        return
    if isinstance(value, list | tuple):
        for item in value:
            yield from _iter_leaves(item, depth + 1)
        return
    for attr in ("tensors", "tensor", "observations", "obs", "payloads"):
        inner = getattr(value, attr, None)
        if inner is not None:
            yield from _iter_leaves(inner, depth + 1)


def infer_kind(*values: Any, default: ArrayKind = "torch") -> ArrayKind:
    """The kind of the first array found in `values` (States, dicts, payloads and lists are searched),
    else `default`."""
    for value in values:
        for leaf in _iter_leaves(value):
            kind = array_kind(leaf)
            if kind is not None:
                return kind
    return default


@functools.lru_cache(maxsize=1)
def _jax_platforms() -> frozenset[str]:
    """Platforms JAX runs on, in torch's device-type names (JAX's "gpu" is torch's "cuda")."""
    names = set()
    for backend in ("cpu", "gpu"):
        try:
            if jax.devices(backend):
                names.add("cuda" if backend == "gpu" else backend)
        except RuntimeError:
            continue
    return frozenset(names)


def _jax_dtype(dtype: Any) -> Any:
    if dtype is None:
        return None
    try:
        return _resolved_dtype(dtype)  # the models pass the same few dtypes on every call
    except TypeError:  # an unhashable dtype-like
        return _resolved_dtype.__wrapped__(dtype)


@functools.lru_cache(maxsize=64)
def _resolved_dtype(dtype: Any) -> np.dtype:
    return jnp.dtype(str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else dtype)


def to_jax(x: Any, dtype: Any = None, device: jax.Device | None = None) -> jax.Array:
    """Convert `x` (torch tensor, numpy array, JAX array, Python scalar or nested list) to a JAX array.

    Args:
        x: the array. A contiguous CPU torch tensor is imported through DLPack and shares its memory.
        dtype: optional target dtype (numpy/JAX dtype, name such as ``"float32"``, or a torch dtype); a
            differing dtype costs one conversion copy.
        device: optional JAX device to place the result on (a copy if it lives elsewhere).

    Returns:
        A ``jax.Array`` with the same shape as `x`.
    """
    target = _jax_dtype(dtype)
    if isinstance(x, jax.Array):
        out = x
    elif isinstance(x, torch.Tensor):
        out = _torch_to_jax(x, target)
    else:
        out = jnp.asarray(x)
    if target is not None and out.dtype != target:
        out = out.astype(target)
    if device is not None and _device_of(out) != device:
        out = jax.device_put(out, device)
    return out


def to_jit_input(x: Any, dtype: Any = None, device: jax.Device | None = None) -> jax.Array | np.ndarray:
    """`x` as an argument for a jitted function, by the cheapest path that does not copy.

    A tensor made by :func:`to_torch` gives back its JAX array; any other CPU torch tensor becomes a numpy
    view of its memory (``tensor.numpy()``, ~1 µs instead of ~40 µs for a DLPack import: XLA:CPU reads
    aligned host buffers passed to a jitted function in place); numpy arrays pass through; everything else
    goes through :func:`to_jax`. `dtype` casts (one copy when it differs); `device` forces placement (non-CPU
    devices always get a JAX array on that device).
    """
    target = _jax_dtype(dtype)
    on_cpu = device is None or device.platform == "cpu"
    if isinstance(x, torch.Tensor):
        entry = _origin_entry(x)
        if entry is not None:
            matching = _matching_origin(x, entry)
            if (
                matching is not None
                and (target is None or matching.dtype == target)
                and (device is None or entry.placement() == device)
            ):
                return matching  # a model's own output handed back (a State from encode, say): no conversion
        elif on_cpu and x.is_cpu:
            t = x.detach() if x.requires_grad else x
            torch_target = None if target is None else _TORCH_DTYPES.get(target)
            if torch_target is not None and t.dtype != torch_target:
                t = t.to(torch_target)
            if t.dtype is not torch.bfloat16 and not t.is_conj() and not t.is_neg():
                return t.contiguous().numpy()
    elif on_cpu and isinstance(x, np.ndarray) and x.dtype != _BFLOAT16:
        return x if target is None or x.dtype == target else x.astype(target)
    return to_jax(x, dtype=dtype, device=device)


def _device_of(x: jax.Array) -> jax.Device | None:
    devices = x.devices()
    return next(iter(devices)) if len(devices) == 1 else None


def _matching_origin(tensor: torch.Tensor, entry: _Origin | None = None) -> jax.Array | None:
    """The JAX array `tensor` was made from (`entry`: its origin record, if already looked up), while the
    tensor still views all of it as made: same buffer, shape, strides and dtype, and the array not deleted
    (None otherwise)."""
    if entry is None:
        entry = _origin_entry(tensor)
    if (
        entry is not None
        and tensor.data_ptr() == entry.data_ptr
        and tensor.shape == entry.shape
        and tensor.stride() == entry.stride
        and tensor.dtype == entry.dtype
        and not entry.array.is_deleted()
    ):
        return entry.array
    return None


def _torch_to_jax(tensor: torch.Tensor, target: Any) -> jax.Array:
    origin = _matching_origin(tensor)
    if origin is not None:
        return origin
    t = tensor.detach()
    if target is not None:
        torch_target = _TORCH_DTYPES.get(np.dtype(target))
        if torch_target is not None and t.dtype != torch_target:
            t = t.to(torch_target)
    elif t.dtype == torch.float64 and not jax.config.jax_enable_x64:
        t = t.to(torch.float32)  # what JAX would canonicalize to anyway; avoids a second copy
    if t.device.type != "cpu" and t.device.type not in _jax_platforms():
        t = t.cpu()  # a device JAX cannot import from: go through host memory
    t = t.contiguous()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    return jax.dlpack.from_dlpack(t)


def to_torch(x: Any, *, track_origin: bool = True) -> torch.Tensor:
    """Convert `x` to a torch tensor. JAX arrays become zero-copy views (read-only by contract): CPU arrays
    through their numpy host view, others through DLPack;
    numpy arrays share memory through ``torch.from_numpy``; torch tensors pass through.

    With `track_origin` (the default), the tensor made from a JAX array remembers it, so that handing the
    tensor back (:func:`to_jax`, :func:`to_jit_input`) returns that array without any conversion. Callers
    that only hand out views of the tensor (which never match their origin) skip that bookkeeping.
    """
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, jax.Array):
        device = _device_of(x)
        if device is not None and device.platform == "cpu" and x.dtype in _FROM_NUMPY_DTYPES:
            return cpu_to_torch(x, track_origin=track_origin)
        try:
            out = torch.from_dlpack(x)
        except Exception:  # noqa: BLE001 - e.g. CPU-only torch and a GPU array: copy through the host
            return torch.from_numpy(np.array(jax.device_get(x)))
        if track_origin:
            _remember_origin(out, x)
        return out
    arr = np.asarray(x)
    if arr.dtype == _BFLOAT16:
        return torch.from_dlpack(jnp.asarray(arr))
    return _from_readonly_numpy(np.ascontiguousarray(arr))  # read-only views: shared, documented read-only


def cpu_to_torch(x: jax.Array, *, track_origin: bool = True) -> torch.Tensor:
    """:func:`to_torch` of an array the caller knows lives on one CPU device (a model's output on its CPU
    device), without looking its placement up: the tensor views the array's host buffer. The host view shares
    its memory, as DLPack does, at about half the cost of a DLPack import (0.1 against 0.2 ms per array when
    the step's XLA code has just run). bfloat16 (which numpy lacks) and anything that is not a JAX array go
    through :func:`to_torch`."""
    if not isinstance(x, jax.Array) or x.dtype not in _FROM_NUMPY_DTYPES:
        return to_torch(x, track_origin=track_origin)
    out = _from_readonly_numpy(np.asarray(x))
    if track_origin:
        _remember_origin(out, x)
    return out


# dtypes that `torch.from_numpy` takes (bfloat16 goes through DLPack).
_FROM_NUMPY_DTYPES = frozenset(d for d in _TORCH_DTYPES if d != np.dtype(jnp.bfloat16))
_readonly_warning_consumed = False


def _from_readonly_numpy(arr: np.ndarray) -> torch.Tensor:
    """`torch.from_numpy` of a read-only host view, which shares its memory (read-only by contract, as a
    DLPack view). Torch warns about such arrays once per process ("suppressed for the rest of this
    program"); the first call consumes that warning, later calls skip the costlier `catch_warnings`."""
    global _readonly_warning_consumed
    if _readonly_warning_consumed or arr.flags.writeable:
        return torch.from_numpy(arr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = torch.from_numpy(arr)
    _readonly_warning_consumed = True
    return out


def to_numpy(x: Any) -> np.ndarray:
    """Convert `x` to numpy: JAX arrays as read-only host views (a copy for device memory), torch tensors
    through ``.detach().cpu().numpy()`` (shared on CPU)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.dtype == torch.bfloat16:
            return np.asarray(_torch_to_jax(t, None))
        return t.numpy()
    return np.asarray(x)


def torch_dtype(dtype: Any) -> torch.dtype:
    """The torch dtype of a numpy/JAX dtype (float32 for dtypes torch lacks)."""
    return _TORCH_DTYPES.get(np.dtype(dtype), torch.float32)


def torch_meta_like(x: Any) -> torch.Tensor:
    """A data-less torch tensor (``device="meta"``) with the shape and dtype of `x`; torch tensors pass
    through. Lets validators written against torch (``.dim()``, ``.shape``, ``.dtype``) check numpy or JAX
    arrays without converting them."""
    if isinstance(x, torch.Tensor):
        return x
    return torch.empty(tuple(int(d) for d in np.shape(x)), dtype=torch_dtype(x.dtype), device="meta")


def to_kind(x: Any, kind: str, *, track_origin: bool = True) -> Any:
    """Convert one array to `kind` (``"torch"``, ``"numpy"`` or ``"jax"``); None passes through.
    `track_origin` is :func:`to_torch`'s."""
    if x is None:
        return None
    if kind == "torch":
        return to_torch(x, track_origin=track_origin)
    if kind == "numpy":
        return to_numpy(x)
    if kind == "jax":
        return to_jax(x)
    raise ValueError(f"array kind must be one of {list(ARRAY_KINDS)}, got {kind!r}")


def tree_to_kind(tree: Any, kind: str) -> Any:
    """Convert every array leaf of a dict/list/tuple tree to `kind` (structure preserved)."""
    if isinstance(tree, Mapping):
        return {k: tree_to_kind(v, kind) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(tree_to_kind(v, kind) for v in tree)
    if tree is None:
        return None
    return to_kind(tree, kind)
