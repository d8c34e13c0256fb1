"""Mixed-precision policy: casts at the call boundary, never mutating a module.

`with_precision(loss_fn, "bf16")` returns a loss whose networks compute in bfloat16:

- the parameters (and float32 extras such as TD-MPC2's target network) are cast to bfloat16 once, at the
  loss's boundary (the cast is differentiable, so the gradients reaching the float32 master parameters,
  the optimizer state and the update stay float32);
- every Flax module call inside the loss gets its floating float32 arguments cast to bfloat16 and its
  bfloat16 outputs cast back to float32 (`flax.linen.intercept_methods`; the interceptor only wraps the
  call, the bound module is untouched). A module whose `dtype` is None computes in the dtype of its inputs
  and parameters, both bfloat16 now, so matmuls and convolutions run in bfloat16;
- code between module calls (latent sampling, KL, two-hot and TD losses) sees float32 and reduces in
  float32; the returned loss and components are float32.

bfloat16 has float32's exponent range, so no loss scaling is needed (`"fp16"` requests are computed in
bfloat16 too). Code written against the parameters directly (DreamerV3's filtering loop in
`worldflux_jax.rssm`) multiplies float32 activations by bfloat16-rounded weights, which promotes to float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from worldflux_jax.errors import ConfigurationError

PRECISIONS = {
    "f32": None,
    "float32": None,
    "bf16": jnp.bfloat16,
    "bfloat16": jnp.bfloat16,
    "fp16": jnp.bfloat16,
    "float16": jnp.bfloat16,
}

LossFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def compute_dtype(precision: str | None) -> Any:
    """The compute dtype of a precision name (None for float32)."""
    if precision is None:
        return None
    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def with_precision(loss_fn: LossFn, precision: str | None) -> LossFn:
    """`loss_fn(params, extras, batch, key)` computed under `precision` (identity for float32)."""
    dtype = compute_dtype(precision)
    if dtype is None:
        return loss_fn
    import flax.linen as flax_nn

    def cast(x: Any, src: Any, dst: Any) -> Any:
        return x.astype(dst) if isinstance(x, jax.Array) and x.dtype == src else x

    def interceptor(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        del context
        args = jax.tree.map(lambda x: cast(x, jnp.float32, dtype), args)
        kwargs = jax.tree.map(lambda x: cast(x, jnp.float32, dtype), kwargs)
        return jax.tree.map(lambda x: cast(x, dtype, jnp.float32), next_fun(*args, **kwargs))

    def wrapped(params: Any, extras: Any, batch: Any, key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        low, low_extras = jax.tree.map(lambda x: cast(x, jnp.float32, dtype), (params, extras))
        with flax_nn.intercept_methods(interceptor):
            total, components = loss_fn(low, low_extras, batch, key)
        return total.astype(jnp.float32), {k: v.astype(jnp.float32) for k, v in components.items()}

    return wrapped
