"""One jitted, donated train step for any world model of this package, data-parallel over devices.

    state, metrics = train_step(state, batch, key)

`state` is a `TrainState` pytree (step, params, optimizer state, model extras such as TD-MPC2's target
Q ensemble); `metrics` is a dict of scalar device arrays (the loss and its components, the gradient
norm) that the caller may fetch whenever it likes: nothing inside the step waits on the host.

With a `jax.sharding.Mesh`, the batch is split over the mesh's data axis and everything else is
replicated; XLA inserts the gradient all-reduce (GSPMD), which is how the step scales to every local
device and, through `jax.distributed`, across hosts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

LossFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
# `post_update(state)`, or `post_update(state, components)` to read the step's loss components (DreamerV3's
# actor-critic stores its return normaliser's statistics this way).
PostUpdate = Callable[..., "TrainState"]

DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    extras: Any = None


def make_optimizer(
    learning_rate: float | optax.Schedule,
    grad_clip: float | None = None,
    *,
    weight_decay: float = 0.0,
    name: str = "adam",
) -> optax.GradientTransformation:
    """`clip_by_global_norm(grad_clip)` (skipped when 0/None) followed by Adam, AdamW or SGD."""
    if name == "adam":
        opt = optax.adam(learning_rate) if weight_decay == 0 else optax.adamw(learning_rate, weight_decay=weight_decay)
    elif name == "adamw":
        opt = optax.adamw(learning_rate, weight_decay=weight_decay)
    elif name == "sgd":
        opt = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum=0.9))
    else:
        raise ValueError(f"optimizer name must be 'adam', 'adamw' or 'sgd', got {name!r}")
    if grad_clip:
        return optax.chain(optax.clip_by_global_norm(grad_clip), opt)
    return opt


def create_train_state(params: Any, optimizer: optax.GradientTransformation, extras: Any = None) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params), extras=extras)


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named `"data"` over `devices` (default: every device JAX sees)."""
    import numpy as np

    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Place a host batch on `mesh`, split along its leading (batch) axis."""
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return jax.device_put(batch, sharding)


def apply_post_update(post_update: PostUpdate, state: TrainState, components: dict[str, jax.Array]) -> TrainState:
    """Call `post_update` with the loss components when it takes a second argument."""
    import inspect

    if len(inspect.signature(post_update).parameters) >= 2:
        return post_update(state, components)
    return post_update(state)


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    post_update: PostUpdate | None = None,
    mesh: Mesh | None = None,
    donate: bool = True,
) -> Callable[[TrainState, Any, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """Build `train_step(state, batch, key) -> (state, metrics)`, compiled once per input shape.

    `loss_fn(params, extras, batch, key) -> (total, components)`. `post_update(state)` runs after the
    optimizer update inside the same compiled step (TD-MPC2's target-network EMA). The input state's
    buffers are donated: do not use a state after passing it in.
    """

    def step(state: TrainState, batch: Any, key: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        def objective(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            return loss_fn(params, state.extras, batch, key)

        (loss, components), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        if post_update is not None:
            new_state = apply_post_update(post_update, new_state, components)
        metrics = {"loss": loss, **components, "grad_norm": optax.tree.norm(grads)}
        return new_state, metrics

    donate_argnums = (0,) if donate else ()
    if mesh is None:
        return jax.jit(step, donate_argnums=donate_argnums)
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return jax.jit(
        step,
        in_shardings=(replicated, split, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=donate_argnums,
    )
