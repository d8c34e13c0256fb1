"""Torch optimizers and LR schedulers given to ``Trainer`` for a JAX model, translated to optax.

The docs type ``Trainer(optimizer=..., scheduler=...)`` as torch ``Optimizer`` / ``LRScheduler``; a JAX model's
parameters are updated by optax, so a torch object is read (type, param groups, hyperparameters) and rebuilt:

* optimizers: ``Adam`` (``weight_decay`` as L2 added to the gradients, like torch), ``AdamW`` (decoupled
  weight decay), ``SGD`` (momentum, nesterov, L2 ``weight_decay``). Several param groups with different
  hyperparameters become ``optax.multi_transform`` over the parameter leaves, matched by memory (a group
  lists ``model.parameters()`` views); leaves in no group are not updated, as in torch.
* schedulers: ``StepLR``, ``MultiStepLR``, ``ExponentialLR``, ``CosineAnnealingLR``, ``LinearLR``,
  ``LambdaLR`` (its function is tabulated on the host for ``TrainingConfig.total_steps`` optimizer steps and
  held at the last value after that). The schedule counts optimizer steps from the scheduler's
  ``last_epoch``, exactly when torch's ``scheduler.step()`` would run (after each optimizer step).

With a torch optimizer the schedule is built into the optax optimizer; a torch scheduler alone becomes an optax
schedule ``step -> learning rate`` (its first group's ``base_lr`` times the factor). Anything else raises
``TypeError`` listing what is supported; optax transformations and schedules pass through unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

__all__ = ["SUPPORTED_OPTIMIZERS", "SUPPORTED_SCHEDULERS", "translate_torch_optimization"]

SUPPORTED_OPTIMIZERS = ("Adam", "AdamW", "SGD")
SUPPORTED_SCHEDULERS = ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "LambdaLR")
_sched = torch.optim.lr_scheduler


def _refuse(what: str, obj: Any, supported: tuple[str, ...], detail: str = "") -> TypeError:
    return TypeError(
        f"Cannot translate torch {what} {type(obj).__name__}{detail} to optax for a JAX model; supported: "
        f"{', '.join(supported)} (or pass an optax {'GradientTransformation' if what == 'optimizer' else 'schedule'})"
    )


# ---------------------------------------------------------------------------------------------- schedules


def _factor(scheduler: Any, total_steps: int) -> Callable[[Any], Any]:
    """``count -> lr / base_lr`` of a torch scheduler (jax-traceable)."""
    offset = max(int(getattr(scheduler, "last_epoch", 0)), 0)
    if isinstance(scheduler, _sched.StepLR):
        size, gamma = int(scheduler.step_size), float(scheduler.gamma)
        return lambda c: gamma ** jnp.floor_divide(c + offset, size)
    if isinstance(scheduler, _sched.MultiStepLR):
        milestones = jnp.asarray(sorted(scheduler.milestones.elements()), jnp.int32)
        gamma = float(scheduler.gamma)
        return lambda c: gamma ** jnp.sum(milestones <= c + offset)
    if isinstance(scheduler, _sched.ExponentialLR):
        gamma = float(scheduler.gamma)
        return lambda c: gamma ** (c + offset)
    if isinstance(scheduler, _sched.LinearLR):
        start, end, total = float(scheduler.start_factor), float(scheduler.end_factor), int(scheduler.total_iters)
        return lambda c: start + (end - start) * jnp.minimum(c + offset, total) / max(total, 1)
    if isinstance(scheduler, _sched.LambdaLR):
        functions = scheduler.lr_lambdas
        if len({id(f) for f in functions}) > 1:
            raise _refuse("scheduler", scheduler, SUPPORTED_SCHEDULERS, " with a different lambda per param group")
        steps = max(int(total_steps), 1) + 1
        table = jnp.asarray(np.array([float(functions[0](k + offset)) for k in range(steps)], np.float32))
        return lambda c: table[jnp.minimum(c, steps - 1)]
    raise _refuse("scheduler", scheduler, SUPPORTED_SCHEDULERS)


def _cosine(scheduler: Any, base_lr: float) -> Callable[[Any], Any]:
    offset = max(int(getattr(scheduler, "last_epoch", 0)), 0)
    t_max, eta_min = int(scheduler.T_max), float(scheduler.eta_min)
    return lambda c: eta_min + (base_lr - eta_min) * (1 + jnp.cos(math.pi * (c + offset) / t_max)) / 2


def _schedule(scheduler: Any, base_lr: float, total_steps: int) -> Callable[[Any], Any]:
    """``count -> learning rate`` for a group whose initial learning rate is `base_lr`."""
    if isinstance(scheduler, _sched.CosineAnnealingLR):
        return _cosine(scheduler, base_lr)
    factor = _factor(scheduler, total_steps)
    return lambda c: base_lr * factor(c)


# ---------------------------------------------------------------------------------------------- optimizers


def _group_transform(optimizer: Any, group: dict[str, Any], learning_rate: Any) -> optax.GradientTransformation:
    wd = float(group.get("weight_decay", 0.0) or 0.0)
    if group.get("maximize"):
        raise _refuse("optimizer", optimizer, SUPPORTED_OPTIMIZERS, " with maximize=True")
    if isinstance(optimizer, torch.optim.AdamW):
        if group.get("amsgrad"):
            raise _refuse("optimizer", optimizer, SUPPORTED_OPTIMIZERS, " with amsgrad=True")
        b1, b2 = group["betas"]
        return optax.adamw(learning_rate, b1=float(b1), b2=float(b2), eps=float(group["eps"]), weight_decay=wd)
    if isinstance(optimizer, torch.optim.Adam):
        if group.get("amsgrad"):
            raise _refuse("optimizer", optimizer, SUPPORTED_OPTIMIZERS, " with amsgrad=True")
        b1, b2 = group["betas"]
        adam = optax.adam(learning_rate, b1=float(b1), b2=float(b2), eps=float(group["eps"]))
        return optax.chain(optax.add_decayed_weights(wd), adam) if wd else adam
    if isinstance(optimizer, torch.optim.SGD):
        if float(group.get("dampening", 0.0) or 0.0):
            raise _refuse("optimizer", optimizer, SUPPORTED_OPTIMIZERS, " with dampening != 0")
        momentum = float(group.get("momentum", 0.0) or 0.0)
        sgd = optax.sgd(learning_rate, momentum=momentum or None, nesterov=bool(group.get("nesterov", False)))
        return optax.chain(optax.add_decayed_weights(wd), sgd) if wd else sgd
    raise _refuse("optimizer", optimizer, SUPPORTED_OPTIMIZERS)


def _group_labels(model: Any, optimizer: Any) -> Any:
    """A pytree of labels ``"group<i>"`` / ``"frozen"`` matching ``model.params``, by tensor memory."""
    group_of = {}
    for index, group in enumerate(optimizer.param_groups):
        for tensor in group["params"]:
            if tensor.numel():
                group_of[tensor.data_ptr()] = f"group{index}"
    names = {name: group_of.get(t.data_ptr(), "frozen") for name, t in model.named_parameters()}
    flat, treedef = jax.tree_util.tree_flatten_with_path(model.params)
    labels = []
    for path, _ in flat:
        name = ".".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
        labels.append(names.get(name, "frozen"))
    return jax.tree_util.tree_unflatten(treedef, labels)


def _hyper(group: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, repr(v)) for k, v in group.items() if k not in ("params", "initial_lr")))


def _translate_optimizer(model: Any, optimizer: Any, scheduler: Any, total_steps: int) -> Any:
    if not isinstance(optimizer, SUPPORTED_TYPES):
        raise _refuse("optimizer", optimizer, SUPPORTED_OPTIMIZERS)
    groups = optimizer.param_groups
    base_lrs = list(getattr(scheduler, "base_lrs", [])) if scheduler is not None else []

    def rate(index: int, group: dict[str, Any]) -> Any:
        if scheduler is None:
            return float(group["lr"])
        base = float(base_lrs[index]) if index < len(base_lrs) else float(group.get("initial_lr", group["lr"]))
        return _schedule(scheduler, base, total_steps)

    if len(groups) == 1 or len({_hyper(g) for g in groups}) == 1 and scheduler is None:
        return _group_transform(optimizer, groups[0], rate(0, groups[0]))
    transforms = {f"group{i}": _group_transform(optimizer, g, rate(i, g)) for i, g in enumerate(groups)}
    transforms["frozen"] = optax.set_to_zero()
    return optax.multi_transform(transforms, _group_labels(model, optimizer))


SUPPORTED_TYPES = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


def translate_torch_optimization(model: Any, config: Any, optimizer: Any, scheduler: Any) -> tuple[Any, Any]:
    """``(optimizer, scheduler)`` for the JAX engine: torch objects translated (see the module docstring),
    anything else returned unchanged.

    Raises:
        TypeError: a torch optimizer or scheduler that has no optax translation (the message lists the
            supported ones).
    """
    torch_optimizer = isinstance(optimizer, torch.optim.Optimizer)
    torch_scheduler = isinstance(scheduler, _sched.LRScheduler)
    if not (torch_optimizer or torch_scheduler):
        return optimizer, scheduler
    total = int(config.total_steps)
    if torch_optimizer:
        optimizer = _translate_optimizer(model, optimizer, scheduler if torch_scheduler else None, total)
        return optimizer, (None if torch_scheduler else scheduler)
    base = float(scheduler.base_lrs[0])
    return optimizer, _schedule(scheduler, base, total)
