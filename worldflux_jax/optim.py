"""The one optimizer/schedule factory of the package, built from optax primitives.

    optimizer = build_optimizer(OptimizerSpec(name="adamw", learning_rate=3e-4, grad_clip=100.0))
    optimizer.tx        # the optax GradientTransformation the train step applies
    optimizer.multi     # the optax.MultiSteps wrapper when accumulating gradients, else None

Chain, in order: `clip_by_global_norm(grad_clip)` (skipped when 0/None) -> the optimizer -> (custom optimizer
only) schedule scaling, wrapped in `optax.MultiSteps(every_k_schedule=accumulation_steps)` when
`accumulation_steps > 1` (N micro-batch gradients are averaged, clipped and applied once).

Weight decay has ONE meaning, torch's (the reference trains with `torch.optim`):
- `adamw`: decoupled decay, `p -= lr * wd * p` next to the Adam update (`torch.optim.AdamW`, `optax.adamw`);
- `adam`: L2 regularisation, `wd * p` added to the gradient before Adam (`torch.optim.Adam(weight_decay=)`);
- `sgd`: the same L2 term before SGD with momentum 0.9 (`torch.optim.SGD(momentum=0.9, weight_decay=)`).

Schedules are the reference's LambdaLR factors of the optimizer step (see `schedule_factor`). A user's optax
`GradientTransformation` replaces the built-in optimizer (clipping still comes first; the configured schedule
then scales its updates by `factor(step)`); a user's optax schedule (`step -> learning rate`) replaces the
learning rate of a built-in optimizer, or scales a custom optimizer's updates by `schedule(step) / lr`.

Parameter groups: `groups=(labels, rates)` (a family's `optimizer_groups(config, params)`) gives each label
its own learning rate (None = the spec's) through `optax.multi_transform`; clipping stays global.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax.numpy as jnp
import optax

from worldflux_jax.errors import ConfigurationError

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("none", "constant", "linear", "cosine")
SGD_MOMENTUM = 0.9

Schedule = Callable[[Any], Any]


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything the built-in optimizer depends on (hashable: it keys compiled-step caches).

    `total_steps` and `warmup_steps` count optimizer updates; they matter only when `scheduler != "none"`.
    """

    name: str = "adamw"
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float | None = None
    scheduler: str = "none"
    warmup_steps: int = 0
    total_steps: int = 1
    accumulation_steps: int = 1

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigurationError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.name!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigurationError(f"scheduler must be one of {list(SCHEDULERS)}, got {self.scheduler!r}")
        if int(self.accumulation_steps) < 1:
            raise ConfigurationError(f"accumulation_steps must be >= 1, got {self.accumulation_steps}")


class Optimizer(NamedTuple):
    """What `build_optimizer` returns: the transformation and, when accumulating, its `MultiSteps`."""

    tx: optax.GradientTransformation
    multi: optax.MultiSteps | None = None

    def init(self, params: Any) -> Any:
        return self.tx.init(params)

    def has_updated(self, opt_state: Any) -> Any:
        """Whether the step that produced `opt_state` applied an update (always True without accumulation)."""
        if self.multi is None:
            return jnp.asarray(True)
        return self.multi.has_updated(opt_state)


def schedule_factor(kind: str, warmup_steps: int, total_steps: int) -> Schedule | None:
    """The learning-rate factor of `kind` as a function of the optimizer step, or None for `"none"`.

    The reference's LambdaLR: linear warmup `(step + 1) / warmup` while `step < warmup` (warmup clipped to
    `total_steps - 1`), then `constant` -> 1, `linear` -> `max(0, 1 - progress)`, `cosine` ->
    `0.5 * (1 + cos(pi * progress))`, `progress = clip((step - warmup) / (total_steps - warmup), 0, 1)`.
    """
    if kind not in SCHEDULERS:
        raise ConfigurationError(f"scheduler must be one of {list(SCHEDULERS)}, got {kind!r}")
    if kind == "none":
        return None
    total = int(total_steps)
    warmup = max(0, min(int(warmup_steps), total - 1))
    span = max(1, total - warmup)

    def factor(count: Any) -> Any:
        step = jnp.asarray(count, jnp.float32)
        progress = jnp.clip((step - warmup) / span, 0.0, 1.0)
        if kind == "constant":
            after = jnp.ones_like(step)
        elif kind == "linear":
            after = jnp.maximum(0.0, 1.0 - progress)
        else:
            after = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        if warmup > 0:
            return jnp.where(step < warmup, (step + 1.0) / warmup, after)
        return after

    return factor


def is_transformation(value: Any) -> bool:
    return callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))


def builtin_optimizer(name: str, learning_rate: float | Schedule, weight_decay: float) -> optax.GradientTransformation:
    """`adamw` / `adam` / `sgd` with the module's one meaning of weight decay (torch's)."""
    if name == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    if name == "adam":
        adam = optax.adam(learning_rate)
        return optax.chain(optax.add_decayed_weights(weight_decay), adam) if weight_decay else adam
    if name == "sgd":
        sgd = optax.sgd(learning_rate, momentum=SGD_MOMENTUM)
        return optax.chain(optax.add_decayed_weights(weight_decay), sgd) if weight_decay else sgd
    raise ConfigurationError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")


def build_optimizer(
    spec: OptimizerSpec,
    *,
    optimizer: optax.GradientTransformation | None = None,
    schedule: Schedule | None = None,
    groups: tuple[Any, Mapping[str, float | None]] | None = None,
) -> Optimizer:
    """The transformation for `spec` (see the module docstring for the order and the plug-in semantics).

    Raises:
        TypeError: `optimizer` is not an optax transformation or `schedule` is not callable.
        ConfigurationError: a group's rate is not a positive number.
    """
    if optimizer is not None and not is_transformation(optimizer):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation (this trainer updates JAX parameters), got "
            f"{type(optimizer).__name__}; or pass None and configure the built-in optimizer"
        )
    if schedule is not None and not callable(schedule):
        raise TypeError(
            f"scheduler must be an optax schedule (a callable step -> learning rate), got {type(schedule).__name__}"
        )
    lr = float(spec.learning_rate)
    factor = schedule_factor(spec.scheduler, spec.warmup_steps, spec.total_steps)

    def rate(base: float) -> float | Schedule:
        if schedule is not None:
            return schedule if base == lr else (lambda count: schedule(count) * (base / lr))
        if factor is not None:
            return lambda count: base * factor(count)
        return base

    if optimizer is not None:
        core = optimizer
        if schedule is not None:
            core = optax.chain(core, optax.scale_by_schedule(lambda count: schedule(count) / lr))
        elif factor is not None:
            core = optax.chain(core, optax.scale_by_schedule(factor))
    elif groups is not None:
        labels, rates = groups
        transforms = {}
        for label, value in rates.items():
            if value is not None and (isinstance(value, bool) or not float(value) > 0):
                raise ConfigurationError(f"optimizer group {label!r} learning rate must be positive, got {value!r}")
            transforms[label] = builtin_optimizer(
                spec.name, rate(lr if value is None else float(value)), float(spec.weight_decay)
            )
        core = optax.multi_transform(transforms, labels)
    else:
        core = builtin_optimizer(spec.name, rate(lr), float(spec.weight_decay))
    chain = optax.chain(optax.clip_by_global_norm(float(spec.grad_clip)), core) if spec.grad_clip else core
    if int(spec.accumulation_steps) > 1:
        multi = optax.MultiSteps(chain, every_k_schedule=int(spec.accumulation_steps))
        return Optimizer(multi.gradient_transformation(), multi)
    return Optimizer(chain, None)


def make_optimizer(
    learning_rate: float | Schedule,
    grad_clip: float | None = None,
    *,
    weight_decay: float = 0.0,
    name: str = "adam",
) -> optax.GradientTransformation:
    """Shorthand for the core's scripts and tests: `build_optimizer(...).tx` for a fixed rate or an optax schedule."""
    if callable(learning_rate):
        spec = OptimizerSpec(name=name, learning_rate=1.0, weight_decay=weight_decay, grad_clip=grad_clip)
        return build_optimizer(spec, schedule=learning_rate).tx
    spec = OptimizerSpec(name=name, learning_rate=float(learning_rate), weight_decay=weight_decay, grad_clip=grad_clip)
    return build_optimizer(spec).tx
