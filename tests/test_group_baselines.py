"""RLOO and GRPO: group advantages by hand, the groups' layout, the gymnasium collector's grouped episodes.

The smoke grid (tests/test_smoke.py) runs both on every registered environment; these tests check the math
and the contract the two rely on: ``k`` consecutive columns of a ``sequence`` batch answer one prompt (text)
or start from one state (control), and a column's return is the sum of its rewards over its real steps.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlarena.algorithms.base import (
    check_groups,
    column_returns,
    group_normalized_advantages,
    leave_one_out_advantages,
    with_column_advantages,
)
from rlarena.algorithms.policies import MLPActorCritic
from rlarena.bench.train import build, load_config
from rlarena.errors import ConfigError
from rlarena.registry import get_algorithm
from rlarena.rollout import EnvSettings, RolloutBatch

torch.set_num_threads(1)


# ---- advantages by hand ------------------------------------------------------------------------------------


def test_leave_one_out_advantages_by_hand():
    returns = torch.tensor([1.0, 2.0, 3.0, 6.0])
    # k = 2: the baseline of each is the other one
    assert torch.allclose(leave_one_out_advantages(returns, 2), torch.tensor([-1.0, 1.0, -3.0, 3.0]))
    # k = 4: R_i - mean of the other three (sum 12)
    expected = torch.tensor([1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3])
    assert torch.allclose(leave_one_out_advantages(returns, 4), expected)
    # RLOO = k / (k - 1) times the advantage against the group mean
    assert torch.allclose(leave_one_out_advantages(returns, 4), 4 / 3 * (returns - returns.mean()))


def test_group_normalized_advantages_by_hand():
    returns = torch.tensor([1.0, 3.0, 5.0, 5.0, 0.0, 2.0, 4.0, 6.0])
    adv = group_normalized_advantages(returns, 4, eps=0.0)
    std1 = math.sqrt(((1 - 3.5) ** 2 + (3 - 3.5) ** 2 + 2 * (5 - 3.5) ** 2) / 3)  # sample std
    std2 = math.sqrt(sum((x - 3) ** 2 for x in (0, 2, 4, 6)) / 3)
    expected = [(x - 3.5) / std1 for x in (1, 3, 5, 5)] + [(x - 3.0) / std2 for x in (0, 2, 4, 6)]
    assert torch.allclose(adv, torch.tensor(expected))
    # groups of equal returns: advantage 0, not NaN (the eps)
    assert torch.equal(group_normalized_advantages(torch.ones(4), 2), torch.zeros(4))


def _made_up_batch(obs_dim: int = 3, act_dim: int = 2) -> RolloutBatch:
    """4 columns (2 groups of 2) of lengths 3, 1, 2, 3 with garbage in the padding."""
    T, N = 3, 4
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 1], [1, 0, 0, 1]], dtype=torch.bool)
    rewards = torch.tensor([[1.0, 5.0, 0.5, 2.0], [1.0, 99.0, 0.5, 2.0], [1.0, 99.0, 99.0, 2.0]])
    lengths = mask.sum(0)
    dones = (torch.arange(T)[:, None] >= lengths[None] - 1).float()
    g = torch.Generator().manual_seed(0)
    return RolloutBatch(
        obs=torch.randn(T, N, obs_dim, generator=g),
        actions=torch.randn(T, N, act_dim, generator=g),
        logp=torch.zeros(T, N),
        values=torch.zeros(T, N),
        rewards=rewards,
        dones=dones,
        last_value=torch.zeros(N),
        mask=mask,
        layout="sequence",
        info={"responses_per_prompt": 2},
    )


def test_returns_and_advantages_respect_the_mask():
    batch = _made_up_batch()
    returns = column_returns(batch)
    assert returns.tolist() == [3.0, 5.0, 1.0, 6.0]  # the 99s are padding
    adv = leave_one_out_advantages(returns, 2)
    assert adv.tolist() == [-2.0, 2.0, -5.0, 5.0]  # groups are consecutive columns (0, 1) and (2, 3)
    out = with_column_advantages(batch, adv, returns)
    assert torch.equal(out.advantages, adv[None].expand(3, 4) * batch.mask)  # every real step, 0 on padding
    assert torch.equal(out.advantages[~batch.mask], torch.zeros(int((~batch.mask).sum())))
    assert torch.equal(out.as_minibatch().valid(out.advantages), out.advantages[out.mask])


def test_check_groups_refuses_flat_batches_and_other_group_sizes():
    batch = _made_up_batch()
    check_groups(batch, 2, "rloo")
    with pytest.raises(ValueError, match="groups of 2"):
        check_groups(batch, 4, "rloo")
    with pytest.raises(ValueError, match="'flat' batch"):
        check_groups(batch.replace(layout="flat"), 2, "grpo")


@pytest.mark.parametrize("name", ["rloo", "grpo"])
def test_configs_need_whole_groups(name):
    cls = get_algorithm(name).Config
    with pytest.raises(ConfigError, match="multiple of group_size"):
        cls(num_envs=6, group_size=4)
    with pytest.raises(ConfigError, match="group_size must be >= 2"):
        cls(num_envs=4, group_size=1)
    settings = get_algorithm(name).env_settings(cls(group_size=2, num_envs=4))
    assert {k: settings[k] for k in ("record_states", "responses_per_prompt", "grouped_episodes")} == {
        "record_states": False,
        "responses_per_prompt": 2,
        "grouped_episodes": True,
    }
    assert settings.get("kl_in_reward", True) is True  # by default the KL stays in the env's reward


def _first_gradient(name: str, **config: Any) -> tuple[list[torch.Tensor], MLPActorCritic, RolloutBatch]:
    """The gradient the algorithm's first step takes on the made-up batch, its policy, and the batch (with
    made-up reference log-probabilities, ``ref_logp``)."""
    torch.manual_seed(0)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    policy = MLPActorCritic(obs_space, action_space, hidden_sizes=[8])
    batch = _made_up_batch()
    with torch.no_grad():  # collected by this very policy: ratio 1
        batch.logp = policy.evaluate(batch.obs, batch.actions).logp
    batch.ref_logp = batch.logp + torch.randn(batch.logp.shape, generator=torch.Generator().manual_seed(1))
    cls = get_algorithm(name)
    algo = cls(cls.Config(num_envs=4, group_size=2, update_epochs=1, num_minibatches=1, **config), policy)
    grads: list[list[torch.Tensor]] = []

    def record(optimizer, params):  # in place of clip_and_step: keep the gradient, take no step
        grads.append([p.grad.clone() for p in params])
        return 0.0

    algo.clip_and_step = record
    algo.update(batch)
    assert len(grads) == 1
    return grads[0], policy, batch


def test_rloo_first_step_is_the_reinforce_gradient_with_leave_one_out_advantages():
    got, policy, batch = _first_gradient("rloo")
    adv = torch.tensor([-2.0, 2.0, -5.0, 5.0])[None].expand(3, 4)
    logp = policy.evaluate(batch.obs, batch.actions).logp
    params = policy.actor_parameters()
    expected = torch.autograd.grad(-(logp[batch.mask] * adv[batch.mask]).mean(), params)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, expected))


def test_grpo_first_step_is_the_per_sample_mean_of_normalized_advantages():
    got, policy, batch = _first_gradient("grpo")
    adv = group_normalized_advantages(torch.tensor([3.0, 5.0, 1.0, 6.0]), 2)
    lengths = batch.mask.sum(0).float()
    logp = policy.evaluate(batch.obs, batch.actions).logp
    # DeepSeekMath: 1/G sum_i 1/|o_i| sum_t ratio_t A_i (ratio 1 at the first step: no clipping yet)
    per_sample = (logp * batch.mask).sum(0) / lengths * adv
    expected = torch.autograd.grad(-per_sample.mean(), policy.actor_parameters())
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, expected))


def test_grpo_kl_in_the_loss_adds_deepseekmaths_estimator_per_sample():
    """kl_coef: beta * 1/G sum_i 1/|o_i| sum_t (r_t - log r_t - 1), r_t = pi_ref / pi, added to the loss;
    the minibatch carries the batch's ref_logp column by column (the columns are shuffled)."""
    beta = 0.3
    got, policy, batch = _first_gradient("grpo", kl_coef=beta)
    adv = group_normalized_advantages(torch.tensor([3.0, 5.0, 1.0, 6.0]), 2)
    lengths = batch.mask.sum(0).float()
    logp = policy.evaluate(batch.obs, batch.actions).logp
    log_r = (batch.ref_logp - logp) * batch.mask
    per_sample = (logp * batch.mask).sum(0) / lengths * adv
    kl = ((log_r.exp() - log_r - 1) * batch.mask).sum(0) / lengths
    expected = torch.autograd.grad(-per_sample.mean() + beta * kl.mean(), policy.actor_parameters())
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, expected))
    without, _, _ = _first_gradient("grpo")
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, without))


def test_grpo_kl_in_the_loss_is_refused_where_there_is_no_reference_policy():
    from rlarena.bench.train import validate

    with pytest.raises(ConfigError, match="gymnasium tasks have no reference policy"):
        validate(load_config(["algo=grpo", "env=cartpole", "algo.kl_coef=0.04"]), set())
    with pytest.raises(ConfigError, match="kl_coef must be a finite number >= 0"):
        get_algorithm("grpo").Config(kl_coef=-1.0)
    settings = get_algorithm("grpo").env_settings(get_algorithm("grpo").Config(kl_coef=0.04))
    assert settings["kl_in_reward"] is False
    batch = _made_up_batch()
    batch.logp = torch.zeros(3, 4)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    policy = MLPActorCritic(obs_space, gym.spaces.Box(-1.0, 1.0, (2,), np.float32), [8])
    algo = get_algorithm("grpo")(get_algorithm("grpo").Config(num_envs=4, group_size=2, kl_coef=0.1), policy)
    with pytest.raises(ValueError, match="batch.ref_logp"):  # a third-party env that has none
        algo.update(batch)


# ---- gymnasium: grouped episodes ---------------------------------------------------------------------------


def _grouped(algo: str, env: str, num_envs: int = 4, k: int = 2, steps: int = 300, **extra):
    overrides = [f"algo={algo}", f"env={env}", f"algo.num_envs={num_envs}", f"algo.group_size={k}"]
    overrides += [f"algo.num_steps={steps}", *[f"algo.{key}={v}" for key, v in extra.items()]]
    return build(load_config(overrides), explicit_keys=set())


@pytest.mark.parametrize("env", ["cartpole", "invertedpendulum"])
def test_grouped_episodes_start_together_and_are_whole(env):
    built = _grouped("rloo", env, num_envs=6, k=3)
    for _ in range(2):
        batch = built.env.collect(built.policy, 300)
        first = batch.info["raw_obs"][0]
        assert batch.layout == "sequence" and batch.rewards.shape == (300, 6)
        assert batch.info["responses_per_prompt"] == 3
        for g in range(2):  # the 3 columns of a group start from one state, the groups from different ones
            assert all(torch.equal(first[3 * g], first[3 * g + j]) for j in (1, 2))
        assert not torch.equal(first[0], first[3])
        mask, dones = batch.mask, batch.dones
        lengths = mask.sum(0)
        steps = torch.arange(300)[:, None]
        assert torch.equal(mask, steps < lengths[None])  # real steps first, then padding
        assert torch.equal(dones, (steps >= lengths[None] - 1).float())  # done from the last real step on
        assert torch.equal(batch.last_value, torch.zeros(6))
        for name in ("rewards", "logp", "values"):
            assert not getattr(batch, name)[~mask].any(), name
        # Every episode ended by itself here (random policies fall within 300 steps): the statistics are
        # the raw rewards' sums over the real steps, in column order.
        raw = batch.info["raw_rewards"]
        assert batch.info["episode_returns"] == pytest.approx((raw * mask).sum(0).tolist())
        assert batch.info["episode_lengths"] == lengths.tolist()
        assert batch.info["stat/cut_fraction"] == 0.0
    built.env.close()


def test_grouped_episodes_cut_at_num_steps_are_truncated_not_reported():
    built = _grouped("grpo", "invertedpendulum", num_envs=2, k=2, steps=3)
    batch = built.env.collect(built.policy, 3)
    ended = batch.info["terminated"].any(0)
    assert len(batch.info["episode_returns"]) == int(ended.sum())  # cut episodes are not episodes
    for i in (~ended).nonzero().flatten().tolist():  # a cut column: all 3 steps real, done at the last one
        assert batch.mask[:, i].all() and batch.dones[:, i].tolist() == [0.0, 0.0, 1.0]
        assert batch.bootstrap_values[2, i] != 0  # V(final observation), as at a time-limit truncation
    built.env.close()


def test_grouped_collection_is_reproducible_and_resumes_exactly():
    a, b = _grouped("rloo", "cartpole"), _grouped("rloo", "cartpole")
    torch.manual_seed(3)
    first = a.env.collect(a.policy, 300)
    state = a.env.state_dict()
    torch.manual_seed(4)
    second = a.env.collect(a.policy, 300)
    b.env.load_state_dict(state)
    assert b.env.resumes_exactly
    torch.manual_seed(4)
    again = b.env.collect(a.policy, 300)  # same policy, restored seed counter and normalizers
    for name in ("obs", "actions", "rewards", "mask"):
        assert torch.equal(getattr(second, name), getattr(again, name)), name
    assert not torch.equal(first.info["raw_obs"][0], second.info["raw_obs"][0])  # new start states
    a.env.close()
    b.env.close()


def test_flat_collection_is_untouched_by_the_group_settings_of_other_algorithms():
    # algo=preference asks every env for responses_per_prompt (text); gymnasium keeps its flat batches
    from rlarena.registry import get_env

    env = get_env("cartpole")({}, EnvSettings(num_envs=2, responses_per_prompt=2))
    assert not env.grouped and env.collect(_any_policy(env), 5).layout == "flat"
    env.close()
    with pytest.raises(ConfigError, match="do not divide"):
        get_env("cartpole")({}, EnvSettings(num_envs=3, responses_per_prompt=2, grouped_episodes=True))


def _any_policy(env) -> MLPActorCritic:
    return MLPActorCritic(env.observation_space, env.action_space, hidden_sizes=[8])
