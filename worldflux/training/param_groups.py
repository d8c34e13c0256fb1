"""Per-group learning rates (CONTRACTS §3) for the current ``Trainer``, in one small function.

A core may provide ``optimizer_groups(model_config, params) -> (labels, rates)``: ``labels`` a pytree of str
matching ``params``, ``rates`` a learning rate per label (None = ``TrainingConfig.learning_rate``). DreamerV3
with ``actor_critic=True`` uses it for its world-model / actor / critic rates (the reference's
``parameter_groups()``). The result is the trainer's built-in optimizer per group under ``optax.multi_transform``;
the trainer still adds clipping and the config's schedule around it.
"""

from __future__ import annotations

from typing import Any

import optax

from .config import TrainingConfig


def grouped_optimizer(core: Any, config: TrainingConfig) -> optax.GradientTransformation | None:
    """``optax.multi_transform`` over the core's groups, or None when every group uses the config's rate."""
    groups = getattr(core, "optimizer_groups", None)
    model_config = getattr(core, "config", None)
    if not callable(groups) or model_config is None:
        return None
    _, rates = groups(model_config, core.param_shapes())
    if all(rate is None for rate in rates.values()):
        return None
    from .trainer import _builtin_optimizer  # the trainer's optimizer names (adam / adamw / sgd)

    transforms = {
        label: _builtin_optimizer(
            config.optimizer,
            float(config.learning_rate if rate is None else rate),
            float(config.weight_decay),
        )
        for label, rate in rates.items()
    }
    return optax.multi_transform(transforms, lambda params: groups(model_config, params)[0])
