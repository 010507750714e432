"""Preference-PPO (synthetic labels) against PPO on the true reward: InvertedPendulum-v5, same steps and seed.

Christiano et al. (2017) report that a few hundred synthetic labels nearly match RL on the true reward; here
200 labels must reach at least 80% of true-reward PPO's evaluation return (and 500), for the median over
seeds 0-2 (``tests/learning_cases.py``; per-seed and per-ISA figures in docs/reproducibility.md).
"""

from __future__ import annotations

import pytest
from learning_cases import PREFERENCE, describe, median_passes

pytestmark = pytest.mark.slow


def test_preference_ppo_nearly_matches_true_reward_ppo(tmp_path):
    passed, results = median_passes(PREFERENCE, tmp_path)
    assert passed, f"{PREFERENCE.claim}: " + "; ".join(f"seed {s}: {describe(f)}" for s, f in results.items())
