"""The strict loader of a scaffolded project's ``worldflux.toml`` (what ``worldflux init`` writes and
``worldflux train`` reads), and its JSON schema.

Every section and key is declared once in :data:`SCHEMA`; the loader, the JSON schema
(:func:`json_schema`) and the scaffold template all come from it. Strict, as the configuration guide says:

* an unknown top-level key or section, or an unknown key inside a section, fails early with the key and the
  allowed ones (``Unknown key 'training.totl_steps' in worldflux.toml; allowed keys of [training]: ...``);
* a value of the wrong type or out of range fails with ``section.key``, the value and what is accepted;
* the model must be a DreamerV3 or TD-MPC2 id (the supported newcomer schema accepts only those families).

Errors are :class:`ProjectConfigError` (a ``ConfigurationError`` and a ``ValueError``, as the reference's
loader raises ``ValueError``); the CLI turns them into exit code 2.
"""

from __future__ import annotations

import functools
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldflux.core.exceptions import ConfigurationError

__all__ = [
    "CONFIG_FILENAME",
    "SCHEMA",
    "SUPPORTED_FAMILIES",
    "Key",
    "ProjectConfig",
    "ProjectConfigError",
    "json_schema",
    "load_config",
    "model_family",
    "parse_config",
]

CONFIG_FILENAME = "worldflux.toml"
SUPPORTED_FAMILIES = ("dreamer", "tdmpc2")
_TOP = ""  # section name of the top-level keys


class ProjectConfigError(ConfigurationError, ValueError):
    """``worldflux.toml`` is invalid; the message names the ``section.key`` and what is accepted."""


@dataclass(frozen=True)
class Key:
    """One documented key: its TOML type (``str``/``int``/``float``/``bool``/``list[int]``), default, an
    optional check returning an error text (None when fine), the accepted values and a description."""

    kind: str
    default: Any
    doc: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    exclusive_minimum: bool = False
    maximum: float | None = None


def _k(kind: str, default: Any, doc: str, **kw: Any) -> Key:
    return Key(kind, default, doc, **kw)


# section -> key -> Key. Defaults follow the reference's worldflux.toml (worldflux-api §6.7); keys marked
# "(worldflux-jax)" are additions of this implementation.
SCHEMA: dict[str, dict[str, Key]] = {
    _TOP: {
        "project_name": _k("str", "worldflux-project", "name of the project"),
        "environment": _k("str", "", "environment id the project was created for (a gymnasium id)"),
        "model": _k("str", "tdmpc2:ci", "model id or alias (DreamerV3 / TD-MPC2 families only)"),
        "model_type": _k("str", "", "family of `model` ('dreamer' or 'tdmpc2'); empty = taken from `model`",
                         choices=("", *SUPPORTED_FAMILIES)),
    },
    "architecture": {
        "obs_shape": _k("list[int]", [3, 64, 64], "observation shape (random data; gym runs take the env's)"),
        "action_dim": _k("int", 6, "action dimension (random data; gym runs take the env's)", minimum=1),
        "hidden_dim": _k("int", 32, "hidden width passed to the model config", minimum=1),
    },
    "training": {
        "total_steps": _k("int", 100_000, "training steps (random data) or environment steps (online gym runs)",
                          minimum=1),
        "batch_size": _k("int", 16, "sequences per batch", minimum=1),
        "sequence_length": _k("int", 50, "time steps per sequence", minimum=1),
        "learning_rate": _k("float", 3e-4, "optimizer learning rate", minimum=0.0, exclusive_minimum=True),
        "device": _k("str", "cpu", "'cpu', 'cuda', 'tpu' or 'auto'"),
        "backend": _k("str", "native_torch", "training backend ('native_torch' = 'native_jax': in-process)",
                      choices=("native_torch", "native_jax")),
        "backend_profile": _k("str", "", "backend profile name"),
        "output_dir": _k("str", "./outputs", "checkpoints, run_manifest.json, episodes.jsonl, plots"),
        "seed": _k("int", 42, "random seed (worldflux-jax)", minimum=0),
        "log_interval": _k("int", 100, "steps between console log lines (worldflux-jax)", minimum=1),
        "save_interval": _k("int", 10_000, "steps between periodic checkpoints (worldflux-jax)", minimum=1),
        "distributed_mode": _k("str", "none", "data-parallel mode (worldflux-jax)", choices=("none", "ddp")),
        "distributed_world_size": _k("int", 1, "processes of a data-parallel run (worldflux-jax)", minimum=1),
    },
    "data": {
        "source": _k("str", "random", "'random' (synthetic replay) or 'gym' (a gymnasium environment)",
                     choices=("random", "gym")),
        "num_episodes": _k("int", 100, "episodes of the replay buffer built before training", minimum=1),
        "episode_length": _k("int", 100, "steps per episode of that buffer", minimum=1),
        "buffer_capacity": _k("int", 10_000, "replay buffer capacity in transitions", minimum=1),
        "gym_env": _k("str", "", "gymnasium id for source = 'gym' (empty = the top-level `environment`)"),
        "fallback_to_random": _k("bool", False, "(worldflux-jax) when the environment cannot be made, train on "
                                 "random replay instead of stopping (recorded in run_manifest.json)"),
    },
    "gameplay": {
        "enabled": _k("bool", False, "stream environment frames to the dashboard"),
        "fps": _k("int", 8, "frames per second of that stream", minimum=1, maximum=120),
        "max_frames": _k("int", 512, "frames the dashboard keeps", minimum=1),
    },
    "online_collection": {
        "enabled": _k("bool", False, "gym source: collect with the agent while training (train_online)"),
        "warmup_transitions": _k("int", 512, "random-policy transitions before the first update", minimum=0),
        "collect_steps_per_update": _k("int", 64, "environment steps between update phases", minimum=1),
        "max_episode_steps": _k("int", 100, "episode cut-off in environment steps", minimum=1),
        "updates_per_collect": _k("int", 0, "(worldflux-jax) gradient updates per collection phase; 0 = automatic",
                                  minimum=0),
        "eval_every": _k("int", 0, "(worldflux-jax) environment steps between evaluations; 0 = none", minimum=0),
        "eval_episodes": _k("int", 3, "(worldflux-jax) episodes per evaluation", minimum=1),
    },
    "inference": {
        "horizon": _k("int", 15, "imagination horizon of inference.py", minimum=1),
        "checkpoint": _k("str", "./outputs/checkpoint_best.pt", "checkpoint inference.py loads"),
    },
    "visualization": {
        "enabled": _k("bool", False, "serve the live dashboard while training"),
        "host": _k("str", "127.0.0.1", "dashboard address (loopback only)", choices=("127.0.0.1", "localhost")),
        "port": _k("int", 8765, "dashboard port (0 = any free port)", minimum=0, maximum=65535),
        "refresh_ms": _k("int", 1000, "page refresh period in milliseconds", minimum=50),
        "history_max_points": _k("int", 2000, "points kept per curve", minimum=10),
        "open_browser": _k("bool", False, "open the dashboard in a browser when training starts"),
    },
    "verify": {
        "baseline": _k("str", "official/dreamerv3", "baseline the proof mode compares against"),
        "env": _k("str", "atari/pong", "environment of the proof mode"),
        "backend": _k("str", "native_torch", "backend of the verified run", choices=("native_torch", "native_jax")),
        "backend_profile": _k("str", "", "backend profile"),
        "mode": _k("str", "auto", "'auto', 'quick' or 'proof'", choices=("auto", "quick", "proof")),
        "proof_claim": _k("str", "compare", "claim of the proof mode", choices=("compare",)),
        "allow_official_only": _k("bool", False, "allow a proof that only runs the official implementation"),
    },
    # Documented section names with no keys that worldflux-jax implements.
    "cloud": {},
    "flywheel": {},
}


def _allowed(section: str) -> str:
    keys = sorted(SCHEMA[section])
    return ", ".join(keys) if keys else "(none in worldflux-jax)"


def _name(section: str, key: str) -> str:
    return key if section == _TOP else f"{section}.{key}"


def _check(section: str, key: str, spec: Key, value: Any) -> Any:
    """The value converted to its Python type; ProjectConfigError naming ``section.key`` otherwise."""
    name = _name(section, key)
    kind = spec.kind
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
            ok = math.isfinite(value)
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "list[int]":
        ok = isinstance(value, list) and bool(value) and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
        )
    else:  # pragma: no cover - SCHEMA is fixed
        raise AssertionError(kind)
    if not ok:
        accepted = {
            "list[int]": "a non-empty list of positive integers",
            "float": "a finite number",
            "int": "an integer",
            "str": "a string",
            "bool": "a boolean (true or false)",
        }[kind]
        raise ProjectConfigError(f"{name} must be {accepted}, got {value!r} in {CONFIG_FILENAME}")
    if spec.choices is not None and value not in spec.choices:
        raise ProjectConfigError(
            f"{name} must be one of {list(spec.choices)}, got {value!r} in {CONFIG_FILENAME}"
        )
    if spec.minimum is not None and (value <= spec.minimum if spec.exclusive_minimum else value < spec.minimum):
        relation = ">" if spec.exclusive_minimum else ">="
        raise ProjectConfigError(f"{name} must be {relation} {spec.minimum}, got {value!r} in {CONFIG_FILENAME}")
    if spec.maximum is not None and value > spec.maximum:
        raise ProjectConfigError(f"{name} must be <= {spec.maximum}, got {value!r} in {CONFIG_FILENAME}")
    return value


def model_family(model: str) -> str:
    """The family (``model_type``) of a model id or alias, or ProjectConfigError naming ``model``."""
    return _model_family(model)


@functools.lru_cache(maxsize=64)
def _model_family(model: str) -> str:
    from worldflux.factory import get_config

    try:
        config = get_config(model, obs_shape=(4,), action_dim=1)
    except Exception as exc:  # noqa: BLE001 - every failure is a bad `model` value
        raise ProjectConfigError(f"model {model!r} is not a known model id ({exc})") from exc
    family = str(config.model_type)
    if family not in SUPPORTED_FAMILIES:
        raise ProjectConfigError(
            f"model {model!r} has family {family!r}; the supported newcomer schema only accepts DreamerV3 / TD-MPC2 "
            f"families ({', '.join(SUPPORTED_FAMILIES)}), e.g. 'dreamer:ci' or 'tdmpc2:ci'"
        )
    return family


@dataclass
class ProjectConfig:
    """A validated ``worldflux.toml``: ``values[section][key]`` for every declared key (defaults filled in;
    top-level keys under section ``""``), the file it came from and the project directory."""

    values: dict[str, dict[str, Any]]
    path: Path | None = None
    explicit: set[str] = field(default_factory=set)  # "section.key" names present in the file

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    @property
    def root(self) -> Path:
        """The project directory (relative paths in the file are relative to it)."""
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def model(self) -> str:
        return str(self.values[_TOP]["model"])

    @property
    def family(self) -> str:
        return str(self.values[_TOP]["model_type"])

    @property
    def env_id(self) -> str:
        """The gymnasium id of a gym run: ``[data] gym_env``, else the top-level ``environment``."""
        return str(self.values["data"]["gym_env"] or self.values[_TOP]["environment"])

    def resolve(self, relative: str) -> Path:
        """A path from the file, relative to the project directory."""
        path = Path(os.path.expanduser(relative))
        return path if path.is_absolute() else self.root / path

    def to_dict(self) -> dict[str, Any]:
        """Top-level keys plus one table per section (the TOML layout)."""
        out: dict[str, Any] = dict(self.values[_TOP])
        out.update({section: dict(keys) for section, keys in self.values.items() if section != _TOP})
        return out


def parse_config(data: Mapping[str, Any], path: Path | None = None) -> ProjectConfig:
    """Validate a parsed ``worldflux.toml`` mapping; see the module docstring for the rules."""
    values: dict[str, dict[str, Any]] = {s: {k: v.default for k, v in keys.items()} for s, keys in SCHEMA.items()}
    explicit: set[str] = set()
    sections = [s for s in SCHEMA if s != _TOP]
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in SCHEMA or key == _TOP:
                raise ProjectConfigError(
                    f"Unknown section [{key}] in {CONFIG_FILENAME}; allowed sections: {', '.join(sections)}"
                )
            for sub, sub_value in value.items():
                if sub not in SCHEMA[key]:
                    raise ProjectConfigError(
                        f"Unknown key '{key}.{sub}' in {CONFIG_FILENAME}; allowed keys of [{key}]: {_allowed(key)}"
                    )
                values[key][sub] = _check(key, sub, SCHEMA[key][sub], sub_value)
                explicit.add(f"{key}.{sub}")
        elif key in SCHEMA[_TOP]:
            values[_TOP][key] = _check(_TOP, key, SCHEMA[_TOP][key], value)
            explicit.add(key)
        else:
            raise ProjectConfigError(
                f"Unknown top-level key '{key}' in {CONFIG_FILENAME}; allowed top-level keys: {_allowed(_TOP)}; "
                f"allowed sections: {', '.join(sections)}"
            )
    top = values[_TOP]
    family = model_family(str(top["model"]))
    if top["model_type"] and top["model_type"] != family:
        raise ProjectConfigError(
            f"model_type {top['model_type']!r} does not match model {top['model']!r} (family {family!r})"
        )
    top["model_type"] = family
    if values["data"]["source"] == "gym" and not (values["data"]["gym_env"] or top["environment"]):
        raise ProjectConfigError(
            "data.gym_env is empty and no top-level environment is set; source = 'gym' needs a gymnasium id "
            "(e.g. gym_env = \"CartPole-v1\")"
        )
    return ProjectConfig(values, path, explicit)


def load_config(path: str | os.PathLike[str] = CONFIG_FILENAME) -> ProjectConfig:
    """Read and validate ``worldflux.toml``. Raises ProjectConfigError (missing file, TOML syntax, schema)."""
    file = Path(path)
    if file.is_dir():
        file = file / CONFIG_FILENAME
    if not file.is_file():
        raise ProjectConfigError(
            f"{os.fspath(file)} not found; create a project with `worldflux init` or pass --config PATH"
        )
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProjectConfigError(f"{os.fspath(file)} is not valid TOML: {exc}") from exc
    return parse_config(data, file.resolve())


_JSON_TYPES: dict[str, Callable[[Key], dict[str, Any]]] = {
    "str": lambda k: {"type": "string"},
    "int": lambda k: {"type": "integer"},
    "float": lambda k: {"type": "number"},
    "bool": lambda k: {"type": "boolean"},
    "list[int]": lambda k: {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1},
}


def _key_schema(spec: Key) -> dict[str, Any]:
    out = {**_JSON_TYPES[spec.kind](spec), "default": spec.default, "description": spec.doc}
    if spec.choices is not None:
        out["enum"] = list(spec.choices)
    if spec.minimum is not None:
        out["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = spec.minimum
    if spec.maximum is not None:
        out["maximum"] = spec.maximum
    return out


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of ``worldflux.toml`` (unknown keys rejected, as by the loader)."""
    properties: dict[str, Any] = {key: _key_schema(spec) for key, spec in SCHEMA[_TOP].items()}
    for section, keys in SCHEMA.items():
        if section == _TOP:
            continue
        properties[section] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {key: _key_schema(spec) for key, spec in keys.items()},
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "worldflux.toml",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }
