"""Learning benchmark: agents trained from scratch on gymnasium environments with ``train_online``.

    python benchmarks/learning.py [--cases pendulum_tdmpc2,pendulum_dreamer,cartpole_dreamer]
                                  [--seeds 0,1,2] [--env-steps 20000] [--out benchmarks/results]
                                  [--model KEY=VALUE ...] [--loop KEY=VALUE ...] [--summarize-only]

Seeds may run as separate processes with the same ``--out`` (each writes ``<out>/runs/<case>_seed<k>.json``;
every process, or ``--summarize-only``, aggregates all run files found there).

Per case and seed it prints the score (mean return over the last 10 training episodes), the wall time and
the number of updates; per case the median score over seeds against its target; and writes
``<out>/learning_<case>.png`` (return against env steps, one line per seed) and ``<out>/learning.json``.

Targets (issue 14): Pendulum-v1 (20k env steps) TD-MPC2 and DreamerV3 with the continuous actor >= -400
(random ~ -1200); CartPole-v1 (20k env steps) DreamerV3 with the discrete actor >= 400 (random ~ 22); each
run under 20 minutes on the 2-core CI CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from worldflux import create_world_model
from worldflux.training import TrainingConfig, train_online

#: Greedy evaluation (the actor's mode / the plan's mean action) every EVAL_EVERY env steps, EVAL_EPISODES
#: episodes each in separate envs; the last one is the run's `eval_score`.
EVAL_EVERY, EVAL_EPISODES = 2500, 10
TARGETS = {"pendulum_tdmpc2": -400.0, "pendulum_dreamer": -400.0, "cartpole_dreamer": 400.0}


def case_setup(case: str) -> dict[str, Any]:
    """Model, env and loop settings of one case (small models: CPU budget)."""
    if case == "pendulum_tdmpc2":
        model = dict(
            model_id="tdmpc2:ci",
            obs_shape=(3,),
            action_dim=1,
            latent_dim=64,
            hidden_dim=128,
            num_samples=64,
            num_elites=8,
            horizon=3,
            objective="symlog",  # the reference loss does not learn Pendulum (docs/decisions.md)
        )
        # 64 samples x 4 MPPI iterations: ~15 ms per action on the 2-core CPU (256 x 6: ~60 ms).
        loop = dict(
            env="Pendulum-v1", updates_ratio=1.0, batch_size=64, sequence_length=4, lr=3e-4, agent={"iterations": 4}
        )
    elif case in ("pendulum_dreamer", "cartpole_dreamer"):
        discrete = case == "cartpole_dreamer"
        model = dict(
            model_id="dreamer:ci",
            obs_shape=(4,) if discrete else (3,),
            action_dim=2 if discrete else 1,
            action_type="discrete" if discrete else "continuous",
            actor_critic=True,
            deter_dim=64,
            stoch_discrete=8,
            stoch_classes=8,
            hidden_dim=64,
            learning_rate=3e-4,
            actor_lr=1e-4,
            critic_lr=1e-4,
            # The reference profile does not learn these tasks in 20k steps (docs/decisions.md): the paper's
            # continue-weighted losses and online-critic returns, and for the continuous actor the return's
            # gradient through the imagined trajectory (DreamerV3's first release, DreamerV1/V2).
            behavior_profile="paper",
            actor_gradient="reinforce" if discrete else "dynamics",
            # Imagination from 64 of the 256 posterior states: the actor-critic dominates the step at this
            # size, and the saved time buys one update per 2 env steps instead of one per 4.
            imagination_starts=64,
        )
        if discrete:
            # CartPole's returns span ~300 (gamma 0.997), so normalised advantages are small and the default 3e-4
            # entropy bonus keeps the sampled policy too noisy to hold 500 steps (returns plateau near 150 at
            # 3e-4, 200-450 at 1e-4).
            model["actor_entropy_coef"] = 3e-5
            # The continue head never resolves the cart-position ending (|x| = 2.4) and the cart drifts off the
            # track after balancing (docs/benchmarks.md, benchmarks/termination_probe.py): a larger model, and
            # the critic also learns from the replay's real terminations (DreamerV3's `repval`, weight 0.3),
            # which costs 16 ms a step; 48 imagination starts instead of 64 pay for it.
            model.update(deter_dim=128, hidden_dim=128, critic_lr=3e-4, replay_critic=0.3, imagination_starts=48)
        env = "CartPole-v1" if discrete else "Pendulum-v1"
        loop = dict(env=env, updates_ratio=0.5, batch_size=16, sequence_length=16, lr=3e-4)
    else:
        raise SystemExit(f"unknown case {case!r}; choose from {sorted(TARGETS)}")
    return {"model": model, "loop": loop}


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are parsed as JSON when they can be (numbers, booleans), else strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"overrides are key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_case(
    case: str, seed: int, env_steps: int, out_dir: str, overrides: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    setup = case_setup(case)
    overrides = overrides or {}
    setup["model"].update(overrides.get("model", {}))
    setup["loop"].update(overrides.get("loop", {}))
    spec = dict(setup["model"])
    model = create_world_model(spec.pop("model_id"), **spec)
    loop = setup["loop"]
    collect = 100
    config = TrainingConfig(
        batch_size=loop["batch_size"],
        sequence_length=loop["sequence_length"],
        learning_rate=loop["lr"],
        output_dir=os.path.join(out_dir, f"{case}_seed{seed}"),
        log_interval=10_000,
        save_interval=10**9,
        seed=seed,
    )
    start = time.time()
    result = train_online(
        model,
        loop["env"],
        env_steps,
        warmup_transitions=min(1000, env_steps // 4),
        collect_steps_per_update=collect,
        updates_per_collect=max(1, int(collect * loop["updates_ratio"])),
        config=config,
        seed=seed,
        agent_kwargs=loop.get("agent"),
        eval_every=EVAL_EVERY,
        eval_episodes=EVAL_EPISODES,
    )
    wall = time.time() - start
    returns = result.episode_returns
    score = float(np.mean(returns[-10:])) if returns else float("nan")
    steps = np.cumsum(result.episode_lengths).tolist()
    return {
        "case": case,
        "seed": seed,
        "score": score,
        "eval_score": result.eval_returns[-1] if result.eval_returns else float("nan"),
        "eval_returns": result.eval_returns,
        "eval_steps": [h["env_steps"] for h in result.eval_history],
        "wall_sec": wall,
        "updates": result.updates,
        "episodes": len(returns),
        "returns": returns,
        "steps": steps,
    }


def plot(case: str, runs: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        (line,) = ax.plot(run["steps"], run["returns"], label=f"seed {run['seed']}", alpha=0.8)
        if run.get("eval_steps"):  # greedy evaluations: crosses in the seed's colour
            ax.scatter(run["eval_steps"], run["eval_returns"], marker="x", color=line.get_color(), zorder=3)
    ax.axhline(TARGETS[case], color="k", linestyle="--", linewidth=1, label="target")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(case)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarize(out: str) -> dict[str, Any]:
    """Median score per case over every run file in ``<out>/runs/`` (also those written by other processes of
    this script: seeds may run concurrently), plots, and ``<out>/learning.json``."""
    runs_by_case: dict[str, list[dict[str, Any]]] = {}
    runs_path = os.path.join(out, "runs")
    for name in sorted(os.listdir(runs_path)) if os.path.isdir(runs_path) else []:
        with open(os.path.join(runs_path, name)) as f:
            run = json.load(f)
        runs_by_case.setdefault(run["case"], []).append(run)
    summary: dict[str, Any] = {}
    for case, runs in runs_by_case.items():
        median = statistics.median(r["score"] for r in runs)
        target = TARGETS[case]
        steps = sorted({r["env_steps"] for r in runs})
        verdict = "meets" if (median >= target) else "misses"
        evals = [r["eval_score"] for r in runs if r.get("eval_score") is not None]
        eval_median = statistics.median(evals) if evals else None
        shown = "" if eval_median is None else f", median greedy eval {eval_median:.1f} ({len(evals)} seeds)"
        print(
            f"{case}: median score {median:.1f} over {len(runs)} seeds ({verdict} the target {target:+.0f}){shown}, "
            f"env steps {steps}, wall {[round(r['wall_sec']) for r in runs]} s"
        )
        plot(case, runs, os.path.join(out, f"learning_{case}.png"))
        summary[case] = {"median_score": median, "median_eval_score": eval_median, "target": target, "runs": runs}
    with open(os.path.join(out, "learning.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(TARGETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--env-steps", type=int, default=20_000)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--model", action="append", default=[], metavar="KEY=VALUE", help="model setting override")
    parser.add_argument("--loop", action="append", default=[], metavar="KEY=VALUE", help="loop setting override")
    parser.add_argument("--summarize-only", action="store_true", help="only aggregate the run files in --out")
    args = parser.parse_args()
    overrides = {"model": _parse_overrides(args.model), "loop": _parse_overrides(args.loop)}
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    if not args.summarize_only:
        runs_dir = tempfile.mkdtemp(prefix="worldflux-learning-")
        for case in args.cases.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                run = run_case(case, seed, args.env_steps, runs_dir, overrides)
                run["env_steps"] = args.env_steps
                run["overrides"] = overrides
                with open(os.path.join(args.out, "runs", f"{case}_seed{seed}.json"), "w") as f:
                    json.dump(run, f)
                print(
                    f"{case} seed {seed}: score {run['score']:.1f} (last 10 episodes), greedy eval "
                    f"{run['eval_score']:.1f} ({EVAL_EPISODES} episodes), {run['episodes']} episodes, "
                    f"{run['updates']} updates, {run['wall_sec']:.0f} s",
                    flush=True,
                )
    summarize(args.out)


if __name__ == "__main__":
    main()
