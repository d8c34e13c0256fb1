"""`TrainingConfig` (reference §6.1; SEED 000 / 002 examples): defaults, validation, JSON, derived values."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from worldflux.core.exceptions import ConfigurationError
from worldflux.training import TrainingConfig

DEFAULTS = {
    "total_steps": 100_000,
    "batch_size": 16,
    "sequence_length": 50,
    "instant_mode": False,
    "instant_total_steps": 8,
    "instant_batch_size": 8,
    "instant_sequence_length": 10,
    "learning_rate": 3e-4,
    "grad_clip": 100.0,
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "log_interval": 100,
    "eval_interval": 1000,
    "save_interval": 10000,
    "output_dir": "./outputs",
    "device": "auto",
    "seed": 42,
    "mixed_precision": False,
    "mixed_precision_dtype": "float16",
    "compilation_cache_dir": "auto",
    "backend": "native_torch",
    "backend_profile": "",
    "distributed_mode": "none",
    "distributed_world_size": 1,
    "use_ddp": False,
    "ddp_backend": "nccl",
    "ddp_find_unused_params": False,
    "ddp_gradient_as_bucket_view": True,
    "ddp_broadcast_buffers": True,
    "rank": None,
    "world_size": None,
    "local_rank": None,
    "coordinator_address": None,
    "num_processes": None,
    "process_id": None,
    "distributed_timeout_s": 300,
    "num_workers": 0,
    "prefetch_factor": 2,
    "pin_memory": True,
    "persistent_workers": True,
    "prefetch_batches": 2,
    "num_envs": 1,
    "env_mode": "auto",
    "optimizer": "adamw",
    "scheduler": "none",
    "ema_decay": None,
    "gradient_accumulation_steps": 1,
    "use_gradient_checkpointing": False,
    "checkpoint_layers": [],
    "auto_quality_check": True,
    "max_nonfinite_steps": 1,
    "compile_model": False,
    "profile": False,
    "model_overrides": {},
}


def test_every_documented_field_has_its_default_and_nothing_else_exists():
    config = TrainingConfig()
    assert config.to_dict() == DEFAULTS
    assert list(config.to_dict()) == list(DEFAULTS)  # documented order


def test_mutable_defaults_are_not_shared_between_instances():
    a, b = TrainingConfig(), TrainingConfig()
    a.checkpoint_layers.append("rssm")
    a.model_overrides["x"] = 1
    assert b.checkpoint_layers == [] and b.model_overrides == {}


INVALID = [
    ("total_steps", 0, "total_steps must be positive, got 0"),
    ("batch_size", -1, "batch_size must be positive, got -1"),
    ("sequence_length", 0, "sequence_length must be positive, got 0"),
    ("instant_total_steps", 0, "instant_total_steps must be positive, got 0"),
    ("instant_batch_size", 0, "instant_batch_size must be positive, got 0"),
    ("instant_sequence_length", 0, "instant_sequence_length must be positive, got 0"),
    ("learning_rate", 0.0, "learning_rate must be positive, got 0.0"),
    ("learning_rate", float("nan"), "learning_rate must be positive, got nan"),
    ("learning_rate", float("inf"), "learning_rate must be finite, got inf"),
    ("grad_clip", -1.0, "grad_clip must be non-negative, got -1.0"),
    ("weight_decay", -0.1, "weight_decay must be non-negative, got -0.1"),
    ("warmup_steps", -1, "warmup_steps must be non-negative, got -1"),
    ("num_workers", -1, "num_workers must be non-negative, got -1"),
    ("prefetch_batches", -1, "prefetch_batches must be non-negative, got -1"),
    ("num_envs", 0, "num_envs must be >= 1, got 0"),
    ("distributed_world_size", 0, "distributed_world_size must be >= 1, got 0"),
    ("gradient_accumulation_steps", 0, "gradient_accumulation_steps must be >= 1, got 0"),
    ("optimizer", "x", "optimizer must be 'adamw', 'adam', or 'sgd', got 'x'"),
    ("scheduler", "step", "scheduler must be 'none', 'linear', 'cosine', or 'constant', got 'step'"),
    ("mixed_precision_dtype", "float32", "mixed_precision_dtype must be 'float16' or 'bfloat16', got 'float32'"),
    ("distributed_mode", "fsdp", "distributed_mode must be 'none' or 'ddp', got 'fsdp'"),
    ("ddp_backend", "mpi", "ddp_backend must be 'nccl' or 'gloo', got 'mpi'"),
    ("env_mode", "threads", "env_mode must be 'sync', 'async', or 'auto', got 'threads'"),
    ("backend", "", "backend must be a non-empty string, got ''"),
    ("ema_decay", 1.0, "ema_decay must be in (0, 1), got 1.0"),
    ("ema_decay", 0.0, "ema_decay must be in (0, 1), got 0.0"),
    ("total_steps", 1.5, "total_steps must be an integer, got 1.5 (float)"),
    ("batch_size", "16", "batch_size must be an integer, got '16' (str)"),
    ("instant_mode", "yes", "instant_mode must be True or False, got 'yes'"),
    ("rank", -1, "rank must be non-negative, got -1"),
    ("device", "", "device must be a non-empty string"),
    ("checkpoint_layers", "rssm", "checkpoint_layers must be a list of strings"),
    ("model_overrides", [1], "model_overrides must be a dict"),
]


@pytest.mark.parametrize("field, value, message", INVALID, ids=[f"{f}={v!r}" for f, v, _ in INVALID])
def test_invalid_values_raise_configuration_error_naming_field_and_accepted_values(field, value, message):
    with pytest.raises(ConfigurationError) as info:
        TrainingConfig(**{field: value})
    assert message in str(info.value)
    assert str(info.value).startswith(field)


def test_boundary_values_that_are_valid():
    config = TrainingConfig(
        grad_clip=0.0,
        weight_decay=0.0,
        warmup_steps=0,
        prefetch_batches=0,
        ema_decay=0.99,
        mixed_precision_dtype="bfloat16",
        distributed_mode="ddp",
        ddp_backend="gloo",
        env_mode="async",
        optimizer="sgd",
        scheduler="cosine",
        rank=0,
        world_size=2,
        local_rank=0,
        total_steps=np.int64(5),
        instant_mode=np.bool_(True),
        output_dir=__import__("pathlib").Path("runs") / "a",
    )
    assert config.instant_mode is True and config.output_dir == "runs/a"
    assert TrainingConfig(grad_clip=None).grad_clip is None  # None allowed by the validator
    assert TrainingConfig(learning_rate=1).learning_rate == 1  # ints are valid reals


def test_unknown_field_is_a_type_error():
    with pytest.raises(TypeError):
        TrainingConfig(kl_balance=0.8)
    with pytest.raises(TypeError, match="kl_balance"):
        TrainingConfig.from_dict({"total_steps": 10, "kl_balance": 0.8})


def test_to_dict_from_dict_round_trip_and_deep_copy():
    config = TrainingConfig(total_steps=10, checkpoint_layers=["rssm"], model_overrides={"a": {"b": 1}})
    d = config.to_dict()
    d["checkpoint_layers"].append("x")
    d["model_overrides"]["a"]["b"] = 2
    assert config.checkpoint_layers == ["rssm"] and config.model_overrides == {"a": {"b": 1}}
    assert TrainingConfig.from_dict(config.to_dict()) == config


def test_save_load_json_round_trip(tmp_path):
    config = TrainingConfig(total_steps=1234, batch_size=3, grad_clip=None, ema_decay=0.5, checkpoint_layers=["rssm"])
    path = tmp_path / "nested" / "dir" / "config.json"
    config.save(path)
    on_disk = json.loads(path.read_text())
    assert on_disk["total_steps"] == 1234 and on_disk["grad_clip"] is None
    assert path.read_text().startswith('{\n  "total_steps": 1234')  # indent 2
    assert TrainingConfig.load(path) == config
    assert TrainingConfig.load(str(path)) == config


def test_load_rejects_invalid_values_and_non_objects(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"optimizer": "lion"}))
    with pytest.raises(ConfigurationError, match="optimizer must be"):
        TrainingConfig.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="JSON object"):
        TrainingConfig.load(path)


def test_with_updates_returns_new_validated_instance():
    config = TrainingConfig()
    updated = config.with_updates(batch_size=64, learning_rate=1e-3)
    assert (updated.batch_size, updated.learning_rate) == (64, 1e-3)
    assert (config.batch_size, config.learning_rate) == (16, 3e-4)
    assert updated is not config
    with pytest.raises(ConfigurationError, match="batch_size must be positive, got 0"):
        config.with_updates(batch_size=0)
    with pytest.raises(TypeError):
        config.with_updates(not_a_field=1)


def test_effective_values_follow_instant_mode():
    normal = TrainingConfig(total_steps=500, batch_size=32, sequence_length=64)
    assert (normal.effective_total_steps(), normal.effective_batch_size(), normal.effective_sequence_length()) == (
        500,
        32,
        64,
    )
    instant = normal.with_updates(instant_mode=True)
    assert (instant.effective_total_steps(), instant.effective_batch_size(), instant.effective_sequence_length()) == (
        8,
        8,
        10,
    )
    custom = TrainingConfig(instant_mode=True, instant_total_steps=3, instant_batch_size=2, instant_sequence_length=4)
    assert (custom.effective_total_steps(), custom.effective_batch_size(), custom.effective_sequence_length()) == (
        3,
        2,
        4,
    )


@pytest.mark.parametrize(
    "backend, expected", [("gpu", "cuda"), ("cuda", "cuda"), ("tpu", "tpu"), ("METAL", "mps"), ("cpu", "cpu")]
)
def test_resolve_device_auto_maps_the_jax_backend(monkeypatch, backend, expected):
    import jax

    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert TrainingConfig().resolve_device() == expected


def test_resolve_device_auto_on_this_machine_and_explicit_values_as_is():
    import jax

    expected = {"gpu": "cuda", "tpu": "tpu"}.get(jax.default_backend(), "cpu")
    assert TrainingConfig(device="auto").resolve_device() == expected
    for device in ("cpu", "cuda", "cuda:1", "tpu"):
        assert TrainingConfig(device=device).resolve_device() == device


def test_repr_matches_the_documented_format():
    config = TrainingConfig(total_steps=10, batch_size=4, sequence_length=5, learning_rate=0.001, device="cpu")
    assert repr(config) == (
        "TrainingConfig(total_steps=10, batch_size=4, seq_len=5, instant_mode=False, lr=0.001, device='cpu', "
        "backend='native_torch')"
    )


# ----------------------------------------------------------------------------------- documentation examples


def test_seed_000_training_config_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrainingConfig(total_steps=100_000, batch_size=32)
    config.save("training_config.json")
    loaded = TrainingConfig.load("training_config.json")
    assert loaded == config and loaded.batch_size == 32


def test_seed_002_training_config_example():
    config = TrainingConfig(
        # Duration
        total_steps=100_000,
        # Batch settings
        batch_size=16,
        sequence_length=50,
        # Optimizer
        learning_rate=3e-4,
        weight_decay=0.0,
        grad_clip=100.0,
        # Logging
        log_interval=1000,
    )
    assert config.log_interval == 1000
    # SEED 002 "All Parameters" table defaults
    assert (config.warmup_steps, config.eval_interval, config.save_interval, config.device, config.seed) == (
        0,
        1000,
        10000,
        "auto",
        42,
    )


def test_config_module_does_not_need_jax_until_resolve_device():
    import worldflux.training.config as module

    source = open(module.__file__, encoding="utf-8").read()
    top_level_imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not any("torch" in line or "jax" in line for line in top_level_imports)
    assert isinstance(module, types.ModuleType)
