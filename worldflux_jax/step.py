"""The one train step of the package (and its eval step), data-parallel over a device mesh.

    step = make_train_step(family, optimizer, mesh=mesh, precision="bf16")
    state, metrics = step(state, raw_batch, key)

`family` implements `worldflux_jax.family.ModelFamily`; `raw_batch` is a mapping of raw arrays
(`obs [B, T, *obs_shape]`, `actions [B, T, A]` or `[B, T]` class indices, `rewards [B, T]`,
`terminations [B, T]` or None) that the family turns into its batch on the device, or the family's batch
itself; `key` is the run's base PRNG key (typed or raw key data): the step folds `state.step` into it, so
the same key is passed every step. `metrics` are scalar device arrays (the loss, its components,
`grad_norm` and, with the monitor, `skipped_steps` and `_halted_at`, the guard's `halted_at`);
nothing in the step waits on the host.

Inside the one compiled program: the loss under the precision policy (`worldflux_jax.precision`), the
gradients, the optimizer update (clipping, schedule and accumulation live in the optimizer, see
`worldflux_jax.optim`), the family's `post_update` (TD-MPC2's target EMA) gated on steps that applied an
update under gradient accumulation, and the non-finite guard:

- a step whose loss, any loss component or the gradient is NaN/Inf keeps the old parameters, optimizer
  state and extras (the new ones are discarded by a select, no host sync); `skipped_steps` counts them;
- `Guard.limit` consecutive non-finite steps halt the run: that step and every later one leave the whole
  state (step counter included) untouched, and `Guard.halted_at` holds the halting step's number, so the
  host finds the state at the last finite step whenever it next looks.

With a `jax.sharding.Mesh`, the batch is split over its `"data"` axis and the state is replicated; XLA
inserts the gradient all-reduce (GSPMD), across processes too under `jax.distributed`. The state is
donated. Compiled once per (shapes, shardings); `trace_count` counts traces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from worldflux_jax.optim import Optimizer
from worldflux_jax.precision import with_precision

LossFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
PostUpdate = Callable[..., "TrainState"]  # family: (state, components); low-level form: (state)

DATA_AXIS = "data"
HALT_KEY = "_halted_at"


@flax.struct.dataclass
class Guard:
    """On-device bookkeeping of the non-finite guard (int32/uint32/float32 scalars).

    `limit`: consecutive non-finite steps that halt; `consecutive`: the current run of them; `halted_at`:
    1-based number of the halting step (0 while running); `skipped`: non-finite steps skipped without
    halting (cumulative); `last_bad`: number of the latest non-finite step (0: none); `nan_bits` /
    `inf_bits`: which metrics (bit i = `metric_keys[i]`) were NaN / Inf at that step; `loss_sum` /
    `applied`: sum of the losses of, and count of, applied steps.
    """

    limit: jax.Array
    consecutive: jax.Array
    halted_at: jax.Array
    skipped: jax.Array
    last_bad: jax.Array
    nan_bits: jax.Array
    inf_bits: jax.Array
    loss_sum: jax.Array
    applied: jax.Array


def init_guard(limit: int = 1) -> Guard:
    """A fresh guard (host numpy scalars; place it with the state). `limit >= 1`."""
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1:
        raise ValueError(f"the non-finite step limit must be an integer >= 1, got {limit!r}")
    i32 = np.int32
    return Guard(
        limit=i32(limit),
        consecutive=i32(0),
        halted_at=i32(0),
        skipped=i32(0),
        last_bad=i32(0),
        nan_bits=np.uint32(0),
        inf_bits=np.uint32(0),
        loss_sum=np.float32(0.0),
        applied=i32(0),
    )


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    extras: Any = None
    guard: Guard | None = None


def create_train_state(params: Any, optimizer: Any, extras: Any = None, guard: Guard | None = None) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params), extras=extras, guard=guard
    )


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named `"data"` over `devices` (default: every device of every process)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Place a host batch (this process's rows) on `mesh`, split along the leading (batch) axis; each
    process's rows go straight to its own devices (`jax.make_array_from_process_local_data`)."""
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf replicated over `mesh` (same host value on every process), as fresh buffers."""
    sharding = NamedSharding(mesh, PartitionSpec())

    def put(x: Any) -> jax.Array:
        if isinstance(x, jax.Array) and x.is_fully_addressable and sharding.is_fully_addressable:
            return jax.device_put(x, sharding, may_alias=False)
        value = np.asarray(jax.device_get(x)) if isinstance(x, jax.Array) else np.asarray(x)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, tree)


def _is_family(obj: Any) -> bool:
    return callable(getattr(obj, "make_batch", None)) and callable(getattr(obj, "train_loss", None))


def _as_key(key: jax.Array) -> jax.Array:
    return key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)


class CompiledStep:
    """A jitted step with its trace counter (`trace_count` grows by one per compilation) and the loss it
    differentiates (`loss_fn(params, extras, batch, key)`, precision applied, raw batches accepted)."""

    def __init__(self, fn: Callable[..., Any], loss_fn: LossFn, metric_keys: list[str], **jit_kwargs: Any) -> None:
        self.trace_count = 0
        self.loss_fn = loss_fn
        self.metric_keys = metric_keys

        def counted(*args: Any) -> Any:
            self.trace_count += 1  # a Python side effect: runs once per trace
            return fn(*args)

        self.jitted = jax.jit(counted, **jit_kwargs)

    def __call__(self, *args: Any) -> Any:
        return self.jitted(*args)

    def lower(self, *args: Any) -> Any:
        return self.jitted.lower(*args)


def _shardings(mesh: Mesh | None, n_args: int, batch_arg: int) -> dict[str, Any]:
    if mesh is None:
        return {}
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    ins = tuple(split if i == batch_arg else replicated for i in range(n_args))
    return {"in_shardings": ins, "out_shardings": replicated}


def _family_loss(family: Any, precision: str | None) -> LossFn:
    loss = with_precision(family.train_loss, precision)

    def raw_loss(params: Any, extras: Any, batch: Any, key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        if isinstance(batch, Mapping):
            batch = family.make_batch(**batch)
        return loss(params, extras, batch, key)

    return raw_loss


def make_train_step(
    family: Any,
    optimizer: Optimizer | optax.GradientTransformation,
    *,
    post_update: PostUpdate | None = None,
    mesh: Mesh | None = None,
    precision: str | None = None,
    monitor: bool | None = None,
    donate: bool = True,
) -> CompiledStep:
    """Build `step(state, batch, key) -> (state, metrics)` (see the module docstring).

    `family` is a model family, or (the core's low-level form) a plain `loss_fn(params, extras, batch, key)`
    with `post_update` given separately; a loss function gets the batch and key exactly as passed (no
    conversion, no step folding) and no monitor unless `monitor=True`. With the monitor, `state.guard` must
    be a `Guard` (`init_guard`). The input state's buffers are donated: do not reuse a state passed in.
    """
    is_family = _is_family(family)
    if is_family:
        loss_fn = _family_loss(family, precision)
        post_update = family.post_update
    else:
        loss_fn = with_precision(family, precision)
        if post_update is not None:
            low_level_post = post_update  # the low-level form's `post_update(state)` reads no loss components
            post_update = lambda state, components: low_level_post(state)  # noqa: E731
    monitor = is_family if monitor is None else bool(monitor)
    opt = optimizer if isinstance(optimizer, Optimizer) else Optimizer(optimizer, None)
    metric_keys: list[str] = []

    def step(state: TrainState, batch: Any, key: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        if is_family:
            key = jax.random.fold_in(_as_key(key), state.step)

        def objective(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            return loss_fn(params, state.extras, batch, key)

        (loss, components), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = opt.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        if post_update is not None:
            new = jax.lax.cond(opt.has_updated(opt_state), lambda s: post_update(s, components), lambda s: s, new)
        metrics = {"loss": loss, **components, "grad_norm": optax.tree.norm(grads)}
        metric_keys[:] = sorted(metrics)[:32]
        if not monitor:
            return new, metrics
        if state.guard is None:
            raise ValueError("make_train_step(monitor=True) needs state.guard = init_guard(limit)")
        new, guard = _guarded(state, new, metrics, metric_keys)
        metrics["skipped_steps"] = guard.skipped.astype(jnp.float32)
        metrics[HALT_KEY] = guard.halted_at  # the guard itself is donated with the state; hosts read this copy
        return new.replace(guard=guard), metrics

    kwargs = _shardings(mesh, 3, 1)
    return CompiledStep(step, loss_fn, metric_keys, donate_argnums=(0,) if donate else (), **kwargs)


def _guarded(
    old: TrainState, new: TrainState, metrics: dict[str, jax.Array], keys: list[str]
) -> tuple[TrainState, Guard]:
    """Select the old state for a non-finite step; update the guard."""
    g = old.guard
    nan_bits = jnp.uint32(0)
    inf_bits = jnp.uint32(0)
    for i, name in enumerate(keys):
        value = metrics[name]
        nan_bits = nan_bits | jnp.where(jnp.any(jnp.isnan(value)), jnp.uint32(1 << i), jnp.uint32(0))
        inf_bits = inf_bits | jnp.where(jnp.any(jnp.isinf(value)), jnp.uint32(1 << i), jnp.uint32(0))
    bad = (nan_bits | inf_bits) != 0
    running = g.halted_at == 0
    consecutive = jnp.where(running, jnp.where(bad, g.consecutive + 1, 0), g.consecutive)
    halt = running & bad & (consecutive >= g.limit)
    apply = running & ~bad
    advance = running & ~halt
    number = old.step + 1
    select = lambda keep_new: lambda n, o: jnp.where(keep_new, n, o)  # noqa: E731
    state = old.replace(
        step=jnp.where(advance, new.step, old.step),
        params=jax.tree.map(select(apply), new.params, old.params),
        opt_state=jax.tree.map(select(apply), new.opt_state, old.opt_state),
        extras=jax.tree.map(select(apply), new.extras, old.extras),
    )
    flagged = running & bad
    guard = g.replace(
        consecutive=consecutive.astype(jnp.int32),
        halted_at=jnp.where(halt, number, g.halted_at).astype(jnp.int32),
        skipped=g.skipped + (flagged & ~halt).astype(jnp.int32),
        last_bad=jnp.where(flagged, number, g.last_bad).astype(jnp.int32),
        nan_bits=jnp.where(flagged, nan_bits, g.nan_bits),
        inf_bits=jnp.where(flagged, inf_bits, g.inf_bits),
        loss_sum=g.loss_sum + jnp.where(apply, metrics["loss"].astype(jnp.float32), 0.0),
        applied=g.applied + apply.astype(jnp.int32),
    )
    return state, guard


def make_eval_step(family: Any, *, mesh: Mesh | None = None, precision: str | None = None) -> CompiledStep:
    """`evaluate(params, extras, batch, key, index) -> {"loss", **components}` with the train step's loss
    (same batch conversion and precision), no gradients; the key is `fold_in(fold_in(key, 2**31 - 1), index)`
    so evaluation never reuses a training key."""
    loss_fn = _family_loss(family, precision) if _is_family(family) else with_precision(family, precision)

    def evaluate(params: Any, extras: Any, batch: Any, key: jax.Array, index: jax.Array) -> dict[str, jax.Array]:
        key = jax.random.fold_in(jax.random.fold_in(_as_key(key), 2**31 - 1), index)
        total, components = loss_fn(params, extras, batch, key)
        return {"loss": total, **components}

    return CompiledStep(evaluate, loss_fn, [], **_shardings(mesh, 5, 2))
