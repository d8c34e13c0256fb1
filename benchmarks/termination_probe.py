"""Does a trained CartPole agent's world model see its own episodes end?

    python benchmarks/termination_probe.py CHECKPOINT [--episodes 3] [--replay] [--model KEY=VALUE ...]

CHECKPOINT is a ``checkpoint_final.pt`` written by ``benchmarks/learning.py --cases cartpole_dreamer`` (the
model is rebuilt from that case's settings plus the same ``--model`` overrides). For each greedy episode it
prints how the episode ended (cart position ``x`` at +-2.4 or pole angle) and the model's continue
probability at the terminal step: with the posterior carried from the start of the episode, and rebuilt over
the last 8 and 15 steps (the training windows are 16 steps long). A world model that has learned the
termination gives a probability near 0 there; docs/benchmarks.md records what this showed.

``--replay`` also reads the run's replay buffer (``online_checkpoint/`` beside the checkpoint) and prints the
mean continue probability at every real termination in it, split into cart-position and pole-angle endings
(the posterior rebuilt over the 15 steps before each): whether the model resolves endings it trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # `python benchmarks/termination_probe.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def terminal_continue(model: Any, observations: list, actions: list, start: int) -> float:
    """The model's continue probability at the episode's last step, the posterior built from step ``start``."""
    import torch

    state = model.encode(torch.as_tensor(observations[start][None], dtype=torch.float32))
    for t in range(start, len(actions)):
        obs = torch.as_tensor(observations[t + 1][None], dtype=torch.float32)
        state = model.update(state, torch.as_tensor(actions[t]), obs)
    return float(torch.sigmoid(model.decode(state).predictions["continue"]).item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--replay", action="store_true", help="also probe every termination in the run's replay")
    parser.add_argument("--model", action="append", default=[], metavar="KEY=VALUE", help="model setting override")
    args = parser.parse_args()

    import gymnasium as gym

    from benchmarks.learning import _parse_overrides, case_setup
    from worldflux import create_world_model
    from worldflux.agents import make_agent
    from worldflux.training import Trainer, TrainingConfig

    spec = {**case_setup("cartpole_dreamer")["model"], **_parse_overrides(args.model)}
    model = create_world_model(spec.pop("model_id"), **spec)
    # The Trainer only restores the checkpoint; its output directory is a scratch one, not the run's.
    scratch = tempfile.mkdtemp(prefix="termination-probe-")
    trainer = Trainer(model, TrainingConfig(batch_size=16, sequence_length=16, output_dir=scratch))
    trainer.load_checkpoint(args.checkpoint)
    model = trainer.model
    agent = make_agent(model, "agent", seed=0)

    for episode in range(args.episodes):
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=200 + episode)
        observations, actions = [obs], []
        agent_state, first, terminated = None, np.ones(1, bool), False
        for _ in range(500):
            action, agent_state = agent.act(obs[None].astype(np.float32), agent_state, first, explore=False)
            first[:] = False
            actions.append(np.asarray(action, np.float32))
            obs, _, terminated, truncated, _ = env.step(int(np.argmax(actions[-1][0])))
            observations.append(obs)
            if terminated or truncated:
                break

        last = observations[-1]
        carried, window = (
            terminal_continue(model, observations, actions, 0),
            [terminal_continue(model, observations, actions, max(0, len(actions) - k)) for k in (8, 15)],
        )
        print(
            f"episode {episode}: {len(actions)} steps, terminated {terminated}, x {last[0]:+.2f}, "
            f"theta {last[2]:+.3f} | p(continue) at the last step: carried {carried:.3f}, "
            f"last 8 steps {window[0]:.3f}, last 15 steps {window[1]:.3f}"
        )

    if args.replay:
        replay_terminations(model, Path(args.checkpoint).resolve().parent / "online_checkpoint")


def replay_terminations(model: Any, online_dir: Path) -> None:
    """Mean p(continue) at the replay's real terminations, by kind (|x| > 2.4: cart position; else pole angle)."""
    data = np.load(online_dir / "replay.npz")
    episodes = json.loads((online_dir / "online_state.json").read_text())["episodes"]
    obs, actions = data["obs"], data["actions"]
    by_kind: dict[str, list[float]] = {"cart position": [], "pole angle": []}
    for start, length, terminated in episodes:
        if not terminated:
            continue
        last = start + length - 1
        first = max(start, last - 15)
        # Rows hold the action taken at each observation: step t is driven by the previous row's action.
        p = terminal_continue(model, obs[first : last + 1], actions[first:last, None], 0)
        by_kind["cart position" if abs(obs[last, 0]) > 2.4 else "pole angle"].append(p)
    for kind, probs in by_kind.items():
        if probs:
            print(
                f"replay: {len(probs)} {kind} terminations, mean p(continue) {np.mean(probs):.3f}, "
                f"below 0.5: {np.mean(np.asarray(probs) < 0.5):.0%}"
            )


if __name__ == "__main__":
    main()
