"""The training loop's speed side by side with its peers (pytest-benchmark), per rollout shape: the collector
against bare env stepping, the PPO update against stable-baselines3's ``train()``, one PPO iteration against
SB3's. The cases come from ``bench/perf/loop.py`` (``rlarena bench --loop`` times the same ones in
interleaved rounds and prints the ratios). SB3 is an optional peer (``pip install 'rlarena[peers]'``).

With the project's default ``--benchmark-disable`` each case runs once, as a smoke test.
"""

from __future__ import annotations

import pytest
import torch

from rlarena.bench.perf import loop

SHAPES = list(loop.SHAPES)


def _sb3(shape):
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 not installed (optional peer)")
    return loop.sb3_ppo(shape)


def _bench(benchmark, group: str, shape, fn, rounds: int = 3):
    benchmark.group = f"{group}, {shape.label}"
    benchmark.extra_info["steps"] = shape.steps
    return benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1)


@pytest.mark.parametrize("name", SHAPES)
def test_collector_rlarena(benchmark, name):
    shape = loop.SHAPES[name]
    built = loop.build_rlarena(shape)
    batch = _bench(benchmark, "collector", shape, lambda: built.env.collect(built.policy, shape.num_steps))
    assert batch.rewards.shape == (shape.num_steps, shape.num_envs)
    built.env.close()


@pytest.mark.parametrize("name", SHAPES)
def test_collector_bare_env(benchmark, name):
    shape = loop.SHAPES[name]
    built = loop.build_rlarena(shape)
    actions = built.env.collect(built.policy, shape.num_steps).info["env_actions"].numpy()  # the policy's
    _bench(benchmark, "collector", shape, loop.bare_stepper(built, shape, actions))
    built.env.close()


@pytest.mark.parametrize("name", SHAPES)
def test_update_rlarena(benchmark, name):
    shape = loop.SHAPES[name]
    built = loop.build_rlarena(shape)
    batch = built.env.collect(built.policy, shape.num_steps)
    metrics = _bench(benchmark, "PPO update", shape, lambda: built.algo.update(batch))
    assert metrics["approx_kl"] >= 0 and torch.isfinite(torch.tensor(metrics["policy_loss"]))
    built.env.close()


@pytest.mark.parametrize("name", SHAPES)
def test_update_stable_baselines3(benchmark, name):
    shape = loop.SHAPES[name]
    model = _sb3(shape)
    _bench(benchmark, "PPO update", shape, model.train)
    model.get_env().close()


@pytest.mark.parametrize("name", SHAPES)
def test_ppo_iteration_rlarena(benchmark, name):
    shape = loop.SHAPES[name]
    built = loop.build_rlarena(shape)
    iteration = lambda: built.algo.update(built.env.collect(built.policy, shape.num_steps))  # noqa: E731
    metrics = _bench(benchmark, "PPO iteration", shape, iteration)
    assert metrics["approx_kl"] >= 0
    built.env.close()


@pytest.mark.parametrize("name", SHAPES)
def test_ppo_iteration_stable_baselines3(benchmark, name):
    shape = loop.SHAPES[name]
    model = _sb3(shape)
    _bench(benchmark, "PPO iteration", shape, lambda: model.learn(shape.steps, reset_num_timesteps=False))
    assert model.num_timesteps >= 2 * shape.steps
    model.get_env().close()
