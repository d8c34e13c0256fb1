"""``TrainingConfig`` -> the core's optimizer and compiled train/eval steps (the only glue; no algorithm here).

The optimizer comes from ``worldflux_jax.optim.build_optimizer`` (one weight-decay meaning: torch's, see that
module), the steps from ``worldflux_jax.step.make_train_step`` / ``make_eval_step``. Programs for built-in
optimizer settings are shared between Trainers of the same model architecture, precision and device mesh, so a
new Trainer (e.g. to resume) does not recompile.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
from collections.abc import Callable
from typing import Any

import optax
from jax.sharding import Mesh

from worldflux_jax.optim import Optimizer, OptimizerSpec, is_transformation, schedule_factor
from worldflux_jax.optim import build_optimizer as _core_build_optimizer
from worldflux_jax.step import make_eval_step, make_train_step

from .config import TrainingConfig

__all__ = ["StepProgram", "build_optimizer", "build_schedule", "optimizer_spec", "step_program"]


def optimizer_spec(config: TrainingConfig) -> OptimizerSpec:
    """The core optimizer spec of a training config (its learning rate/weight decay/clipping, not the model's)."""
    return OptimizerSpec(
        name=config.optimizer,
        learning_rate=float(config.learning_rate),
        weight_decay=float(config.weight_decay),
        grad_clip=None if not config.grad_clip else float(config.grad_clip),
        scheduler=config.scheduler,
        warmup_steps=int(config.warmup_steps),
        total_steps=int(config.total_steps),
        accumulation_steps=int(config.gradient_accumulation_steps),
    )


def build_schedule(config: TrainingConfig) -> Callable[[Any], Any] | None:
    """The learning-rate factor of ``config.scheduler`` (``worldflux_jax.optim.schedule_factor``), None for none."""
    return schedule_factor(config.scheduler, int(config.warmup_steps), int(config.total_steps))


def build_optimizer(
    config: TrainingConfig,
    optimizer: Any = None,
    scheduler: Callable[[Any], Any] | None = None,
    groups: Any = None,
) -> tuple[optax.GradientTransformation, Any]:
    """``(transformation, optax.MultiSteps or None)`` for ``config`` (see ``worldflux_jax.optim``)."""
    built = _core_build_optimizer(optimizer_spec(config), optimizer=optimizer, schedule=scheduler, groups=groups)
    return built.tx, built.multi


def _precision(config: TrainingConfig) -> str | None:
    return "bf16" if config.mixed_precision else None


class StepProgram:
    """The compiled train step and eval step of one (family, optimizer, precision, mesh).

    ``step(train_state, raw_batch, key_data) -> (train_state, metrics)`` (state donated; see
    ``worldflux_jax.step``); ``evaluate(params, extras, raw_batch, key_data, index) -> losses``.
    """

    def __init__(self, family: Any, config: TrainingConfig, optimizer: Any, scheduler: Any, mesh: Mesh | None):
        if optimizer is not None and not is_transformation(optimizer):
            raise TypeError(
                "optimizer must be an optax.GradientTransformation (this Trainer updates JAX parameters), got "
                f"{type(optimizer).__name__}; or pass None and set TrainingConfig.optimizer"
            )
        groups = None
        group_fn = getattr(family, "optimizer_groups", None)
        if optimizer is None and callable(group_fn):
            groups = group_fn(family.config, family.param_shapes() if hasattr(family, "param_shapes") else None)
        built = _core_build_optimizer(optimizer_spec(config), optimizer=optimizer, schedule=scheduler, groups=groups)
        self.optimizer: Optimizer = built
        precision = _precision(config)
        self._train = make_train_step(family, built, mesh=mesh, precision=precision, monitor=True)
        self._eval = make_eval_step(family, mesh=mesh, precision=precision)
        self.loss_fn = self._train.loss_fn
        self.step = self._train
        self.evaluate = self._eval

    @property
    def trace_count(self) -> int:
        return self._train.trace_count

    @property
    def metric_keys(self) -> list[str]:
        return self._train.metric_keys


_PROGRAMS: collections.OrderedDict[Any, StepProgram] = collections.OrderedDict()
_PROGRAMS_LOCK = threading.Lock()
_PROGRAM_CACHE_SIZE = 8


def _program_key(family: Any, config: TrainingConfig, mesh: Mesh | None) -> Any:
    core_config = getattr(family, "config", None)
    if not dataclasses.is_dataclass(core_config) or isinstance(core_config, type):
        return None
    described = json.dumps(dataclasses.asdict(core_config), sort_keys=True, default=str)
    spec = optimizer_spec(config)
    if spec.scheduler == "none":  # the schedule depends on these only when there is one
        spec = dataclasses.replace(spec, warmup_steps=0, total_steps=1)
    topology = None if mesh is None else (tuple(d.id for d in mesh.devices.flat), mesh.axis_names)
    return (
        type(family),
        type(core_config),
        described,
        repr(getattr(family, "scan_unroll", None)),
        spec,
        _precision(config),
        topology,
    )


def step_program(family: Any, config: TrainingConfig, optimizer: Any, scheduler: Any, mesh: Mesh | None) -> StepProgram:
    """A shared ``StepProgram`` for built-in optimizer settings; a fresh one for a custom optimizer/scheduler."""
    if optimizer is not None or scheduler is not None:
        return StepProgram(family, config, optimizer, scheduler, mesh)
    key = _program_key(family, config, mesh)
    if key is None:
        return StepProgram(family, config, None, None, mesh)
    with _PROGRAMS_LOCK:
        program = _PROGRAMS.get(key)
        if program is not None:
            _PROGRAMS.move_to_end(key)
            return program
    program = StepProgram(family, config, None, None, mesh)
    with _PROGRAMS_LOCK:
        _PROGRAMS[key] = program
        while len(_PROGRAMS) > _PROGRAM_CACHE_SIZE:
            _PROGRAMS.popitem(last=False)
    return program
