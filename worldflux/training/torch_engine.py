"""The torch step engine of ``Trainer``: trains a user's torch ``WorldModel`` (or any ``nn.Module`` with
``loss(batch)``) the way the reference WorldFlux trainer does.

``Trainer(model, config)`` picks this engine when `model` has no JAX core (see ``worldflux.training.engines``);
``TorchTrainer`` is a ``Trainer`` with the same public surface (``train``, ``evaluate``, ``save_checkpoint``,
``load_checkpoint``, ``runtime_profile``, ``add_callback``, ``state``, ``callbacks``).

Per step (the reference's ``_train_step``): sample a batch (``BatchRequest``-style providers, ``sample(batch_size=,
seq_len=, device=)`` providers or any iterable of ``Batch`` / dict), check it against the model's I/O contract,
``model.loss(batch)`` under ``torch.autocast`` when ``mixed_precision``, NaN/Inf checks of the loss terms
(``TrainingError("Numerical instability at step N: ...")``) and of the gradients (``"NaN gradient detected in
parameter 'p' at step N"``), ``backward`` of ``loss / gradient_accumulation_steps``, and on the last micro-step
gradient clipping (``grad_clip > 0``), ``optimizer.step()`` (through a ``GradScaler`` for CUDA float16),
``model.on_after_optimizer_step()`` and ``scheduler.step()``. ``global_step`` counts micro-batches.

Optimizer: ``TrainingConfig.optimizer`` adamw / adam / sgd (momentum 0.9) with ``learning_rate`` and
``weight_decay`` over ``model.parameter_groups()`` when the model defines it, else all parameters; scheduler:
``TrainingConfig.scheduler`` none / constant / linear / cosine with linear warmup (the reference's LambdaLR
factors). A user's torch ``Optimizer`` / ``LRScheduler`` are used as given.

Checkpoints are the reference's ``torch.save`` files (``checkpoint_schema_version`` 1, model / optimizer /
scheduler / scaler states, ``global_step``, ``best_loss``, ``config``, ``model_config``), written atomically
through a validated temporary file. They also hold the torch RNG state, the accumulation counter and, saved
mid-accumulation, the summed micro-batch gradients, so
N steps, save, resume, M steps equals N + M steps exactly. Replay buffers with ``rng = None`` are sampled at
step ``s`` with ``np.random.default_rng([seed, 0, s])``, as the JAX engine does.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from worldflux.core.batch import Batch, BatchRequest
from worldflux.core.exceptions import CheckpointError, ConfigurationError, TrainingError, ValidationError
from worldflux.core.output import LossOutput

from .callbacks import Callback, CallbackList, CheckpointCallback, default_callbacks
from .config import TrainingConfig
from .guards import check_train_steps, check_training_config, prepare_output_dir
from .trainer import Trainer, TrainingState

__all__ = ["CHECKPOINT_SCHEMA_VERSION", "RUN_MANIFEST_SCHEMA", "TorchTrainer", "build_torch_optimizer"]

logger = logging.getLogger(__name__)

CHECKPOINT_SCHEMA_VERSION = 1
RUN_MANIFEST_SCHEMA = "worldflux.training.run_manifest.v1"
_REQUIRED_CHECKPOINT_KEYS = ("model_state_dict", "optimizer_state_dict", "global_step")
_BUNDLED_FAMILIES = ("dreamer", "tdmpc2")


def _torch_device(config: TrainingConfig) -> torch.device:
    name = str(config.device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigurationError(
            f"TrainingConfig.device={config.device!r} is not a torch device (use 'auto', 'cpu', 'cuda' or 'cuda:N')"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"TrainingConfig.device={config.device!r}: torch sees no CUDA device")
    return device


def build_torch_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """The reference's default optimizer: ``config.optimizer`` over ``model.parameter_groups()`` (each group's
    ``lr`` / ``weight_decay`` default to the config's) or over all parameters.

    Raises:
        ConfigurationError: an unknown ``config.optimizer``, or a model without parameters.
    """
    groups_fn = getattr(model, "parameter_groups", None)
    if callable(groups_fn):
        params: Any = []
        for group in groups_fn():
            group = dict(group)
            group.setdefault("lr", config.learning_rate)
            group.setdefault("weight_decay", config.weight_decay)
            params.append(group)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigurationError(f"{type(model).__name__} has no trainable parameters to optimize")
    lr, wd = config.learning_rate, config.weight_decay
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9)
    raise ConfigurationError(
        f"Unknown optimizer: '{config.optimizer}'. Supported optimizers: 'adamw', 'adam', 'sgd'"
    )


def _schedule_factor(config: TrainingConfig) -> Any:
    """The reference's LambdaLR factor for ``config.scheduler`` (None for "none")."""
    kind = config.scheduler
    if kind == "none":
        return None
    total = max(int(config.total_steps), 1)
    warmup = min(int(config.warmup_steps), max(total - 1, 0))

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class TorchTrainer(Trainer):
    """``Trainer`` for torch models (see the module docstring). Built by ``Trainer(model, ...)`` itself when
    `model` is a torch model; the arguments are ``Trainer``'s.

    Raises:
        ConfigurationError: ``model_overrides`` / ``ema_decay`` set, a non-native backend, an unavailable
            device, or a model without ``loss``.
        TrainingError: the model's ``io_contract()`` is invalid.
        TypeError: ``optimizer`` / ``scheduler`` that are not torch ones.
    """

    engine = "torch"

    def __init__(
        self,
        model: Any,
        config: TrainingConfig | None = None,
        callbacks: Sequence[Callback] | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
    ) -> None:
        config = check_training_config(config)
        from worldflux.utils import set_seed

        set_seed(config.seed)
        if config.backend not in ("native_torch", "native_jax"):
            raise ConfigurationError(
                f"TrainingConfig.backend={config.backend!r} is not available for local training; use 'native_torch'"
            )
        if not callable(getattr(model, "loss", None)):
            raise ConfigurationError(
                "Trainer needs a worldflux world model or a torch nn.Module with a loss(batch) method; got "
                f"{type(model).__name__} without loss()"
            )
        self.config = config
        self.execution_mode = "local"
        self.state = TrainingState()
        self.device = _torch_device(config)
        self.device_name = str(self.device)
        self.model = model.to(self.device)
        self._validate_contract()  # Trainer's check, same message
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer for a torch model must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer if optimizer is not None else build_torch_optimizer(self.model, config)
        if scheduler is None:
            factor = _schedule_factor(config)
            scheduler = None if factor is None else torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        elif not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
            raise TypeError(
                f"scheduler for a torch model must be a torch LRScheduler, got {type(scheduler).__name__}"
            )
        self.scheduler = scheduler
        self.custom_optimizer = optimizer is not None
        self.autocast_dtype = torch.bfloat16 if config.mixed_precision_dtype == "bfloat16" else torch.float16
        use_scaler = config.mixed_precision and self.device.type == "cuda" and self.autocast_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.callbacks = CallbackList(default_callbacks(config))
        for callback in callbacks or []:
            self.callbacks.append(callback)
        self._output_lock = prepare_output_dir(config.output_dir, owner=self)  # one writer per output_dir
        self.metrics_synced = True
        self.target_steps: int | None = None
        self.data_mode: str | None = None
        self.degraded_modes: list[str] = []
        self.data_provenance: dict[str, Any] = {}
        self.quality_report: dict[str, Any] | None = None
        self._accumulation_step = 0
        self._data_iter: Iterator[Any] | None = None
        self._run_steps = 0

    # ------------------------------------------------------------------ construction helpers

    def add_callback(self, callback: Callback) -> None:
        """Append a callback (runs after the existing ones)."""
        self.callbacks.append(callback)

    # ------------------------------------------------------------------ batches

    def _sample(self, data: Any, step: int) -> Any:
        config = self.config
        size, seq = config.effective_batch_size(), config.effective_sequence_length()
        reseed = hasattr(data, "rng") and data.rng is None
        if reseed:
            data.rng = np.random.default_rng([int(config.seed) % (2**32), 0, step])
        try:
            sample = data.sample
            params = [
                p for p in inspect.signature(sample).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if len(params) == 1:
                return sample(BatchRequest(batch_size=size, seq_len=seq, device=str(self.device)))
            return sample(batch_size=size, seq_len=seq, device=self.device)
        finally:
            if reseed:
                data.rng = None

    def _next_batch(self, data: Any) -> Batch:
        step = self.state.global_step
        if hasattr(data, "sample"):
            raw, source = self._sample(data, step), "BatchProvider"
        else:
            if self._data_iter is None:
                self._data_iter = iter(data)
            try:
                raw = next(self._data_iter)
            except StopIteration:
                self.state.epoch += 1
                self._data_iter = iter(data)
                raw = next(self._data_iter)
            source = "Data iterator"
        if isinstance(raw, Mapping):
            raw = Batch.from_dict(dict(raw))
        if not isinstance(raw, Batch):
            raise TrainingError(f"{source} must return Batch or dict, got {type(raw).__name__}")
        batch = raw.to(self.device)
        return self._checked(batch, data)

    def _checked(self, batch: Batch, data: Any) -> Batch:
        """Apply the provider's / contract's layouts and validate `batch` against the model's contract."""
        contract_fn = getattr(self.model, "io_contract", None)
        contract = contract_fn() if callable(contract_fn) else None
        layout_fn = getattr(data, "batch_layout", None)
        if callable(layout_fn):
            batch = batch.with_layouts(layout_fn(), strict=True)
        elif contract is not None and contract.sequence_layout is not None and not batch.layouts:
            batch = batch.with_layouts(dict(contract.sequence_layout.axes_by_field), strict=True)
        if contract is None:
            return batch
        has_key = getattr(self.model, "has_batch_key", None)
        if callable(has_key):
            missing = [k for k in contract.required_batch_keys if not has_key(batch, k)]
            if missing:
                raise TrainingError(f"Batch is missing required keys for model contract: {missing}")
        validate = getattr(self.model, "validate_batch_contract", None)
        if callable(validate):
            try:
                validate(batch)
            except ValidationError as exc:
                raise TrainingError(f"Batch violates model I/O contract: {exc}") from exc
        try:
            batch.validate(strict_time=True, sequence_field_spec=contract.effective_sequence_field_spec)
        except Exception as exc:  # noqa: BLE001 - the reference wraps every validation failure
            raise TrainingError(f"Invalid batch for training: {exc}") from exc
        return batch

    # ------------------------------------------------------------------ one step

    def _loss(self, batch: Batch) -> LossOutput:
        if self.config.mixed_precision:
            with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype):
                out = self.model.loss(batch)
        else:
            out = self.model.loss(batch)
        if isinstance(out, torch.Tensor):
            out = LossOutput(loss=out)
        if not isinstance(getattr(out, "loss", None), torch.Tensor):
            raise TrainingError(
                f"{type(self.model).__name__}.loss(batch) must return a LossOutput or a scalar tensor, "
                f"got {type(out).__name__}"
            )
        return out

    def _check_losses(self, out: LossOutput, step: int) -> None:
        terms = {"loss": out.loss, **dict(out.components or {})}
        nan = [k for k, v in terms.items() if isinstance(v, torch.Tensor) and bool(torch.isnan(v).any())]
        inf = [k for k, v in terms.items() if isinstance(v, torch.Tensor) and bool(torch.isinf(v).any())]
        if nan or inf:
            parts = ([f"NaN in losses: {nan}"] if nan else []) + ([f"Inf in losses: {inf}"] if inf else [])
            raise TrainingError(
                f"Numerical instability at step {step}: {', '.join(parts)}. Consider reducing learning rate, "
                "enabling gradient clipping, or checking input data for anomalies."
            )

    def _check_gradients(self, step: int) -> None:
        for name, param in self.model.named_parameters():
            grad = param.grad
            if grad is None:
                continue
            for label, bad in (("NaN", torch.isnan), ("Inf", torch.isinf)):
                if bool(bad(grad).any()):
                    raise TrainingError(
                        f"{label} gradient detected in parameter '{name}' at step {step}. Consider reducing "
                        "learning rate or enabling gradient clipping."
                    )

    def _train_step(self, data: Any) -> None:
        self.model.train()
        accum = int(self.config.gradient_accumulation_steps)
        last_micro = self._accumulation_step >= accum - 1
        step = self.state.global_step
        batch = self._next_batch(data)
        if self._accumulation_step == 0:
            self.optimizer.zero_grad()
        out = self._loss(batch)
        self._check_losses(out, step)
        scaled = out.loss / accum
        if self.scaler is not None:
            self.scaler.scale(scaled).backward()
        else:
            scaled.backward()
        if last_micro:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            self._check_gradients(step)
            if self.config.grad_clip and self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            hook = getattr(self.model, "on_after_optimizer_step", None)
            if callable(hook):
                hook()
            if self.scheduler is not None:
                self.scheduler.step()
        self._accumulation_step = (self._accumulation_step + 1) % accum
        loss_value = float(out.loss.detach().item())
        self.state.total_loss += loss_value
        self.state.num_batches += 1
        metrics = dict(out.metrics or {})
        if not metrics:
            metrics = {k: float(v.detach().item()) for k, v in (out.components or {}).items()}
        metrics["loss"] = loss_value
        self.state.metrics = metrics

    # ------------------------------------------------------------------ loops

    def train(self, data: Any, num_steps: int | None = None, resume_from: str | None = None) -> Any:
        """Train until ``global_step`` reaches `num_steps` (or ``config.effective_total_steps()``); returns the
        model. Ends with ``checkpoint_final.pt`` and ``run_manifest.json`` in ``config.output_dir``."""
        total = check_train_steps(num_steps, self.config.effective_total_steps())
        provenance = getattr(data, "data_provenance", None)
        if isinstance(provenance, dict):
            self.data_provenance = dict(provenance)
        if resume_from:
            self.load_checkpoint(resume_from)
        self.target_steps = total
        start_step = self.state.global_step
        self.state.train_start_time = time.time()
        self.state.train_end_time = None
        self.state.ttfi_sec = None
        self._data_iter = None
        self.callbacks.on_train_begin(self)
        try:
            while self.state.global_step < total and not self.state.should_stop:
                self.callbacks.on_step_begin(self)
                try:
                    self._train_step(data)
                except RuntimeError as exc:
                    if isinstance(exc, TrainingError):
                        raise
                    raise TrainingError(f"Training step failed at step {self.state.global_step}: {exc}") from exc
                if self.state.ttfi_sec is None:
                    self.state.ttfi_sec = time.time() - self.state.train_start_time
                self.state.global_step += 1
                self._run_steps = self.state.global_step - start_step
                self.callbacks.on_step_end(self)
        except KeyboardInterrupt:
            logger.info("Training interrupted by user")
        self.state.train_end_time = time.time()
        self.callbacks.on_train_end(self)
        if self._run_steps:  # no final checkpoint when this call trained nothing
            self.save_checkpoint(os.path.join(self.config.output_dir, "checkpoint_final.pt"))
        self._write_manifest()
        self._quality_check()
        return self.model

    def evaluate(self, data: Any, num_batches: int = 10) -> dict[str, float]:
        """Average ``loss`` and each loss component over `num_batches` batches (eval mode, no gradients)."""
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches <= 0:
            raise TrainingError(f"num_batches must be positive, got {num_batches}")
        self.model.eval()
        totals: dict[str, float] = {}
        self._data_iter = None
        with torch.no_grad():
            for _ in range(num_batches):
                out = self._loss(self._next_batch(data))
                totals["loss"] = totals.get("loss", 0.0) + float(out.loss.item())
                for k, v in (out.components or {}).items():
                    totals[k] = totals.get(k, 0.0) + float(v.item())
        self.model.train()
        return {k: v / num_batches for k, v in totals.items()}

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write a reference checkpoint to `path` atomically (validated temporary file, then ``os.replace``).

        Raises:
            CheckpointError: the written file does not load back with the required keys.
        """
        checkpoint: dict[str, Any] = {
            "checkpoint_schema_version": CHECKPOINT_SCHEMA_VERSION,
            "model_state_dict": self.model.state_dict(),
            "optimizer_state_dict": self.optimizer.state_dict(),
            "global_step": int(self.state.global_step),
            "best_loss": float(self.state.best_loss),
            "config": self.config.to_dict(),
            "torch_rng_state": torch.get_rng_state(),
            "accumulation_step": int(self._accumulation_step),
        }
        if self._accumulation_step:  # mid-accumulation: the summed micro-batch gradients are state too
            checkpoint["accumulated_grads"] = {
                name: p.grad.detach().clone() for name, p in self.model.named_parameters() if p.grad is not None
            }
        if self.scheduler is not None:
            checkpoint["scheduler_state_dict"] = self.scheduler.state_dict()
        if self.scaler is not None:
            checkpoint["scaler_state_dict"] = self.scaler.state_dict()
        to_dict = getattr(getattr(self.model, "config", None), "to_dict", None)
        if callable(to_dict):
            checkpoint["model_config"] = to_dict()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".pt.tmp", dir=target.parent, prefix=target.stem)
        os.close(fd)
        try:
            torch.save(checkpoint, tmp)
            try:
                loaded = torch.load(tmp, map_location="cpu", weights_only=True)
                missing = [k for k in _REQUIRED_CHECKPOINT_KEYS if k not in loaded]
                if missing:
                    raise ValueError(f"missing keys {missing}")
            except Exception as exc:  # noqa: BLE001 - any reload failure invalidates the file
                raise CheckpointError(f"Checkpoint validation failed: {exc}") from exc
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore model, optimizer, step, best loss, scheduler, scaler and RNG state from `path`.

        Raises:
            CheckpointError: the file is missing, unreadable or lacks a required key.
        """
        if not os.path.exists(path):
            raise CheckpointError(f"Checkpoint file not found: {path}")
        try:
            checkpoint = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
            raise CheckpointError(f"Failed to load checkpoint from {path}: {exc}") from exc
        if not isinstance(checkpoint, Mapping):
            raise CheckpointError(f"Failed to load checkpoint from {path}: not a checkpoint dict")
        for key in _REQUIRED_CHECKPOINT_KEYS:
            if key not in checkpoint:
                raise CheckpointError(f"Checkpoint is missing required key: {key}")
        self.model.load_state_dict(checkpoint["model_state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
        self.state.global_step = int(checkpoint["global_step"])
        self.state.best_loss = float(checkpoint.get("best_loss", float("inf")))
        if self.scheduler is not None and "scheduler_state_dict" in checkpoint:
            self.scheduler.load_state_dict(checkpoint["scheduler_state_dict"])
        if self.scaler is not None and "scaler_state_dict" in checkpoint:
            self.scaler.load_state_dict(checkpoint["scaler_state_dict"])
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"].cpu())
        self._accumulation_step = int(checkpoint.get("accumulation_step", 0))
        grads = checkpoint.get("accumulated_grads") or {}
        for name, param in self.model.named_parameters():
            param.grad = grads[name].to(param.device).clone() if name in grads else None
        for callback in self.callbacks.callbacks:
            if isinstance(callback, CheckpointCallback):
                callback.best_loss = self.state.best_loss

    # ------------------------------------------------------------------ reporting

    def _support_surface(self) -> str:
        model_type = getattr(getattr(self.model, "config", None), "model_type", None)
        return "advanced" if model_type not in _BUNDLED_FAMILIES else "supported"

    def _engine_record(self) -> dict[str, Any]:
        return {"engine": self.engine}

    def _parameters_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def __repr__(self) -> str:
        return (
            f"Trainer(model={type(self.model).__name__}, engine='torch', global_step={self.state.global_step}, "
            f"device={self.device_name!r}, optimizer={type(self.optimizer).__name__})"
        )
