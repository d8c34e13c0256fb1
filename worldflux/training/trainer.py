"""``Trainer``: the documented WorldFlux training loop, driving one jitted, donated JAX train step.

Local mode only: the model is a ``worldflux`` world model whose JAX core, parameters and extra state the
trainer reads from the facade (``model.core``, ``model.params``, ``model.extras``; see ``_ModelAdapter``). Each
step is ONE compiled call (built from ``worldflux_jax.train.make_train_step``, compiled once per batch shape):
loss, gradients, clipping, the optax update, gradient accumulation, TD-MPC2's target EMA and the NaN/Inf
bookkeeping all run inside it, and the training state is donated (updated in place).

Throughput: the loop does not wait on the device except where it has to.

* Batches come from a background thread that samples the next batches and converts the torch ``Batch`` to
  the core ``Batch`` while the current step runs (``TrainingConfig.prefetch_batches`` deep, default 2; 0
  samples synchronously): on CPU as numpy views of the tensors' memory, which the step reads in place, on
  an accelerator as arrays already transferred to it.
* Step metrics stay on the device. ``trainer.state.metrics`` is a *lazily-materialised* mapping
  (``LazyMetrics``): reading a value fetches that step's metrics. The trainer itself fetches them every
  ``log_interval`` steps and on the last step (``trainer.metrics_synced`` is then True) together with a
  device-side monitor; the bundled callbacks read metrics only then.
* NaN/Inf: every step records on the device whether the loss, a loss component or the gradient norm was
  non-finite; the check runs at each sync and raises ``TrainingError`` naming the step range (and the first
  bad step). Parameters are then not written back to the model.
* To bound memory the host runs at most a few steps ahead of the device (it waits for the step dispatched
  three steps earlier, which never drains the device's queue). The first step is waited for once, to measure
  ``ttfi_sec`` (compilation included).
* Checkpoint saves copy the state to host memory (a device sync, at save steps only) and write in the
  background; ``CheckpointCallback`` compares the loss for ``checkpoint_best.pt`` at the metric syncs.

Other documented behaviour:

* Optimizer: ``TrainingConfig.optimizer`` adamw / adam (L2 weight decay added to the gradients, like
  ``torch.optim.Adam``) / sgd (momentum 0.9) with ``TrainingConfig.learning_rate`` and ``weight_decay`` (the
  training config's, not the model config's), gradient clipping by global norm ``grad_clip`` (0/None
  disables), schedulers none / constant / linear / cosine with linear warmup (the reference's LambdaLR
  factors, counted in optimizer steps, ``progress`` relative to ``config.total_steps``). A user ``optimizer`` is
  any optax ``GradientTransformation`` (clipping is still applied before it); a user ``scheduler`` is an optax
  schedule ``step -> learning rate``: it replaces the config's learning rate/scheduler for the built-in
  optimizers; with a custom optimizer, schedules (config or user) scale its updates by
  ``schedule(step) / config.learning_rate``.
* Gradient accumulation (``gradient_accumulation_steps = N``): ``optax.MultiSteps`` averages N micro-batch
  gradients and applies one update (clipping applies to the average), so N micro-batches of size b give the
  update of one batch of N*b. ``global_step`` counts micro-batches, as in the reference; TD-MPC2's target EMA
  runs on update steps only.
* Mixed precision (``mixed_precision=True``): the networks inside the loss compute in bfloat16 (module inputs
  and parameters cast to bfloat16 per module call, see ``_mixed_precision``; ``mixed_precision_dtype="float16"``
  is also computed in bfloat16: same exponent range as float32, so no loss scaler is needed); master
  parameters, gradients, optimizer state and the returned losses are float32. DreamerV3's GRU weight
  gradients, formed by the core's custom VJP after the time loop, stay float32.
* Determinism: the step's PRNG key is ``fold_in(key(seed), step)``; a data source with an ``rng`` attribute set
  to None (``ReplayBuffer``) samples step ``s`` with ``np.random.default_rng([seed, 0, s])`` (the attribute is
  set around each sample and restored). Together with the checkpointed state this makes resuming exact: N
  steps, save, resume, M steps == N + M steps, bitwise on CPU. Iterables are consumed in order (not
  resumable).
* Checkpoints: see ``worldflux.training.checkpoint`` (orbax directories, asynchronous, atomic). The default
  callbacks are ``LoggingCallback(config.log_interval)`` and ``CheckpointCallback(config.save_interval,
  config.output_dir)``; ``train`` ends with ``checkpoint_final.pt`` and ``run_manifest.json``.
* After ``train`` the model holds the trained parameters (``model.params`` / ``model.extras`` are replaced by
  copies of the trainer's), so ``model.encode(...)`` etc. use them. If the model's ``params`` are replaced
  between ``train`` calls (``load_state_dict``), the trainer adopts them (optimizer state kept).
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import json
import logging
import math
import os
import queue
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from worldflux.core.batch import Batch, BatchRequest
from worldflux.core.exceptions import CheckpointError, ConfigurationError, TrainingError, ValidationError
from worldflux.interop import to_jit_input
from worldflux_jax.train import TrainState, apply_post_update, make_train_step

from .callbacks import Callback, CallbackList, CheckpointCallback, LoggingCallback
from .checkpoint import CHECKPOINT_SCHEMA_VERSION, CheckpointSnapshot, CheckpointWriter, restore_checkpoint
from .config import TrainingConfig
from .param_groups import grouped_optimizer

__all__ = ["LazyMetrics", "Trainer", "TrainingState", "build_optimizer", "build_schedule"]

logger = logging.getLogger("worldflux.training")

RUN_MANIFEST_SCHEMA = "worldflux.training.run_manifest.v1"
_NATIVE_BACKENDS = ("native_torch", "native_jax")
_MAX_AHEAD = 3  # steps the host may dispatch ahead of the device
_TRAIN_STREAM, _EVAL_STREAM = 0, 1


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


# ---------------------------------------------------------------------------------------------- optimizer


def build_schedule(config: TrainingConfig) -> Callable[[Any], Any] | None:
    """The learning-rate *factor* of ``config.scheduler`` as a function of the optimizer step, or None for
    ``"none"``.

    The reference's LambdaLR factors: linear warmup ``(step + 1) / warmup`` while ``step < warmup`` (warmup
    clipped to ``total_steps - 1``), then ``constant`` -> 1, ``linear`` -> ``max(0, 1 - progress)``, ``cosine``
    -> ``0.5 * (1 + cos(pi * progress))`` with ``progress = clip((step - warmup) / (total_steps - warmup), 0,
    1)``.
    """
    kind = config.scheduler
    if kind == "none":
        return None
    total = int(config.total_steps)
    warmup = max(0, min(int(config.warmup_steps), total - 1))
    span = max(1, total - warmup)

    def factor(count: Any) -> Any:
        step = jnp.asarray(count, jnp.float32)
        progress = jnp.clip((step - warmup) / span, 0.0, 1.0)
        if kind == "constant":
            after = jnp.ones_like(step)
        elif kind == "linear":
            after = jnp.maximum(0.0, 1.0 - progress)
        else:  # cosine
            after = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        if warmup > 0:
            return jnp.where(step < warmup, (step + 1.0) / warmup, after)
        return after

    return factor


def _is_transformation(value: Any) -> bool:
    return callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))


def build_optimizer(
    config: TrainingConfig,
    optimizer: Any = None,
    scheduler: Callable[[Any], Any] | None = None,
) -> tuple[optax.GradientTransformation, Any]:
    """The optax transformation the trainer applies, and the ``optax.MultiSteps`` wrapper (or None).

    Order: ``clip_by_global_norm(grad_clip)`` (when > 0) -> the optimizer (-> schedule scaling for a custom
    optimizer), wrapped in ``optax.MultiSteps`` when ``gradient_accumulation_steps > 1``. See the module
    docstring for the semantics of ``optimizer`` and ``scheduler``.

    Raises:
        TypeError: ``optimizer`` is not an optax transformation or ``scheduler`` is not callable.
    """
    if optimizer is not None and not _is_transformation(optimizer):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation (this Trainer updates JAX parameters), got "
            f"{type(optimizer).__name__}; or pass None and set TrainingConfig.optimizer"
        )
    if scheduler is not None and not callable(scheduler):
        raise TypeError(
            f"scheduler must be an optax schedule (a callable step -> learning rate), got {type(scheduler).__name__}"
        )
    lr = float(config.learning_rate)
    factor = build_schedule(config)
    if optimizer is None:
        if scheduler is not None:
            learning_rate: Any = scheduler
        elif factor is not None:
            learning_rate = lambda count: lr * factor(count)  # noqa: E731
        else:
            learning_rate = lr
        core = _builtin_optimizer(config.optimizer, learning_rate, float(config.weight_decay))
    else:
        core = optimizer
        if scheduler is not None:
            core = optax.chain(core, optax.scale_by_schedule(lambda count: scheduler(count) / lr))
        elif factor is not None:
            core = optax.chain(core, optax.scale_by_schedule(factor))
    clip = config.grad_clip
    chain = optax.chain(optax.clip_by_global_norm(float(clip)), core) if clip else core
    accumulation = int(config.gradient_accumulation_steps)
    if accumulation > 1:
        multi = optax.MultiSteps(chain, every_k_schedule=accumulation)
        return multi.gradient_transformation(), multi
    return chain, None


def _builtin_optimizer(name: str, learning_rate: Any, weight_decay: float) -> optax.GradientTransformation:
    if name == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    if name == "adam":
        adam = optax.adam(learning_rate)
        return optax.chain(optax.add_decayed_weights(weight_decay), adam) if weight_decay else adam
    if name == "sgd":
        sgd = optax.sgd(learning_rate, momentum=0.9)
        return optax.chain(optax.add_decayed_weights(weight_decay), sgd) if weight_decay else sgd
    raise ConfigurationError(f"optimizer must be 'adamw', 'adam', or 'sgd', got {name!r}")


def _mixed_precision(loss_fn: Callable[..., Any], dtype: Any) -> Callable[..., Any]:
    """``loss_fn`` with its network computations in ``dtype`` (bfloat16) and float32 losses out.

    The cores cast their inputs to float32 explicitly, so casting the arguments alone would be undone by type
    promotion. Instead every flax module call inside the loss is intercepted (``flax.linen.intercept_methods``):
    floating float32 arguments are cast to ``dtype``, modules with a ``dtype`` attribute left at None (``Dense``,
    ``LayerNorm``, the core's ``MLP``/``GRUCell``) compute in ``dtype`` (casting their float32 parameters inside,
    so gradients and master parameters stay float32), and ``dtype`` outputs are cast back to float32 for the
    code between modules (latent sampling, KL, two-hot and TD losses). Matmuls and convolutions therefore run in
    bfloat16; reductions in the loss in float32. The exception is DreamerV3's filtering loop, whose GRU and
    posterior-net products are written against the parameters directly (``worldflux_jax.rssm``, for speed):
    they stay float32.
    """
    import flax.linen as flax_nn

    def cast_in(x: Any) -> Any:
        return x.astype(dtype) if isinstance(x, jax.Array) and x.dtype == jnp.float32 else x

    def cast_out(x: Any) -> Any:
        return x.astype(jnp.float32) if isinstance(x, jax.Array) and x.dtype == dtype else x

    def interceptor(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        module = context.module
        override = getattr(module, "dtype", jnp.float32) is None
        if override:
            object.__setattr__(module, "dtype", dtype)  # this bound clone only; restored below
        try:
            out = next_fun(*jax.tree.map(cast_in, args), **jax.tree.map(cast_in, kwargs))
        finally:
            if override:
                object.__setattr__(module, "dtype", None)
        return jax.tree.map(cast_out, out)

    def wrapped(params: Any, extras: Any, batch: Any, key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        with flax_nn.intercept_methods(interceptor):
            total, components = loss_fn(params, extras, batch, key)
        return total.astype(jnp.float32), {k: v.astype(jnp.float32) for k, v in components.items()}

    return wrapped


# ---------------------------------------------------------------------------------------------- model


class _ModelAdapter:
    """What the trainer relies on from the ``worldflux`` world-model facade.

    * ``model.core`` — the pure-JAX model with ``train_loss(params, extras, batch, key)`` and, for TD-MPC2,
      ``target_update(train_state)`` (used as ``post_update``) and ``init_target(params)``; its module defines
      the ``Batch`` NamedTuple (``worldflux_jax.dreamer.Batch`` / ``worldflux_jax.tdmpc2.Batch``);
    * ``model.params`` / ``model.extras`` — the parameter pytree and the extra state (TD-MPC2 target Q
      parameters; None for DreamerV3), read at train start and replaced after training;
    * ``model.config`` — ``obs_shape``, ``action_dim``, ``model_type``, ``to_dict()`` (for checks and metadata);
    * optional: ``model.to(device)``, ``model.jax_device``, ``model.train()`` / ``model.eval()``,
      ``model.io_contract()``, ``model.validate_batch_contract(batch)``.
    """

    def __init__(self, model: Any) -> None:
        core = getattr(model, "core", None)
        if core is None or not callable(getattr(core, "train_loss", None)) or not hasattr(model, "params"):
            raise ConfigurationError(
                "Trainer needs a worldflux world model built by create_world_model (with a JAX core exposing "
                f"train_loss, and params); got {type(model).__name__}"
            )
        self.model = model
        self.core = core
        module = inspect.getmodule(type(core))
        batch_cls = getattr(module, "Batch", None)
        if batch_cls is None:
            raise ConfigurationError(f"cannot find the Batch type of the core model {type(core).__name__}")
        self.batch_cls = batch_cls
        self.requires_terminations = "terminations" not in getattr(batch_cls, "_field_defaults", {})
        self.post_update = getattr(core, "target_update", None)
        config = getattr(model, "config", None)
        self.config = config
        self.obs_shape = tuple(getattr(config, "obs_shape", ()) or ())
        self.action_dim = getattr(config, "action_dim", None)
        self.model_type = str(getattr(config, "model_type", getattr(core, "family", "unknown")))

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
        if extras is None and self.post_update is not None and callable(getattr(self.core, "init_target", None)):
            extras = self.core.init_target(params)
        return extras

    def config_dict(self) -> dict[str, Any] | None:
        to_dict = getattr(self.config, "to_dict", None)
        if callable(to_dict):
            try:
                return dict(to_dict())
            except Exception:  # noqa: BLE001 - metadata only
                return None
        return None


def _copy_tree(tree: Any, device: jax.Device) -> Any:
    """Fresh buffers on ``device`` (the trainer donates its state; the model keeps its own arrays)."""
    return jax.tree.map(lambda x: jax.device_put(jnp.asarray(x), device, may_alias=False), tree)


# ---------------------------------------------------------------------------------------------- data


class _Item:
    __slots__ = ("step", "batch", "new_pass")

    def __init__(self, step: int, batch: Any, new_pass: bool) -> None:
        self.step = step
        self.batch = batch
        self.new_pass = new_pass


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _sample_call(data: Any, batch_size: int, seq_len: int) -> Callable[[], Any]:
    """``sample(BatchRequest)`` for a one-parameter ``sample``, else ``sample(batch_size=, seq_len=, device=)``."""
    sample = data.sample
    try:
        params = [
            p
            for p in inspect.signature(sample).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) == 1:
        request = BatchRequest(batch_size=batch_size, seq_len=seq_len, device="cpu")
        return lambda: sample(request)
    return lambda: sample(batch_size=batch_size, seq_len=seq_len, device="cpu")


class _DataStream:
    """Batches for consecutive steps from a provider (``.sample``) or an iterable of Batch/dict."""

    def __init__(self, data: Any, batch_size: int, seq_len: int, seed: int, stream: int) -> None:
        if isinstance(data, Batch | Mapping) or data is None:
            raise TrainingError(
                "data must be a BatchProvider (with sample(...)) or an iterable yielding Batch/dict, got a single "
                f"{type(data).__name__}; wrap a fixed batch in a list"
            )
        self.data = data
        self.seed = int(seed) % (2**32)
        self.stream = stream
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.source = f"{type(data).__name__}.sample()" if callable(getattr(data, "sample", None)) else (
            f"iterator over {type(data).__name__}"
        )
        if callable(getattr(data, "sample", None)):
            self._sample: Callable[[], Any] | None = _sample_call(data, batch_size, seq_len)
            self._seeded = hasattr(data, "rng") and getattr(data, "rng", 0) is None
            self._iterator: Iterator[Any] | None = None
        else:
            try:
                iter(data)
            except TypeError as exc:
                raise TrainingError(
                    f"data must be a BatchProvider (with sample(...)) or an iterable of Batch/dict, got "
                    f"{type(data).__name__}"
                ) from exc
            self._sample = None
            self._seeded = False
            self._iterator = None

    def steps_per_epoch(self) -> int | None:
        if self._sample is None:
            return None
        try:
            size = len(self.data)
        except TypeError:
            return None
        return max(1, int(size) // max(1, self.batch_size * self.seq_len))

    def fetch(self, step: int) -> tuple[Any, bool]:
        """``(raw batch, starts a new pass over an iterable)`` for ``step``."""
        if self._sample is not None:
            if not self._seeded:
                return self._sample(), False
            self.data.rng = np.random.default_rng([self.seed, self.stream, int(step)])
            try:
                return self._sample(), False
            finally:
                self.data.rng = None
        new_pass = False
        if self._iterator is None:
            self._iterator = iter(self.data)
            new_pass = True
        try:
            return next(self._iterator), new_pass
        except StopIteration:
            self._iterator = iter(self.data)
            try:
                return next(self._iterator), True
            except StopIteration:
                raise TrainingError(
                    f"data ({type(self.data).__name__}) is exhausted: re-iterating it yields no batches (pass a "
                    "re-iterable such as a list, or a BatchProvider)"
                ) from None


class _Prefetcher:
    """Runs ``produce(step)`` for ``start <= step < stop`` on a daemon thread, ``depth`` items ahead."""

    def __init__(self, produce: Callable[[int], _Item], start: int, stop: int, depth: int) -> None:
        self._produce = produce
        self._next = start
        self._stop_step = stop
        self._depth = depth
        self._stop = threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._thread: threading.Thread | None = None
        if depth > 0 and start < stop:
            self._thread = threading.Thread(target=self._run, name="worldflux-trainer-prefetch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        for step in range(self._next, self._stop_step):
            if self._stop.is_set():
                return
            try:
                item: Any = self._produce(step)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the training thread
                item = _Failure(exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if isinstance(item, _Failure):
                return

    def get(self) -> _Item:
        if self._thread is None:
            step = self._next
            self._next += 1
            return self._produce(step)
        while True:
            try:
                item = self._queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise TrainingError("the batch prefetch thread stopped without producing a batch") from None
        if isinstance(item, _Failure):
            raise item.error
        return item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._thread.join(timeout=30.0)
            self._thread = None


def _np_dtype(array: Any) -> np.dtype:
    """The numpy dtype of a torch tensor / numpy / JAX array."""
    dtype = array.dtype
    if isinstance(dtype, torch.dtype):
        return torch.empty(0, dtype=dtype).numpy().dtype if dtype != torch.bfloat16 else np.dtype(np.float32)
    return np.dtype(dtype)


def _field(batch: Batch, name: str, container: str) -> Any:
    value = getattr(batch, name, None)
    if value is None:
        value = getattr(batch, container).get(name)
    return value


# ---------------------------------------------------------------------------------------------- compiled step


class _StepProgram:
    """The jitted train step (and jitted evaluation loss) for one model architecture and optimizer.

    ``step(train_state, monitor, batch, key_data) -> (train_state, monitor, metrics)`` donates its first two
    arguments. ``monitor`` accumulates, on the device, the first step with a non-finite metric, bit masks of the
    metrics that were NaN / Inf, the loss sum and the step count.
    """

    def __init__(self, adapter: _ModelAdapter, config: TrainingConfig, optimizer: Any, scheduler: Any) -> None:
        if optimizer is None:
            optimizer = grouped_optimizer(adapter.core, config)  # None unless the model has lr groups
        self.optimizer, multi = build_optimizer(config, optimizer, scheduler)
        loss_fn = adapter.core.train_loss
        if config.mixed_precision:
            loss_fn = _mixed_precision(loss_fn, jnp.bfloat16)
        self.loss_fn = loss_fn
        self.trace_count = 0
        self.metric_keys: list[str] = []
        post = adapter.post_update
        if post is not None and multi is not None:
            raw_post = post

            def post(state: TrainState, components: Any) -> TrainState:  # EMA only on steps that applied an update
                def run(s: TrainState) -> TrainState:
                    return apply_post_update(raw_post, s, components)

                return jax.lax.cond(multi.has_updated(state.opt_state), run, lambda s: s, state)

        inner = make_train_step(loss_fn, self.optimizer, post_update=post, donate=False)

        def step(state: TrainState, monitor: dict[str, jax.Array], batch: Any, key_data: jax.Array) -> Any:
            self.trace_count += 1  # Python side effect: runs once per trace (compilation)
            key = jax.random.fold_in(jax.random.wrap_key_data(key_data), state.step)
            state, metrics = inner(state, batch, key)
            keys = sorted(metrics)[:32]
            self.metric_keys = keys
            nan_bits = jnp.uint32(0)
            inf_bits = jnp.uint32(0)
            for i, name in enumerate(keys):
                value = metrics[name]
                nan_bits = nan_bits | jnp.where(jnp.any(jnp.isnan(value)), jnp.uint32(1 << i), jnp.uint32(0))
                inf_bits = inf_bits | jnp.where(jnp.any(jnp.isinf(value)), jnp.uint32(1 << i), jnp.uint32(0))
            bad = (nan_bits | inf_bits) != 0
            first_bad = jnp.where((monitor["first_bad"] < 0) & bad, state.step, monitor["first_bad"])
            monitor = {
                "first_bad": first_bad,
                "nan_bits": monitor["nan_bits"] | nan_bits,
                "inf_bits": monitor["inf_bits"] | inf_bits,
                "loss_sum": monitor["loss_sum"] + metrics["loss"].astype(jnp.float32),
                "count": monitor["count"] + 1,
            }
            return state, monitor, metrics

        def evaluate(params: Any, extras: Any, batch: Any, key_data: jax.Array, index: jax.Array) -> Any:
            key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(key_data), 2**31 - 1), index)
            total, components = loss_fn(params, extras, batch, key)
            return {"loss": total, **components}

        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.evaluate = jax.jit(evaluate)


_PROGRAMS: collections.OrderedDict[Any, _StepProgram] = collections.OrderedDict()
_PROGRAMS_LOCK = threading.Lock()
_PROGRAM_CACHE_SIZE = 8


def _program_key(adapter: _ModelAdapter, config: TrainingConfig) -> Any:
    """What determines the compiled step for built-in optimizers: the core's type and config, and the
    optimizer/precision settings."""
    core = adapter.core
    core_config = getattr(core, "config", None)
    if dataclasses.is_dataclass(core_config) and not isinstance(core_config, type):
        described = json.dumps(dataclasses.asdict(core_config), sort_keys=True, default=str)
    else:
        return None
    fields = (
        config.optimizer,
        float(config.learning_rate),
        float(config.weight_decay),
        None if config.grad_clip is None else float(config.grad_clip),
        config.scheduler,
        # The schedule depends on these only when there is one.
        None if config.scheduler == "none" else int(config.warmup_steps),
        None if config.scheduler == "none" else int(config.total_steps),
        int(config.gradient_accumulation_steps),
        bool(config.mixed_precision),
    )
    return (type(core), type(core_config), described, repr(getattr(core, "scan_unroll", None)), fields)


def _step_program(adapter: _ModelAdapter, config: TrainingConfig, optimizer: Any, scheduler: Any) -> _StepProgram:
    """A shared ``_StepProgram`` for built-in optimizer settings (so a new Trainer for the same model
    architecture, e.g. to resume, does not recompile); a fresh one for a custom optimizer or scheduler."""
    if optimizer is not None or scheduler is not None:
        return _StepProgram(adapter, config, optimizer, scheduler)
    key = _program_key(adapter, config)
    if key is None:
        return _StepProgram(adapter, config, None, None)
    with _PROGRAMS_LOCK:
        program = _PROGRAMS.get(key)
        if program is not None:
            _PROGRAMS.move_to_end(key)
            return program
    program = _StepProgram(adapter, config, None, None)
    with _PROGRAMS_LOCK:
        _PROGRAMS[key] = program
        while len(_PROGRAMS) > _PROGRAM_CACHE_SIZE:
            _PROGRAMS.popitem(last=False)
    return program


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

    def __init__(
        self,
        model: Any,
        config: TrainingConfig | None = None,
        callbacks: Sequence[Callback] | None = None,
        optimizer: Any = None,
        scheduler: Callable[[Any], Any] | None = None,
    ) -> None:
        config = config if config is not None else TrainingConfig()
        if not isinstance(config, TrainingConfig):
            raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
        self.config = config
        _seed_everything(config.seed)
        if config.model_overrides:
            raise ConfigurationError(
                "TrainingConfig.model_overrides is not applied by Trainer. Pass model overrides at model creation "
                "time."
            )
        if config.ema_decay is not None:
            raise ConfigurationError("TrainingConfig.ema_decay is not implemented yet. Set ema_decay=None.")
        if config.backend not in _NATIVE_BACKENDS:
            raise ConfigurationError(
                f"TrainingConfig.backend={config.backend!r} is not available for local training; use "
                "'native_torch' (the in-process JAX path)"
            )
        self.execution_mode = "local"
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
        os.makedirs(config.output_dir, exist_ok=True)
        self._validate_contract()

        self._program = _step_program(self._adapter, config, optimizer, scheduler)
        self.optimizer = self._program.optimizer
        self.custom_optimizer = optimizer is not None
        self.custom_scheduler = scheduler is not None
        self.scheduler = scheduler if scheduler is not None else build_schedule(config)
        self.callbacks = CallbackList(
            [
                LoggingCallback(log_interval=config.log_interval),
                CheckpointCallback(save_interval=config.save_interval, output_dir=config.output_dir),
            ]
        )
        for callback in callbacks or []:
            self.callbacks.append(callback)

        self._base_key = jax.device_put(jax.random.key_data(jax.random.key(int(config.seed) % (2**32))), self.device)
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

    def _fresh_monitor(self) -> dict[str, jax.Array]:
        values = {
            "first_bad": np.int32(-1),
            "nan_bits": np.uint32(0),
            "inf_bits": np.uint32(0),
            "loss_sum": np.float32(0.0),
            "count": np.int32(0),
        }
        return jax.device_put(values, self.device)

    # ------------------------------------------------------------------ state <-> model

    def _ensure_state(self) -> TrainState:
        """Create the train state from the model, or adopt parameters the user put into the model since."""
        model_params = self.model.params
        if self._train_state is None:
            params = _copy_tree(model_params, self.device)
            extras = self._adapter.extras(params)
            extras = None if extras is None else _copy_tree(extras, self.device)
            state = TrainState(
                step=jnp.asarray(self.state.global_step, jnp.int32),
                params=params,
                opt_state=self.optimizer.init(params),
                extras=extras,
            )
            self._train_state = jax.device_put(state, self.device)
            self._synced_params = model_params
        elif model_params is not self._synced_params:
            params = _copy_tree(model_params, self.device)
            extras = getattr(self.model, "extras", None)
            extras = self._train_state.extras if extras is None else _copy_tree(extras, self.device)
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

    def _stream(self, data: Any, stream: int) -> _DataStream:
        return _DataStream(
            data,
            self.config.effective_batch_size(),
            self.config.effective_sequence_length(),
            self.config.seed,
            stream,
        )

    def _convert(self, raw: Any, source: str, signatures: dict[Any, bool]) -> Any:
        """torch ``Batch``/dict -> the core ``Batch`` for the step: numpy views of CPU tensors when the trainer
        runs on CPU (no copy), JAX arrays on the trainer's device otherwise; validated whenever its shape
        signature is new."""
        adapter = self._adapter
        if isinstance(raw, adapter.batch_cls):
            return jax.device_put(raw, self.device)
        if isinstance(raw, Mapping):
            try:
                raw = Batch.from_dict(raw)
            except TypeError as exc:
                raise TrainingError(f"{source} returned a dict that is not a Batch: {exc}") from exc
        if not isinstance(raw, Batch):
            raise TrainingError(f"{source} must return Batch or dict, got {type(raw).__name__}")
        obs = raw.obs if raw.obs is not None else raw.inputs.get("obs")
        if isinstance(obs, Mapping):
            obs = obs.get("obs")
        fields = {
            "obs": obs,
            "actions": _field(raw, "actions", "inputs"),
            "rewards": _field(raw, "rewards", "targets"),
            "terminations": _field(raw, "terminations", "targets"),
        }
        missing = [k for k in ("obs", "actions", "rewards") if fields[k] is None]
        if missing:
            raise TrainingError(f"Batch is missing required keys for model contract: {missing}")
        signature = tuple(
            (k, tuple(v.shape), str(v.dtype)) if v is not None else (k, None, None) for k, v in fields.items()
        )
        if signature not in signatures:
            self._validate_batch(raw, fields)
            signatures[signature] = True
        # On CPU a torch/numpy batch is handed to the step as numpy views (XLA reads them in place; a DLPack
        # import costs ~50 us per array); on accelerators it becomes device arrays here, off the step loop.
        arrays = {k: None if v is None else to_jit_input(v, device=self.device) for k, v in fields.items()}
        actions = arrays["actions"]
        if actions.ndim == 2 and jnp.issubdtype(actions.dtype, jnp.integer) and adapter.action_dim:
            arrays["actions"] = jax.nn.one_hot(actions, int(adapter.action_dim), dtype=jnp.float32)  # class indices
        if arrays["terminations"] is None and adapter.requires_terminations:
            arrays["terminations"] = jax.device_put(jnp.zeros(arrays["rewards"].shape, jnp.float32), self.device)
        return adapter.batch_cls(**arrays)

    def _validate_batch(self, raw: Batch, fields: Mapping[str, Any]) -> None:
        adapter = self._adapter
        obs = fields["obs"]
        if len(obs.shape) < 3:
            raise TrainingError(
                f"Invalid batch for training: batch.obs must have shape (B, T, *obs_shape), got {tuple(obs.shape)}"
            )
        b, t = int(obs.shape[0]), int(obs.shape[1])
        if adapter.obs_shape and tuple(obs.shape[2:]) != adapter.obs_shape:
            raise TrainingError(
                f"Invalid batch for training: batch.obs has shape {tuple(obs.shape)}, expected (B, T, "
                f"*obs_shape) with obs_shape={adapter.obs_shape}"
            )
        actions = fields["actions"]
        expected_actions = (b, t) + ((int(adapter.action_dim),) if adapter.action_dim else tuple(actions.shape[2:]))
        is_index = len(actions.shape) == 2 and np.issubdtype(_np_dtype(actions), np.integer)
        if tuple(actions.shape) != expected_actions and not (is_index and tuple(actions.shape) == (b, t)):
            raise TrainingError(
                f"Invalid batch for training: batch.actions has shape {tuple(actions.shape)}, expected "
                f"{expected_actions}"
            )
        for name in ("rewards", "terminations"):
            value = fields[name]
            if value is not None and tuple(value.shape) != (b, t):
                raise TrainingError(
                    f"Invalid batch for training: batch.{name} has shape {tuple(value.shape)}, expected {(b, t)}"
                )
        check = getattr(self.model, "validate_batch_contract", None)
        if callable(check):
            try:
                check(raw)
            except ValidationError as exc:
                raise TrainingError(f"Batch violates model I/O contract: {exc}") from exc

    # ------------------------------------------------------------------ training

    def train(self, data: Any, num_steps: int | None = None, resume_from: str | None = None) -> Any:
        """Train until ``global_step`` reaches ``num_steps`` (default ``config.effective_total_steps()``).

        Args:
            data: a BatchProvider (``ReplayBuffer``, anything with ``sample(batch_size, seq_len, device)`` or
                ``sample(BatchRequest)``) or an iterable yielding ``Batch``/dict (re-iterated when exhausted).
            num_steps: absolute target for ``global_step`` (so a resumed run continues up to it).
            resume_from: a checkpoint directory to load first.

        Returns:
            The model, holding the trained parameters.

        Raises:
            TrainingError: invalid batches, a failing step, or NaN/Inf losses/gradients (detected at the next
                log interval; the message names the step range).
            CheckpointError: ``resume_from`` cannot be loaded, or a checkpoint cannot be written.
        """
        config = self.config
        total = int(num_steps) if num_steps else int(config.effective_total_steps())
        self.target_steps = total
        provenance = getattr(data, "data_provenance", None)
        if isinstance(provenance, dict):
            self.data_provenance = dict(provenance)
        if resume_from:
            self.load_checkpoint(resume_from)
        self._ensure_state()
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

        start_step = self.state.global_step
        self._run_steps = 0
        self._last_sync_step = start_step
        self._monitor = self._fresh_monitor()
        self.state.train_start_time = time.time()
        self.state.train_end_time = None
        self.state.ttfi_sec = None
        self.metrics_synced = False
        self.callbacks.on_train_begin(self)
        prefetcher = _Prefetcher(produce, start_step, total, int(config.prefetch_batches))
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
                    self.callbacks.on_epoch_end(self)
                    self.state.epoch += 1
                    epoch_open = False
                if not epoch_open:
                    self.callbacks.on_epoch_begin(self)
                    epoch_open = True
                self.metrics_synced = False
                self.callbacks.on_step_begin(self)
                step_number = self.state.global_step + 1
                try:
                    self._train_state, self._monitor, metrics = self._program.step(
                        self._train_state, self._monitor, item.batch, self._base_key
                    )
                except (RuntimeError, ValueError, TypeError) as exc:
                    raise TrainingError(f"Training step failed at step {step_number}: {exc}") from exc
                if self.state.ttfi_sec is None:
                    jax.block_until_ready(metrics["loss"])
                    self.state.ttfi_sec = time.time() - self.state.train_start_time
                self.state.global_step = step_number
                self._run_steps += 1
                self.state.metrics = LazyMetrics(metrics)
                inflight.append(metrics["loss"])
                if len(inflight) > _MAX_AHEAD:
                    jax.block_until_ready(inflight.popleft())
                if step_number % config.log_interval == 0 or step_number >= total:
                    self._sync()
                self.callbacks.on_step_end(self)
                if steps_per_epoch is not None and step_number % steps_per_epoch == 0:
                    self.callbacks.on_epoch_end(self)
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
            self.callbacks.on_epoch_end(self)
        self.callbacks.on_train_end(self)
        self._write_back()
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
        """Fetch the monitor (and the current metrics) from the device; raise on NaN/Inf."""
        metrics = self.state.metrics
        device_metrics = metrics._device if isinstance(metrics, LazyMetrics) and not metrics.ready else None
        monitor, host_metrics = jax.device_get((self._monitor, device_metrics))
        self._monitor = self._fresh_monitor()
        first = self._last_sync_step + 1
        last = self.state.global_step
        self._last_sync_step = last
        if host_metrics is not None:
            self.state.metrics = LazyMetrics(host={k: float(v) for k, v in host_metrics.items()})
        self.metrics_synced = True
        if int(monitor["first_bad"]) >= 0:
            keys = self._program.metric_keys
            nan = [k for i, k in enumerate(keys) if int(monitor["nan_bits"]) >> i & 1]
            inf = [k for i, k in enumerate(keys) if int(monitor["inf_bits"]) >> i & 1]
            raise TrainingError(
                f"Numerical instability between steps {first} and {last} (first at step "
                f"{int(monitor['first_bad'])}): NaN in losses: {nan}, Inf in losses: {inf}. Consider lowering "
                "learning_rate, setting grad_clip > 0, or checking the data for NaN/Inf values."
            )
        self.state.total_loss += float(monitor["loss_sum"])
        self.state.num_batches += int(monitor["count"])

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
                values = self._program.evaluate(state.params, state.extras, batch, self._base_key, jnp.int32(i))
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
        return {"train_state": self._ensure_state(), "rng_key": self._base_key}

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
        dispatched without waiting for the device; see ``CheckpointWriter.snapshot``)."""
        return self._writer.snapshot(self._checkpoint_tree(), self._checkpoint_metadata())

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
        tree, metadata = restore_checkpoint(path, self._checkpoint_tree())
        self._train_state = tree["train_state"]
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
            "degraded_modes": list(self.degraded_modes),
            "run_classification": self._run_classification(),
        }
        if self.data_provenance:
            manifest["data_provenance"] = self.data_provenance
        path = os.path.join(config.output_dir, "run_manifest.json")
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, default=str)
        os.replace(tmp, path)

    def _quality_check(self) -> None:
        """Smoke tier: the last metrics and every parameter are finite. Failures only warn."""
        issues = []
        metrics = dict(self.state.metrics)
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(float(v)))
        if bad:
            issues.append(f"non-finite metrics {bad}")
        state = self._train_state
        if state is not None and not bool(_all_finite(state.params)):
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
