"""Which ``Trainer`` engine trains a model: ``Trainer(model, ...)`` dispatches here (``Trainer.__new__``).

* an ``OfficialBackendHandle`` -> delegated mode (``worldflux.training.delegated.DelegatedTrainer``): the job
  runs as a separate process;
* a model with a JAX core (``model.core.train_loss`` and ``model.params``, the bundled DreamerV3 / TD-MPC2)
  -> the jitted JAX engine (``Trainer`` itself);
* any other ``torch.nn.Module`` (or object with ``loss`` and ``parameters``) -> the torch engine
  (``worldflux.training.torch_engine.TorchTrainer``).

The choice depends only on what the model is made of, never on its family.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["is_jax_model", "trainer_class_for"]


def is_jax_model(model: Any) -> bool:
    """True for a world model whose parameters and loss live in JAX (``model.core.train_loss``)."""
    core = getattr(model, "core", None)
    return core is not None and callable(getattr(core, "train_loss", None)) and hasattr(model, "params")


def trainer_class_for(model: Any, jax_trainer: type) -> type:
    """The ``Trainer`` class for `model` (`jax_trainer` for JAX models and for anything unrecognised, which
    then reports the error)."""
    from .delegated import DelegatedTrainer, OfficialBackendHandle

    if isinstance(model, OfficialBackendHandle):
        return DelegatedTrainer
    if is_jax_model(model):
        return jax_trainer
    if isinstance(model, nn.Module) or (
        callable(getattr(model, "loss", None)) and callable(getattr(model, "parameters", None))
    ):
        from .torch_engine import TorchTrainer

        return TorchTrainer
    return jax_trainer
