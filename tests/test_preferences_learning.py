"""Preference-PPO (synthetic labels) against PPO on the true reward: InvertedPendulum-v5, same steps and seed.

Christiano et al. (2017) report that a few hundred synthetic labels nearly match RL on the true reward; here
200 labels must reach at least 80% of true-reward PPO's evaluation return (both reach 1000 in our runs,
about 30 s of CPU each).
"""

from __future__ import annotations

import torch

from rlarena.bench.train import load_config, run_training

torch.set_num_threads(1)

COMMON = [
    "env=invertedpendulum",
    "seed=0",
    "total_steps=20480",
    "algo.num_steps=1024",
    "eval.every_steps=0",
    "eval.episodes=5",
    "progress=false",
    "tensorboard=false",
]


def test_preference_ppo_nearly_matches_true_reward_ppo(tmp_path):
    ppo = run_training(load_config(["algo=ppo", *COMMON]), tmp_path / "ppo", explicit_keys=set())
    pref = run_training(
        load_config(["algo=preference", "algo.total_labels=200", *COMMON]),
        tmp_path / "pref",
        explicit_keys=set(),
    )
    assert ppo["steps_done"] == pref["steps_done"] == 20480
    assert pref["eval_return_mean"] >= 0.8 * ppo["eval_return_mean"], (
        pref["eval_returns"],
        ppo["eval_returns"],
    )
    assert pref["eval_return_mean"] >= 500, "preference-PPO learned the task"
