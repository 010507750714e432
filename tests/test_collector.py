"""The lean collector and progress output: same numbers as the straightforward path, less overhead."""

from __future__ import annotations

import io

import pytest
import torch

from rlarena.bench.progress import Progress
from rlarena.bench.train import build, load_config
from rlarena.rollout import ActOutput


def _built(algo: str = "ppo", env: str = "hopper", n: int = 2):
    cfg = load_config([f"algo={algo}", f"env={env}", f"algo.num_envs={n}", "algo.num_steps=64"])
    return build(cfg, explicit_keys=set())


def _distribution_act(policy):
    """``act`` through torch.distributions: the reference the collector's fast path must match bit for bit."""

    def act(obs, deterministic=False):
        head, value = policy._features(obs)
        dist = policy._dist(head)
        action = dist.sample()
        return ActOutput(action, dist.log_prob(action), value)

    return act


@pytest.mark.parametrize("n", [1, 3])
def test_fast_act_path_is_bit_identical_to_the_distribution_path(n):
    fast, slow = _built(n=n), _built(n=n)
    slow.policy.act = _distribution_act(slow.policy)
    for _ in range(2):  # two rollouts: the running normalizers carry over
        torch.manual_seed(7)
        a = fast.env.collect(fast.policy, 300)  # Hopper's 1000-step limit is not reached: see bootstrap below
        torch.manual_seed(7)
        b = slow.env.collect(slow.policy, 300)
        for name in (
            "obs",
            "actions",
            "logp",
            "values",
            "rewards",
            "dones",
            "last_value",
            "bootstrap_values",
        ):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert a.info["episode_returns"] == b.info["episode_returns"]
    fast.env.close()
    slow.env.close()


def test_simulator_states_are_recorded_only_for_algorithms_that_need_them():
    plain = _built("ppo", "invertedpendulum")
    assert "states" not in plain.env.collect(plain.policy, 8).info
    pref = _built("preference", "invertedpendulum")
    states = pref.env.collect(pref.policy, 8).info["states"]
    assert states.shape == (8, 2, 4)  # InvertedPendulum: nq + nv = 2 + 2
    plain.env.close()
    pref.env.close()


def test_progress_writes_plain_lines_to_a_log():
    out = io.StringIO()  # not a terminal: no carriage-return redraws
    bar = Progress(1000, 0, "ppo hopper s0", stream=out, interval_s=0.0)
    for _ in range(4):
        bar.update(250, 12.5, 900.0)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and "\r" not in out.getvalue()
    assert lines[-1].startswith("[ppo hopper s0] 1000/1000 steps (100%), return 12.5, 900 steps/s")


def test_progress_is_quiet_between_intervals_and_when_disabled():
    out = io.StringIO()
    bar = Progress(1000, 0, "x", stream=out, interval_s=3600.0)
    bar.update(10, 1.0, 1.0)
    assert out.getvalue() == ""
    off = io.StringIO()
    quiet = Progress(1000, 0, "x", enabled=False, stream=off, interval_s=0.0)
    quiet.update(10, 1.0, 1.0)
    quiet.close()
    assert off.getvalue() == ""
