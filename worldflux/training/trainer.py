"""``Trainer``: the documented WorldFlux training loop: the host side of the core's one compiled train step.

Local mode only: the model is a ``worldflux`` world model whose JAX core (a ``worldflux_jax.family`` model family),
parameters and extra state the trainer reads from the facade (``model.core``, ``model.params``, ``model.extras``).
This module holds the host loop, callbacks, checkpoint calls and the run manifest; the rest lives elsewhere:

* the step: ``worldflux_jax.step.make_train_step`` (built by ``worldflux.training.program`` from the config):
  loss, gradients, clipping, the optax update, gradient accumulation, TD-MPC2's target EMA, the precision
  policy and the non-finite guard are ONE compiled call; the training state is donated (updated in place);
* the data path: ``worldflux.training.feed`` (sampling, validation, placement) through the package's one
  prefetcher (``worldflux.training.prefetch``): the next batches are sampled and placed while the current
  step runs (``TrainingConfig.prefetch_batches`` deep, default 2; 0 samples synchronously);
* devices and hosts: ``worldflux_jax.parallel``. With more than one device of the resolved platform
  (``device="auto"``/``"cpu"``/``"cuda"``/``"tpu"``, not an indexed device such as ``"cuda:0"``) or several
  processes, the step runs data-parallel over a 1-D ``"data"`` mesh of all of them (batch split, parameters
  replicated, gradient all-reduce by XLA); the global ``batch_size`` must divide by the device count
  (``ConfigurationError`` naming both numbers otherwise). Several processes join through
  ``TrainingConfig.coordinator_address`` / ``num_processes`` / ``process_id`` (``jax.distributed``); each
  samples its own rows, and logs, callbacks and checkpoint writes run on process 0.

Throughput: the loop does not wait on the device except where it has to. Step metrics stay on the device;
``trainer.state.metrics`` is a lazily-materialised mapping (``LazyMetrics``). The trainer fetches them every
``log_interval`` steps and on the last step (``trainer.metrics_synced`` is then True); the bundled callbacks
read metrics only then. To bound memory the host runs at most three steps ahead of the device (it waits for
the step dispatched three steps earlier, which never drains the device's queue). The first step is waited for
once, to measure ``ttfi_sec`` (compilation included). JAX's persistent compilation cache is on
(``TrainingConfig.compilation_cache_dir``, default ``~/.cache/worldflux/jax``).

Non-finite steps (NaN/Inf loss, loss component or gradient) are decided inside the compiled step: such a step
keeps the previous parameters, optimizer state and TD-MPC2 targets; ``skipped_steps`` in the metrics counts
them and the next log reports them. ``TrainingConfig.max_nonfinite_steps`` consecutive ones (default 1, the
reference's behaviour) raise ``TrainingError("Numerical instability at step N: ...")``; the trainer and the
model then hold the state of the last finite step (``global_step = N - 1``), and a later ``train`` continues
from there. The host notices a halt within three steps (when it waits for the step dispatched three steps
earlier); the callbacks of those few steps have run by then. A checkpoint is never written with non-finite
parameters (``NonFiniteParametersError``, a ``CheckpointError``).

Other documented behaviour:

* Optimizer: ``worldflux_jax.optim`` (``TrainingConfig.optimizer`` adamw / adam / sgd with the training config's
  ``learning_rate`` and ``weight_decay`` (torch's meaning: L2 for adam and sgd, decoupled for adamw), clipping by
  global norm ``grad_clip`` (0/None disables), the reference's LambdaLR schedules counted in optimizer steps). A
  user ``optimizer`` is any optax ``GradientTransformation`` (clipping is still applied before it); a user
  ``scheduler`` is an optax schedule ``step -> learning rate``: it replaces the config's learning rate/scheduler
  for the built-in optimizers; with a custom optimizer, schedules (config or user) scale its updates by
  ``schedule(step) / config.learning_rate``. A family's ``optimizer_groups`` gives per-group learning rates.
* Gradient accumulation (``gradient_accumulation_steps = N``): ``optax.MultiSteps`` averages N micro-batch
  gradients and applies one update. ``global_step`` counts micro-batches, as in the reference; TD-MPC2's target
  EMA runs on update steps only.
* Mixed precision (``mixed_precision=True``): ``worldflux_jax.precision`` (bfloat16 compute, float32 master
  parameters, gradients, optimizer state and losses; ``mixed_precision_dtype="float16"`` also computes in
  bfloat16, whose exponent range needs no loss scaler).
* Determinism: the step's PRNG key is ``fold_in(key(seed), step)``; see ``worldflux.training.feed`` for the
  data. Together with the checkpointed state this makes resuming exact: N steps, save, resume, M steps == N + M
  steps, bitwise on CPU. Iterables are consumed in order (not resumable).
* Checkpoints: see ``worldflux.training.checkpoint`` (orbax directories, asynchronous, atomic). The default
  callbacks are ``LoggingCallback(config.log_interval)`` and ``CheckpointCallback(config.save_interval,
  config.output_dir)``; ``train`` ends with ``checkpoint_final.pt`` and ``run_manifest.json`` (with a
  ``"devices"`` record: count, platform, mesh, process_count).
* After ``train`` the model holds the trained parameters (``model.params`` / ``model.extras`` are replaced by
  copies of the trainer's), so ``model.encode(...)`` etc. use them. If the model's ``params`` are replaced
  between ``train`` calls (``load_state_dict``), the trainer adopts them (optimizer state kept).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from worldflux.core.exceptions import CheckpointError, ConfigurationError, TrainingError
from worldflux.core.safe_io import write_json_atomic
from worldflux_jax.family import as_family
from worldflux_jax.parallel import (
    devices_record,
    enable_compilation_cache,
    initialize_distributed,
    training_mesh,
)
from worldflux_jax.step import HALT_KEY, TrainState, init_guard, replicate

from .callbacks import Callback, CallbackList, CheckpointCallback, default_callbacks
from .checkpoint import CHECKPOINT_SCHEMA_VERSION, CheckpointSnapshot, CheckpointWriter, restore_checkpoint
from .config import TrainingConfig
from .feed import BatchFeed, DataStream
from .guards import check_train_steps, check_training_config, prepare_output_dir
from .prefetch import Prefetcher
from .program import build_optimizer, build_schedule, step_program

__all__ = [
    "LazyMetrics",
    "NonFiniteParametersError",
    "Trainer",
    "TrainingState",
    "build_optimizer",
    "build_schedule",
]

logger = logging.getLogger("worldflux.training")

RUN_MANIFEST_SCHEMA = "worldflux.training.run_manifest.v1"
_NATIVE_BACKENDS = ("native_torch", "native_jax")
_MAX_AHEAD = 3  # steps the host may dispatch ahead of the device
_TRAIN_STREAM, _EVAL_STREAM = 0, 1


class NonFiniteParametersError(CheckpointError):
    """A checkpoint save was refused because the parameters hold NaN/Inf."""


# ---------------------------------------------------------------------------------------------- state


class LazyMetrics(Mapping[str, float]):
    """The metrics of one step as a read-only mapping ``name -> float``, fetched from the device on first read.

    Keys are known without a device sync; the first value access (``m["loss"]``, ``items()``, ``dict(m)``)
    waits for that step and converts every value to a Python float at once. ``ready`` tells whether that has
    happened.
    """

    __slots__ = ("_device", "_host")

    def __init__(self, device_metrics: Mapping[str, Any] | None = None, host: Mapping[str, float] | None = None):
        self._device = dict(device_metrics) if device_metrics is not None else None
        self._host: dict[str, float] | None = dict(host) if host is not None else None
        if self._device is None and self._host is None:
            self._host = {}

    @property
    def ready(self) -> bool:
        """True once the values are host floats (no further device sync)."""
        return self._host is not None

    def _values(self) -> dict[str, float]:
        if self._host is None:
            fetched = jax.device_get(self._device)
            self._host = {k: float(v) for k, v in fetched.items()}
            self._device = None
        return self._host

    def __getitem__(self, key: str) -> float:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._host if self._host is not None else self._device or {})

    def __len__(self) -> int:
        return len(self._host if self._host is not None else self._device or {})

    def __contains__(self, key: object) -> bool:
        return key in (self._host if self._host is not None else self._device or {})

    def __repr__(self) -> str:
        if self._host is None:
            return f"LazyMetrics(<on device: {sorted(self._device or {})}>)"
        return f"LazyMetrics({self._host!r})"


@dataclass
class TrainingState:
    """Mutable training progress (the reference ``TrainingState``).

    ``metrics`` is the latest step's ``LazyMetrics`` (loss, loss components, ``grad_norm``). ``total_loss`` and
    ``num_batches`` accumulate over all steps and are brought up to date at each metrics sync. ``epoch`` counts
    completed epochs (see ``worldflux.training.callbacks`` for what an epoch is).
    """

    global_step: int = 0
    epoch: int = 0
    best_loss: float = float("inf")
    total_loss: float = 0.0
    num_batches: int = 0
    should_stop: bool = False
    metrics: Mapping[str, float] = field(default_factory=dict)
    train_start_time: float | None = None
    train_end_time: float | None = None
    ttfi_sec: float | None = None


# ---------------------------------------------------------------------------------------------- model


class _ModelAdapter:
    """What the trainer relies on from the ``worldflux`` world-model facade.

    * ``model.core`` — a ``worldflux_jax.family`` model family (train loss, post-update, batch conversion);
    * ``model.params`` / ``model.extras`` — the parameter pytree and the extra state (TD-MPC2 target Q
      parameters; None for DreamerV3), read at train start and replaced after training;
    * ``model.config`` — ``obs_shape``, ``action_dim``, ``model_type``, ``to_dict()`` (for checks and metadata);
    * optional: ``model.to(device)``, ``model.jax_device``, ``model.train()`` / ``model.eval()``,
      ``model.io_contract()``, ``model.validate_batch_contract(batch)``.
    """

    def __init__(self, model: Any) -> None:
        core = getattr(model, "core", None)
        if core is None or not hasattr(model, "params"):
            raise ConfigurationError(
                "Trainer needs a worldflux world model built by create_world_model (with a JAX core and params); "
                f"got {type(model).__name__}"
            )
        self.model = model
        self.family = as_family(core)
        config = getattr(model, "config", None)
        self.config = config
        self.obs_shape = tuple(getattr(config, "obs_shape", ()) or ())
        self.action_dim = getattr(config, "action_dim", None)
        self.model_type = str(getattr(config, "model_type", self.family.family))

    def device(self) -> jax.Device:
        device = getattr(self.model, "jax_device", None)
        if isinstance(device, jax.Device):
            return device
        leaves = jax.tree.leaves(self.model.params)
        if leaves and isinstance(leaves[0], jax.Array):
            return next(iter(leaves[0].devices()))
        return jax.devices()[0]

    def extras(self, params: Any) -> Any:
        extras = getattr(self.model, "extras", None)
        return self.family.init_extras(params) if extras is None else extras

    def config_dict(self) -> dict[str, Any] | None:
        to_dict = getattr(self.config, "to_dict", None)
        if callable(to_dict):
            try:
                return dict(to_dict())
            except Exception:  # noqa: BLE001 - metadata only
                return None
        return None


def _local(x: Any) -> Any:
    """A single-device view of a (replicated) array; host value for arrays spanning other processes."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return x.addressable_data(0)
    return x


@jax.jit
def _fresh_copy(tree: Any) -> Any:
    return jax.tree.map(jnp.copy, tree)


def _copy_tree(tree: Any, device: jax.Device) -> Any:
    """Fresh buffers on ``device`` (the trainer donates its state; the model keeps its own arrays).

    A tree already on ``device`` is copied by one compiled call (hundreds of leaves would otherwise cost one
    ``device_put`` dispatch each, ~1 ms apiece on CPU, at every ``train()`` call of an online loop)."""
    leaves = jax.tree.leaves(tree)
    if leaves and all(
        isinstance(x, jax.Array) and x.is_fully_addressable and x.devices() == {device} for x in leaves
    ):
        return _fresh_copy(tree)
    return jax.tree.map(lambda x: jax.device_put(jnp.asarray(_local(x)), device, may_alias=False), tree)


class _Item:
    __slots__ = ("step", "batch", "new_pass")

    def __init__(self, step: int, batch: Any, new_pass: bool) -> None:
        self.step = step
        self.batch = batch
        self.new_pass = new_pass


def _resolve_mesh(config: TrainingConfig, device_name: str, device: jax.Device) -> Any:
    """The data-parallel mesh (None for one device): every device of the trainer's platform when the device is
    named without an index, across all processes."""
    if jax.process_count() > 1:
        return training_mesh(None, config.effective_batch_size())
    if ":" in device_name:
        return None
    devices = [d for d in jax.devices() if d.platform == device.platform]
    if len(devices) <= 1:
        return None
    return training_mesh(devices, config.effective_batch_size())


# ---------------------------------------------------------------------------------------------- trainer


class Trainer:
    """HuggingFace-style trainer for WorldFlux world models (local mode, one jitted JAX step per batch).

    Args:
        model: a world model from ``create_world_model`` (``DreamerV3WorldModel`` / ``TDMPC2WorldModel``).
        config: the ``TrainingConfig`` (defaults if None).
        callbacks: extra callbacks, run after the default ``LoggingCallback`` and ``CheckpointCallback``.
        optimizer: an optax ``GradientTransformation`` to use instead of ``config.optimizer``.
        scheduler: an optax schedule (``step -> learning rate``) to use instead of ``config.scheduler``.

    Raises:
        ConfigurationError: ``config.model_overrides`` is non-empty, ``config.ema_decay`` is set, the backend is
            not native, the device is unavailable, or ``model`` is not a worldflux world model.
        TypeError: ``optimizer`` / ``scheduler`` of the wrong kind.
        ValueError: ``config.log_interval`` or ``config.save_interval`` not positive (from the default
            callbacks).

    Example:
        >>> trainer = Trainer(model, TrainingConfig(total_steps=1000, batch_size=16))
        >>> trainer.add_callback(ProgressCallback())
        >>> model = trainer.train(buffer)
    """

    # --- issue13: engine dispatch (worldflux.training.engines) -------------------------------------------
    def __new__(cls, model: Any = None, *args: Any, **kwargs: Any) -> Trainer:
        """One ``Trainer`` class, engines chosen by the model: torch models get ``TorchTrainer``, backend
        handles ``DelegatedTrainer`` (both subclasses of ``Trainer``), JAX models this class."""
        if cls is Trainer:
            from .engines import trainer_class_for

            cls = trainer_class_for(kwargs.get("model", model), Trainer)
        return super().__new__(cls)

    # --- end issue13 --------------------------------------------------------------------------------------

    def __init__(
        self,
        model: Any,
        config: TrainingConfig | None = None,
        callbacks: Sequence[Callback] | None = None,
        optimizer: Any = None,
        scheduler: Callable[[Any], Any] | None = None,
    ) -> None:
        config = check_training_config(config)
        self.config = config
        _seed_everything(config.seed)
        if config.backend not in _NATIVE_BACKENDS:
            raise ConfigurationError(
                f"TrainingConfig.backend={config.backend!r} is not available for local training; use "
                "'native_torch' (the in-process JAX path)"
            )
        self.execution_mode = "local"
        self.distributed = initialize_distributed(
            config.coordinator_address,
            config.num_processes,
            config.process_id,
            timeout_s=int(config.distributed_timeout_s),
        )
        self.state = TrainingState()
        self.model = model
        self._adapter = _ModelAdapter(model)
        self.device_name = config.resolve_device()
        move = getattr(model, "to", None)
        if callable(move):
            try:
                move(self.device_name)
            except (ValueError, RuntimeError) as exc:
                raise ConfigurationError(
                    f"TrainingConfig.device={config.device!r} (resolved to {self.device_name!r}) is not available: "
                    f"{exc}"
                ) from exc
        self.device = self._adapter.device()
        self.mesh = _resolve_mesh(config, self.device_name, self.device)
        self.is_main_process = jax.process_index() == 0
        enable_compilation_cache(config.compilation_cache_dir)
        self._output_lock = prepare_output_dir(config.output_dir, owner=self)  # one writer per output_dir
        self._validate_contract()

        # --- issue13: torch optimizer/scheduler -> optax (worldflux.training.torch_to_optax) ---
        from .torch_to_optax import translate_torch_optimization

        optimizer, scheduler = translate_torch_optimization(model, config, optimizer, scheduler)
        # --- end issue13 ---
        self._program = step_program(self._adapter.family, config, optimizer, scheduler, self.mesh)
        check = getattr(model, "validate_batch_contract", None)
        self._feed = BatchFeed(
            self._adapter.obs_shape,
            self._adapter.action_dim,
            self.device,
            self.mesh,
            check if callable(check) else None,
        )
        self.optimizer = self._program.optimizer.tx  # the optax transformation the step applies
        self.custom_optimizer = optimizer is not None
        self.custom_scheduler = scheduler is not None
        self.scheduler = scheduler if scheduler is not None else build_schedule(config)
        self.callbacks = CallbackList(default_callbacks(config))
        for callback in callbacks or []:
            self.callbacks.append(callback)

        self._base_key = self._place(jax.random.key_data(jax.random.key(int(config.seed) % (2**32))))
        self._train_state: TrainState | None = None
        self._synced_params: Any = None
        self._writer = CheckpointWriter()
        self.metrics_synced = False
        self.target_steps: int | None = None
        self.data_mode: str | None = None
        self.degraded_modes: list[str] = []
        self.data_provenance: dict[str, Any] = {}
        self.quality_report: dict[str, Any] | None = None
        self._run_steps = 0
        self._last_sync_step = 0

    # ------------------------------------------------------------------ construction helpers

    def _validate_contract(self) -> None:
        contract_fn = getattr(self.model, "io_contract", None)
        if not callable(contract_fn):
            return
        try:
            contract = contract_fn()
            validate = getattr(contract, "validate", None)
            if callable(validate):
                validate()
        except Exception as exc:  # noqa: BLE001 - reported as the reference does
            raise TrainingError(f"Invalid model I/O contract: {exc}") from exc

    def _place(self, tree: Any) -> Any:
        """Fresh buffers of ``tree`` where the step wants them: replicated over the mesh, or on the device."""
        if self.mesh is not None:
            return replicate(tree, self.mesh)
        return _copy_tree(tree, self.device)

    def _index(self, i: int) -> Any:
        return self._place(np.int32(i)) if self.mesh is not None else np.int32(i)

    def _fresh_guard(self) -> Any:
        return self._place(init_guard(int(self.config.max_nonfinite_steps)))

    # ------------------------------------------------------------------ state <-> model

    def _ensure_state(self) -> TrainState:
        """Create the train state from the model, or adopt parameters the user put into the model since."""
        model_params = self.model.params
        if self._train_state is None:
            params = jax.tree.map(_local, model_params)
            state = TrainState(
                step=np.int32(self.state.global_step),
                params=params,
                opt_state=self.optimizer.init(params),
                extras=self._adapter.extras(params),
                guard=init_guard(int(self.config.max_nonfinite_steps)),
            )
            self._train_state = self._place(state)
            self._synced_params = model_params
        elif model_params is not self._synced_params:
            params = self._place(model_params)
            extras = getattr(self.model, "extras", None)
            extras = self._train_state.extras if extras is None else self._place(extras)
            self._train_state = self._train_state.replace(params=params, extras=extras)
            self._synced_params = model_params
        return self._train_state

    def _write_back(self) -> None:
        """Give the model copies of the trained parameters (and TD-MPC2 target parameters)."""
        state = self._train_state
        if state is None:
            return
        self.model.params = _copy_tree(state.params, self.device)
        if state.extras is not None and hasattr(self.model, "extras"):
            self.model.extras = _copy_tree(state.extras, self.device)
        self._synced_params = self.model.params

    @property
    def trace_count(self) -> int:
        """How many times the train step has been traced (= compiled); one per batch shape. Trainers with the
        same model architecture and built-in optimizer settings share one compiled step."""
        return self._program.trace_count

    def add_callback(self, callback: Callback) -> None:
        """Register a callback after construction (runs after the existing ones)."""
        self.callbacks.append(callback)

    # ------------------------------------------------------------------ data

    def _stream(self, data: Any, stream: int) -> DataStream:
        return DataStream(
            data,
            self.config.effective_batch_size(),
            self.config.effective_sequence_length(),
            self.config.seed,
            stream,
            jax.process_index(),
            jax.process_count(),
        )

    def _convert(self, raw: Any, source: str, signatures: dict[Any, bool]) -> Any:
        """A torch ``Batch``/dict -> the step's placed raw arrays (``worldflux.training.feed.BatchFeed``)."""
        return self._feed.convert(raw, source, signatures)

    # ------------------------------------------------------------------ training

    def train(
        self,
        data: Any,
        num_steps: int | None = None,
        resume_from: str | None = None,
        *,
        final_checkpoint: bool = True,
    ) -> Any:
        """Train until ``global_step`` reaches ``num_steps`` (default ``config.effective_total_steps()``).

        Args:
            data: a BatchProvider (``ReplayBuffer``, anything with ``sample(batch_size, seq_len, device)`` or
                ``sample(BatchRequest)``) or an iterable yielding ``Batch``/dict (re-iterated when exhausted).
            num_steps: absolute target for ``global_step`` (so a resumed run continues up to it).
            resume_from: a checkpoint directory to load first.
            final_checkpoint: write ``output_dir/checkpoint_final.pt`` at the end (a loop that calls ``train``
                many times, such as ``train_online``, saves on its own schedule instead).

        Returns:
            The model, holding the trained parameters.

        Raises:
            TrainingError: invalid batches, a failing step, or NaN/Inf losses/gradients (detected at the next
                log interval; the message names the step range).
            CheckpointError: ``resume_from`` cannot be loaded, or a checkpoint cannot be written.
        """
        config = self.config
        total = check_train_steps(num_steps, config.effective_total_steps())
        self.target_steps = total
        provenance = getattr(data, "data_provenance", None)
        if isinstance(provenance, dict):
            self.data_provenance = dict(provenance)
        if resume_from:
            self.load_checkpoint(resume_from)
        self._ensure_state()
        # A fresh guard per train() call: a run halted by non-finite steps continues from its last finite state.
        self._train_state = self._train_state.replace(guard=self._fresh_guard())
        self._guard_seen = (0, 0.0, 0)
        train_mode = getattr(self.model, "train", None)
        if callable(train_mode):
            try:
                train_mode(True)
            except TypeError:
                pass
        stream = self._stream(data, _TRAIN_STREAM)
        steps_per_epoch = stream.steps_per_epoch()
        signatures: dict[Any, bool] = {}

        def produce(step: int) -> _Item:
            raw, new_pass = stream.fetch(step)
            return _Item(step, self._convert(raw, stream.source, signatures), new_pass)

        hooks = self.callbacks if self.is_main_process else CallbackList([])
        start_step = self.state.global_step
        self._run_steps = 0
        self._last_sync_step = start_step
        self.state.train_start_time = time.time()
        self.state.train_end_time = None
        self.state.ttfi_sec = None
        self.metrics_synced = False
        hooks.on_train_begin(self)
        prefetcher = Prefetcher(
            produce, start_step, total, int(config.prefetch_batches), name="worldflux-trainer-prefetch"
        )
        epoch_open = False
        inflight: collections.deque[Any] = collections.deque()
        interrupted = False
        failed = True
        try:
            while self.state.global_step < total and not self.state.should_stop:
                item = prefetcher.get()
                if steps_per_epoch is not None:
                    self.state.epoch = self.state.global_step // steps_per_epoch
                elif item.new_pass and epoch_open:
                    hooks.on_epoch_end(self)
                    self.state.epoch += 1
                    epoch_open = False
                if not epoch_open:
                    hooks.on_epoch_begin(self)
                    epoch_open = True
                self.metrics_synced = False
                hooks.on_step_begin(self)
                step_number = self.state.global_step + 1
                try:
                    self._train_state, metrics = self._program.step(self._train_state, item.batch, self._base_key)
                except (RuntimeError, ValueError, TypeError) as exc:
                    raise TrainingError(f"Training step failed at step {step_number}: {exc}") from exc
                if self.state.ttfi_sec is None:
                    jax.block_until_ready(metrics["loss"])
                    self.state.ttfi_sec = time.time() - self.state.train_start_time
                self.state.global_step = step_number
                self._run_steps += 1
                inflight.append(metrics.pop(HALT_KEY))
                self.state.metrics = LazyMetrics(metrics)
                if len(inflight) > _MAX_AHEAD and int(_local(inflight.popleft())) > 0:
                    # That step has finished anyway (we bound the queue on it): reading its flag costs no stall.
                    self._halt()
                if step_number % config.log_interval == 0 or step_number >= total:
                    self._sync()
                hooks.on_step_end(self)
                if steps_per_epoch is not None and step_number % steps_per_epoch == 0:
                    hooks.on_epoch_end(self)
                    self.state.epoch = step_number // steps_per_epoch
                    epoch_open = False
            failed = False
        except KeyboardInterrupt:
            interrupted = True
            failed = False
            logger.warning("Training interrupted at step %d", self.state.global_step)
        finally:
            prefetcher.close()
            if failed:
                self._finish_writes_quietly()
        if self._last_sync_step < self.state.global_step:
            try:
                self._sync()
            except TrainingError:
                self._finish_writes_quietly()
                raise
        self.metrics_synced = True
        self.state.train_end_time = time.time()
        if epoch_open:
            hooks.on_epoch_end(self)
        hooks.on_train_end(self)
        self._write_back()
        if self.is_main_process:
            if self._run_steps and final_checkpoint:  # none when this call trained nothing
                self.save_checkpoint(os.path.join(config.output_dir, "checkpoint_final.pt"))
            self._write_manifest()
        if config.auto_quality_check:
            self._quality_check()
        if interrupted:
            logger.info("Training stopped early by KeyboardInterrupt; final checkpoint written")
        return self.model

    def _finish_writes_quietly(self) -> None:
        try:
            self._writer.wait()
        except CheckpointError as exc:
            logger.warning("A background checkpoint save failed: %s", exc)

    def _sync(self) -> None:
        """Fetch the guard (and the current metrics) from the device; report skipped steps, raise on a halt."""
        metrics = self.state.metrics
        device_metrics = metrics._device if isinstance(metrics, LazyMetrics) and not metrics.ready else None
        guard, host_metrics = jax.device_get((jax.tree.map(_local, self._train_state.guard), device_metrics))
        first = self._last_sync_step + 1
        last = self.state.global_step
        self._last_sync_step = last
        if host_metrics is not None:
            self.state.metrics = LazyMetrics(host={k: float(v) for k, v in host_metrics.items()})
        self.metrics_synced = True
        if int(guard.halted_at) > 0:
            self._halt(guard)
        skipped, loss_sum, applied = int(guard.skipped), float(guard.loss_sum), int(guard.applied)
        seen = self._guard_seen
        self._guard_seen = (skipped, loss_sum, applied)
        if skipped > seen[0]:
            nan, inf = self._bad_metrics(guard)
            logger.warning(
                "Skipped %d non-finite step(s) between steps %d and %d (latest at step %d: NaN in %s, Inf in %s); "
                "parameters kept from the last finite step",
                skipped - seen[0], first, last, int(guard.last_bad), nan, inf,
            )
        self.state.total_loss += loss_sum - seen[1]
        self.state.num_batches += applied - seen[2]

    def _bad_metrics(self, guard: Any) -> tuple[list[str], list[str]]:
        keys = self._program.metric_keys
        nan = [k for i, k in enumerate(keys) if int(guard.nan_bits) >> i & 1]
        inf = [k for i, k in enumerate(keys) if int(guard.inf_bits) >> i & 1]
        return nan, inf

    def _halt(self, guard: Any = None) -> None:
        """The step halted on too many consecutive non-finite steps: adopt the last finite state and raise."""
        if guard is None:
            guard = jax.device_get(jax.tree.map(_local, self._train_state.guard))
        self.state.global_step = int(jax.device_get(_local(self._train_state.step)))
        self._last_sync_step = self.state.global_step
        self.metrics_synced = True
        self._write_back()
        self._finish_writes_quietly()
        nan, inf = self._bad_metrics(guard)
        limit = int(guard.limit)
        raise TrainingError(
            f"Numerical instability at step {int(guard.halted_at)}: NaN in losses: {nan}, Inf in losses: {inf} "
            f"({limit} consecutive non-finite step{'s' if limit > 1 else ''}; TrainingConfig.max_nonfinite_steps="
            f"{limit}). The trainer and the model hold the state of step {self.state.global_step}, the last finite "
            "one. Consider lowering learning_rate, setting grad_clip > 0, or checking the data for NaN/Inf values."
        )

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, data: Any, num_batches: int = 10) -> dict[str, float]:
        """Average loss and loss components of the current parameters over ``num_batches`` batches.

        Runs the jitted loss only (no gradients, no update); one device sync at the end.

        Raises:
            TrainingError: ``num_batches <= 0`` or invalid data.
        """
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches <= 0:
            raise TrainingError(f"num_batches must be positive, got {num_batches}")
        state = self._ensure_state()
        stream = self._stream(data, _EVAL_STREAM)
        signatures: dict[Any, bool] = {}
        eval_mode = getattr(self.model, "eval", None)
        if callable(eval_mode):
            eval_mode()
        sums: dict[str, jax.Array] | None = None
        try:
            for i in range(num_batches):
                raw, _ = stream.fetch(i)
                batch = self._convert(raw, stream.source, signatures)
                values = self._program.evaluate(state.params, state.extras, batch, self._base_key, self._index(i))
                sums = values if sums is None else jax.tree.map(jnp.add, sums, values)
        finally:
            train_mode = getattr(self.model, "train", None)
            if callable(train_mode):
                try:
                    train_mode(True)
                except TypeError:
                    pass
        host = jax.device_get(sums)
        return {k: float(v) / num_batches for k, v in host.items()}

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_tree(self) -> dict[str, Any]:
        """What a checkpoint holds: the train state without the per-run guard, and the base key. Under several
        processes, this process's replica (a save then needs no collective)."""
        tree = {"train_state": self._ensure_state().replace(guard=None), "rng_key": self._base_key}
        return jax.tree.map(_local, tree) if jax.process_count() > 1 else tree

    def _checkpoint_metadata(self) -> dict[str, Any]:
        config = self.config
        return {
            "checkpoint_schema_version": CHECKPOINT_SCHEMA_VERSION,
            "global_step": int(self.state.global_step),
            "epoch": int(self.state.epoch),
            "best_loss": float(self.state.best_loss),
            "total_loss": float(self.state.total_loss),
            "num_batches": int(self.state.num_batches),
            "config": config.to_dict(),
            "model_type": self._adapter.model_type,
            "model_config": self._adapter.config_dict(),
            "optimizer": "custom" if self.custom_optimizer else config.optimizer,
            "scheduler": {
                "name": "custom" if self.custom_scheduler else config.scheduler,
                "warmup_steps": int(config.warmup_steps),
                "total_steps": int(config.total_steps),
                "optimizer_steps": int(self.state.global_step) // int(config.gradient_accumulation_steps),
            },
            "gradient_accumulation_steps": int(config.gradient_accumulation_steps),
            "mixed_precision": bool(config.mixed_precision),
            "seed": int(config.seed),
        }

    def save_checkpoint(
        self,
        path: str | os.PathLike[str],
        *,
        wait: bool = True,
        copies: Sequence[str | os.PathLike[str]] = (),
        snapshot: CheckpointSnapshot | None = None,
    ) -> None:
        """Save the full training state to the checkpoint directory ``path`` (orbax; atomic).

        Holds model params, optimizer state (including the scheduler's step count), TD-MPC2 target params, the
        step, the base RNG key, and metadata (global_step, best_loss, TrainingConfig dict, scheduler, model
        config). Arrays are copied to host before this returns; with ``wait=False`` the write finishes in the
        background (the training loop uses this), ``copies`` receive the same checkpoint. ``snapshot`` (from
        ``checkpoint_snapshot()``) writes the state as it was then instead of the current one.

        Raises:
            CheckpointError: the write failed (for ``wait=False``: reported by the next save or ``train`` end).
        """
        if snapshot is None:
            snapshot = self.checkpoint_snapshot()
        self._writer.write(path, snapshot, wait=wait, copies=copies)

    def checkpoint_snapshot(self) -> CheckpointSnapshot:
        """The training state and metadata as they are now, for a later ``save_checkpoint`` (a device-side copy,
        dispatched without waiting for the device; see ``CheckpointWriter.snapshot``).

        Raises:
            NonFiniteParametersError: the parameters hold NaN/Inf (checked by one reduction on the device).
        """
        tree = self._checkpoint_tree()
        if not bool(_all_finite(tree["train_state"].params)):
            raise NonFiniteParametersError(
                f"Refusing to save a checkpoint at step {self.state.global_step}: the parameters hold NaN/Inf values"
            )
        return self._writer.snapshot(tree, self._checkpoint_metadata())

    @property
    def checkpoint_write_seconds(self) -> float:
        """Wall-clock seconds the latest finished background checkpoint write took (0.0 before the first)."""
        return self._writer.last_write_seconds

    def delete_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Delete a checkpoint once the saves queued before this call are done (used for rotation)."""
        self._writer.delete(path)

    def wait_for_checkpoints(self) -> None:
        """Block until every background checkpoint save is finalised."""
        self._writer.wait()

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore a checkpoint written by ``save_checkpoint``: parameters (also written into the model),
        optimizer and scheduler state, TD-MPC2 target parameters, RNG key, global_step, epoch and best_loss.

        Raises:
            CheckpointError: the path is missing, incomplete (no finalisation marker), corrupted, or was saved
                for a different model/optimizer configuration; the message names the path and the problem.
        """
        self._writer.wait()
        template = self._checkpoint_tree()
        if self.mesh is not None and jax.process_count() > 1:
            template = {"train_state": self._train_state.replace(guard=None), "rng_key": self._base_key}
        tree, metadata = restore_checkpoint(path, template)
        self._train_state = tree["train_state"].replace(guard=self._fresh_guard())
        self._base_key = tree["rng_key"]
        self.state.global_step = int(metadata.get("global_step", int(self._train_state.step)))
        self.state.epoch = int(metadata.get("epoch", 0) or 0)
        best = metadata.get("best_loss")
        self.state.best_loss = float("inf") if best is None else float(best)
        self.state.total_loss = float(metadata.get("total_loss", 0.0) or 0.0)
        self.state.num_batches = int(metadata.get("num_batches", 0) or 0)
        for callback in self.callbacks:
            if isinstance(callback, CheckpointCallback):
                callback.best_loss = self.state.best_loss
        self._write_back()

    # ------------------------------------------------------------------ reporting

    def runtime_profile(self) -> dict[str, float | None]:
        """``ttfi_sec`` (train start to the end of the first step, compilation included), ``elapsed_sec`` (train
        start to end, or to now while training) and ``throughput_steps_per_sec`` (steps of the latest ``train``
        call / elapsed); None before training."""
        start = self.state.train_start_time
        if start is None:
            return {"ttfi_sec": None, "elapsed_sec": None, "throughput_steps_per_sec": None}
        end = self.state.train_end_time if self.state.train_end_time is not None else time.time()
        elapsed = max(end - start, 0.0)
        throughput = self._run_steps / elapsed if elapsed > 0 else None
        return {"ttfi_sec": self.state.ttfi_sec, "elapsed_sec": elapsed, "throughput_steps_per_sec": throughput}

    def _support_surface(self) -> str:
        return "supported" if self._adapter.model_type in ("dreamer", "tdmpc2") else "internal"

    def _run_classification(self) -> str:
        if self._support_surface() != "supported":
            return "advanced_evidence"
        if self.config.instant_mode or self.degraded_modes or self.state.global_step < 1000:
            return "contract_smoke"
        return "meaningful_local_training"

    def _write_manifest(self) -> None:
        config = self.config
        manifest: dict[str, Any] = {
            "schema": RUN_MANIFEST_SCHEMA,
            "backend": config.backend,
            "device": self.device_name,
            "global_step": int(self.state.global_step),
            "best_loss": float(self.state.best_loss) if math.isfinite(self.state.best_loss) else None,
            "checkpoint_schema_version": CHECKPOINT_SCHEMA_VERSION,
            "training_config": config.to_dict(),
            "runtime_profile": self.runtime_profile(),
            "train_start_time": self.state.train_start_time,
            "train_end_time": self.state.train_end_time,
            "ttfi_sec": self.state.ttfi_sec,
            "support_surface": self._support_surface(),
            "data_mode": self.data_mode or "unknown",
            **self._engine_record(),
            "degraded_modes": list(self.degraded_modes),
            "run_classification": self._run_classification(),
        }
        if self.data_provenance:
            manifest["data_provenance"] = self.data_provenance
        path = os.path.join(config.output_dir, "run_manifest.json")
        write_json_atomic(path, manifest, default=str)

    def _engine_record(self) -> dict[str, Any]:
        """The engine's own manifest fields: the device mesh of the JAX step."""
        return {"devices": devices_record(self.mesh, self.device)}

    def _parameters_finite(self) -> bool:
        state = self._train_state
        return state is None or bool(_all_finite(jax.tree.map(_local, state.params)))

    def _quality_check(self) -> None:
        """Smoke tier: the last metrics and every parameter are finite. Failures only warn."""
        issues = []
        metrics = dict(self.state.metrics)
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(float(v)))
        if bad:
            issues.append(f"non-finite metrics {bad}")
        if not self._parameters_finite():
            issues.append("non-finite parameters")
        self.quality_report = {"tier": "smoke", "passed": not issues, "issues": issues}
        if issues:
            message = f"Post-training quality check (smoke) failed: {'; '.join(issues)}"
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------------ delegated mode

    def _delegated_only(self, name: str) -> ConfigurationError:
        return ConfigurationError(
            f"Trainer.{name}() is only available for delegated Trainer instances built from an "
            "OfficialBackendHandle; this Trainer trains a native model locally (use train())"
        )

    def submit(self, *, resume_from: str | None = None) -> Any:
        """Delegated mode only; raises ``ConfigurationError`` for a local trainer."""
        raise self._delegated_only("submit")

    def status(self, handle: Any) -> Any:
        """Delegated mode only; raises ``ConfigurationError`` for a local trainer."""
        raise self._delegated_only("status")

    def logs(self, handle: Any) -> Iterator[str]:
        """Delegated mode only; raises ``ConfigurationError`` for a local trainer."""
        raise self._delegated_only("logs")

    def cancel(self, handle: Any) -> None:
        """Delegated mode only; raises ``ConfigurationError`` for a local trainer."""
        raise self._delegated_only("cancel")

    def __repr__(self) -> str:
        return (
            f"Trainer(model={type(self.model).__name__}, global_step={self.state.global_step}, "
            f"device={self.device_name!r}, optimizer={'custom' if self.custom_optimizer else self.config.optimizer!r})"
        )


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _seed_everything(seed: int) -> None:
    """The reference's ``set_seed``: Python ``random``, numpy's global RNG and torch."""
    random.seed(seed)
    np.random.seed(int(seed) % (2**32))
    torch.manual_seed(seed)
