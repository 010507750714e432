"""End-to-end PPO speed, side by side with stable-baselines3 (pytest-benchmark).

One PPO iteration on HalfCheetah-v5 with the same work on both sides: 8 vector envs x 256 steps (2048
transitions) collected, observation and reward normalization, then 10 epochs of minibatches of 64 on a
64x64 tanh actor-critic, one torch thread. SB3 is an optional peer (``pip install 'rlarena[peers]'``).

With the project's default ``--benchmark-disable`` each case runs once as a smoke test.
"""

from __future__ import annotations

import pytest
import torch

from rlarena.bench.train import build, load_config

NUM_ENVS, NUM_STEPS, BATCH, EPOCHS = 8, 256, 64, 10
STEPS = NUM_ENVS * NUM_STEPS


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_ppo_iteration_rlarena(benchmark):
    cfg = load_config(
        [
            "env=halfcheetah",
            f"algo.num_envs={NUM_ENVS}",
            f"algo.num_steps={NUM_STEPS}",
            f"algo.num_minibatches={STEPS // BATCH}",
            f"algo.update_epochs={EPOCHS}",
        ]
    )
    built = build(cfg, explicit_keys=set())
    benchmark.group = f"PPO iteration, HalfCheetah-v5, {STEPS} steps"
    benchmark.extra_info["steps"] = STEPS

    def iteration() -> dict[str, float]:
        return built.algo.update(built.env.collect(built.policy, NUM_STEPS))

    metrics = benchmark.pedantic(iteration, rounds=3, warmup_rounds=1)
    built.env.close()
    assert metrics["approx_kl"] >= 0 and torch.isfinite(torch.tensor(metrics["policy_loss"]))


def test_ppo_iteration_stable_baselines3(benchmark):
    sb3 = pytest.importorskip("stable_baselines3", reason="stable-baselines3 not installed (optional peer)")
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env("HalfCheetah-v5", n_envs=NUM_ENVS, seed=0), gamma=0.99)
    model = sb3.PPO(
        "MlpPolicy", env, n_steps=NUM_STEPS, batch_size=BATCH, n_epochs=EPOCHS, device="cpu", seed=0
    )
    model.learn(STEPS)  # first call pays the set-up
    benchmark.group = f"PPO iteration, HalfCheetah-v5, {STEPS} steps"
    benchmark.extra_info["steps"] = STEPS
    benchmark.pedantic(lambda: model.learn(STEPS, reset_num_timesteps=False), rounds=3, warmup_rounds=0)
    assert model.num_timesteps >= 2 * STEPS
    env.close()
