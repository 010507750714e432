"""The `random_score` of a gymnasium task: the mean return of uniformly random actions over 20 episodes.

    .venv/bin/python scripts/random_scores.py Swimmer-v5 Reacher-v5 [--episodes 20] [--seed 0]

Each env config's `random_score` (conf/env/<name>.yaml) is this figure, measured here, seeded.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np


def random_score(env_id: str, episodes: int, seed: int) -> float:
    env = gym.make(env_id)
    env.action_space.seed(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_ids", nargs="+")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for env_id in args.env_ids:
        print(f"{env_id}: {random_score(env_id, args.episodes, args.seed):.1f}")


if __name__ == "__main__":
    main()
