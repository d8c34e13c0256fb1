"""The ``worldflux`` command line (typer + rich): init, train, eval, models, doctor, verify, config schema.

Exit codes: 0 success, 2 usage or configuration errors (the message names the flag or ``section.key``),
1 runtime failures. ``--verbose`` shows library logging (orbax/absl/JAX) and tracebacks.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from worldflux.config_loader import (
    CONFIG_FILENAME,
    SCHEMA,
    SUPPORTED_FAMILIES,
    ProjectConfigError,
    json_schema,
    load_config,
)

from .train_run import CLIError

__all__ = ["app", "main"]

app = typer.Typer(
    name="worldflux",
    help="WorldFlux world models (DreamerV3, TD-MPC2) on JAX: create a project, train it, evaluate it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="worldflux.toml utilities.", no_args_is_help=True)
app.add_typer(config_app, name="config")

console = Console()
err_console = Console(stderr=True)
_STATE = {"verbose": False}
F = TypeVar("F", bound=Callable[..., Any])

# Library loggers that talk at INFO/WARNING during checkpointing and backend start-up.
_CHATTY_LOGGERS = ("absl", "orbax", "jax._src.xla_bridge", "jax._src.distributed", "tensorstore")


def _quiet_libraries(verbose: bool) -> None:
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs and tracebacks.")] = False,
) -> None:
    _STATE["verbose"] = verbose
    _quiet_libraries(verbose)


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _guarded(fn: F) -> F:
    """Map exceptions to exit codes: config errors -> 2, CLIError -> its code, anything else -> 1."""
    from worldflux.core.exceptions import ConfigurationError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (ProjectConfigError, ConfigurationError) as exc:
            raise _fail(str(exc), 2) from None
        except CLIError as exc:
            raise _fail(str(exc), exc.code) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", 130) from None
        except Exception as exc:  # noqa: BLE001 - every other failure is a runtime failure (exit 1)
            if _STATE["verbose"]:
                err_console.print_exception()
            raise _fail(f"{type(exc).__name__}: {exc}", 1) from None

    return wrapper  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ init


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _prompt(value: Any, text: str, default: Any) -> Any:
    """The flag's value; else, in a terminal, ask (with `default`); else `default`."""
    if value is not None:
        return value
    if _interactive():
        return typer.prompt(text, default=default)
    return default


@app.command()
@_guarded
def init(
    path: Annotated[Path, typer.Argument(help="Project directory (created if missing).")] = Path("."),
    env: Annotated[str | None, typer.Option("--env", help="gymnasium environment id, e.g. Pendulum-v1.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model id: tdmpc2:ci, dreamer:ci, ...")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Training data: 'gym' or 'random'.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help=r"\[training] total_steps.")] = None,
    online: Annotated[bool, typer.Option("--online/--no-online", help="Collect with the agent while training "
                                         "(gym source) or train on random-policy episodes.")] = True,
    dashboard: Annotated[bool, typer.Option("--dashboard/--no-dashboard", help="Serve the live dashboard.")] = True,
    gameplay: Annotated[bool, typer.Option("--gameplay/--no-gameplay", help="Stream env frames to it.")] = True,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Dashboard port (0 = any free).")] = 8765,
    project_name: Annotated[str | None, typer.Option("--project-name", help="Project name.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing project.")] = False,
) -> None:
    """Create a project: worldflux.toml, dataset.py, local_dashboard.py and inference.py."""
    from . import envs
    from .scaffold import existing_project_files, write_project

    existing = existing_project_files(path)
    if existing and not force:
        raise CLIError(f"{path} already holds a project ({', '.join(existing)}); pass --force to overwrite", code=2)
    source = _prompt(source, "Training data source (gym or random)", "gym" if env or source is None else "random")
    if source not in ("gym", "random"):
        raise CLIError(f"--source must be 'gym' or 'random', got {source!r}", code=2)
    values: dict[str, dict[str, Any]] = {s: {} for s in SCHEMA}
    if source == "gym":
        env = _prompt(env, "gymnasium environment id", "Pendulum-v1")
        try:
            probe = envs.make_env(env)
            info = envs.space_info(probe)
            probe.close()
        except envs.EnvUnavailable as exc:
            raise CLIError(f"--env {env!r}: {exc}", code=2 if exc.unknown_id else 1) from exc
        except ValueError as exc:
            raise CLIError(f"--env {env!r}: {exc}", code=2) from exc
        values["architecture"] = {"obs_shape": list(info.obs_shape), "action_dim": info.action_dim}
        values["data"] = {"source": "gym", "gym_env": env, "num_episodes": 20, "episode_length": 200,
                          "buffer_capacity": 100_000}
        values["online_collection"] = {"enabled": online, "warmup_transitions": 500,
                                       "collect_steps_per_update": 50, "max_episode_steps": 200}
        default_steps = 3000 if online else 1000
    else:
        values["architecture"] = {"obs_shape": [8], "action_dim": 2}
        values["data"] = {"source": "random", "num_episodes": 50, "episode_length": 64, "buffer_capacity": 5000}
        default_steps = 1000
    model = _prompt(model, "Model (tdmpc2:ci, dreamer:ci, ...)", "tdmpc2:ci")
    values[""] = {"project_name": project_name or path.resolve().name, "environment": env or "", "model": model}
    values["architecture"]["hidden_dim"] = 64
    values["training"] = {"total_steps": steps or default_steps, "batch_size": 16, "sequence_length": 16,
                          "learning_rate": 3e-4, "log_interval": 50, "save_interval": 500}
    values["visualization"] = {"enabled": dashboard, "port": port}
    values["gameplay"] = {"enabled": gameplay and source == "gym"}
    written = write_project(path, values)
    console.print(f"created {', '.join(p.name for p in written)} in {path}")
    console.print(f"next: [bold]cd {path} && worldflux train[/bold]")


# ------------------------------------------------------------------------------------------------ train


@app.command()
@_guarded
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="Project file.")] = Path(CONFIG_FILENAME),
    steps: Annotated[int | None, typer.Option("--steps", min=1, help=r"Override \[training] total_steps.")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Checkpoint to continue from.")] = None,
    keep_serving: Annotated[bool | None, typer.Option(
        "--keep-serving/--exit-when-done",
        help="Keep the dashboard up after training until Ctrl+C (default: when run in a terminal).")] = None,
) -> None:
    """Train the project as worldflux.toml says (collect, train, checkpoint, dashboard)."""
    from .train_run import train_project

    project = load_config(config)
    if keep_serving is None:
        keep_serving = sys.stdin.isatty() and sys.stdout.isatty()
    summary = train_project(project, steps=steps, resume=resume, console=console, keep_serving=keep_serving)
    degraded = f", degraded: {', '.join(summary.degraded_modes)}" if summary.degraded_modes else ""
    console.print(
        f"done in {summary.seconds:.1f}s: {summary.train_steps} train steps, {summary.env_steps} env steps, "
        f"{summary.episodes} episodes (data mode {summary.data_mode}{degraded})",
        markup=False,
    )
    listing = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in summary.output_dir.iterdir()))
    console.print(f"outputs in {summary.output_dir}: {listing}", markup=False)


# ------------------------------------------------------------------------------------------------ eval


def _agent_action(action: Any, info: Any) -> Any:
    import numpy as np

    from .envs import to_env_action

    array = np.asarray(action, np.float32).reshape(-1)
    if info.discrete and array.size == 1:
        return int(array[0])
    return to_env_action(array, info)


@app.command("eval")
@_guarded
def eval_(
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="outputs/model or a Trainer checkpoint.")],
    episodes: Annotated[int, typer.Option("--episodes", min=1, help="Episodes to run.")] = 5,
    config: Annotated[Path, typer.Option("--config", "-c", help="Project file.")] = Path(CONFIG_FILENAME),
    seed: Annotated[int, typer.Option("--seed", help="First episode seed.")] = 10_000,
) -> None:
    """Run the trained agent in the project's environment and print the episode returns."""
    import numpy as np

    from . import envs
    from .project import load_trained_model

    project = load_config(config)
    if not project.env_id:
        raise CLIError("eval needs an environment: set data.gym_env (or the top-level environment)", code=2)
    try:
        from worldflux.agents import make_agent
    except ImportError as exc:
        raise CLIError(f"eval needs worldflux.agents.make_agent, which this installation lacks ({exc})") from exc
    try:
        model, _, _ = load_trained_model(project, checkpoint)
    except FileNotFoundError as exc:
        raise CLIError(f"--checkpoint: {exc}", code=2) from exc
    try:
        env = envs.make_env(project.env_id, max_episode_steps=project["online_collection"]["max_episode_steps"])
    except envs.EnvUnavailable as exc:
        raise CLIError(f"data.gym_env = {project.env_id!r}: {exc}", code=2 if exc.unknown_id else 1) from exc
    info = envs.space_info(env)
    agent = make_agent(model)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        initial = getattr(agent, "initial_state", None)
        agent_state = initial(1) if callable(initial) else None
        reset = np.ones(1, bool)
        total, done = 0.0, False
        while not done:
            batch_obs = np.asarray(envs.model_obs(obs, info), np.float32)[None]
            actions, agent_state = agent.act(batch_obs, agent_state, reset, explore=False)
            reset = np.zeros(1, bool)
            obs, reward, terminated, truncated, _ = env.step(_agent_action(np.asarray(actions)[0], info))
            total += float(reward)
            done = bool(terminated or truncated)
        returns.append(total)
        console.print(f"episode {episode}: return {total:.2f}")
    env.close()
    console.print(f"mean return over {episodes} episodes: {float(np.mean(returns)):.2f} "
                  f"(std {float(np.std(returns)):.2f})")


# ------------------------------------------------------------------------------------------------ info


@app.command()
@_guarded
def models(
    all_models: Annotated[bool, typer.Option("--all", help="Also configuration-only families.")] = False,
) -> None:
    """Model ids, their aliases and parameter counts."""
    from worldflux.factory import MODEL_ALIASES, list_models, resolve_alias

    catalog = list_models(verbose=True, surface="all")
    aliases: dict[str, list[str]] = {}
    for alias in MODEL_ALIASES:
        aliases.setdefault(resolve_alias(alias), []).append(alias)
    table = Table(title="worldflux models")
    for column in ("id", "family", "parameters", "aliases", "description"):
        table.add_column(column)
    assert isinstance(catalog, dict)
    for model_id, info in catalog.items():
        if not all_models and info.get("type") not in SUPPORTED_FAMILIES:
            continue
        table.add_row(model_id, str(info.get("type")), str(info.get("params")), ", ".join(aliases.get(model_id, [])),
                      str(info.get("description")))
    console.print(table)


@app.command()
@_guarded
def doctor() -> None:
    """JAX backend and devices, package versions and which optional extras are present."""
    import importlib.metadata as md
    import importlib.util
    import platform
    import shutil

    import jax

    table = Table(title="worldflux doctor", show_header=False)
    table.add_row("python", platform.python_version())
    table.add_row("jax backend", jax.default_backend())
    table.add_row("devices", ", ".join(str(d) for d in jax.devices()))
    for package in ("worldflux-jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "torch",
                    "typer", "rich"):
        try:
            version = md.version(package)
        except md.PackageNotFoundError:
            version = "not installed"
        table.add_row(package, version)
    extras = {"gymnasium": "gymnasium", "mujoco": "mujoco", "box2d": "Box2D", "matplotlib": "matplotlib",
              "pygame (rendering)": "pygame", "selenium": "selenium", "tensorboard": "tensorboard"}
    for label, module in extras.items():
        table.add_row(f"extra: {label}", "present" if importlib.util.find_spec(module) else "missing")
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    table.add_row("browser (dashboard tests)", browser or "missing")
    console.print(table)


@app.command()
@_guarded
def verify(
    quick: Annotated[bool, typer.Option("--quick", help=r"The quick checks (\[verify] mode = 'quick').")] = False,
    proof: Annotated[bool, typer.Option("--proof", help="Proof mode against an official baseline.")] = False,
    config: Annotated[Path, typer.Option("--config", "-c", help="Project file.")] = Path(CONFIG_FILENAME),
) -> None:
    """Check that the project's model trains, stays finite and round-trips through save/load."""
    from .verify import run_quick_checks

    project = load_config(config) if config.exists() else None
    mode = "proof" if proof else "quick" if quick else (project["verify"]["mode"] if project else "auto")
    if mode == "proof":
        baseline = project["verify"]["baseline"] if project else "official/dreamerv3"
        raise CLIError(f"verify.mode = 'proof' compares against {baseline!r}, an official implementation that "
                       "worldflux-jax does not run; use --quick (or verify.mode = 'quick')", code=2)
    results = run_quick_checks(project)
    table = Table(title="worldflux verify --quick")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for name, ok, detail in results:
        table.add_row(name, "[green]PASS[/green]" if ok else "[red]FAIL[/red]", detail)
    console.print(table)
    if not all(ok for _, ok, _ in results):
        raise typer.Exit(1)


@config_app.command("schema")
@_guarded
def config_schema() -> None:
    """Print the JSON schema of worldflux.toml."""
    typer.echo(json.dumps(json_schema(), indent=2))


@config_app.command("check")
@_guarded
def config_check(
    config: Annotated[Path, typer.Argument(help="Project file.")] = Path(CONFIG_FILENAME),
) -> None:
    """Validate worldflux.toml (exit 2 with the offending key when invalid)."""
    project = load_config(config)
    console.print(f"{config}: valid ({project.model}, family {project.family}, data {project['data']['source']})")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit code instead of exiting."""
    try:
        app(args=argv, prog_name="worldflux")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
