"""The algorithms' math against independent calculations: policy gradient, CG, Fisher products, TRPO, A2C."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from op_inputs import policy_batch
from torch import nn
from torch.distributions import Categorical
from torch.nn.utils import parameters_to_vector

from rlarena.algorithms.a2c import A2C, A2CConfig
from rlarena.algorithms.base import PolicyConfig
from rlarena.algorithms.policies import make_mlp_policy
from rlarena.algorithms.reinforce import Reinforce, ReinforceConfig, complete_episodes_mask
from rlarena.algorithms.trpo import TRPO, TRPOConfig, conjugate_gradient
from rlarena.rollout import ActOutput, EvalOutput, Policy, RolloutBatch


class BanditPolicy(Policy):
    """A state-free categorical policy (logits are the parameters) with a constant zero critic."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits, dtype=torch.float64))
        self.v = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def _dist(self, n: int) -> Categorical:
        return Categorical(logits=self.logits.expand(n, -1))

    def act(self, obs, deterministic=False):
        d = self._dist(obs.shape[0])
        a = d.sample()
        return ActOutput(a, d.log_prob(a), self.v.expand(obs.shape[0]))

    def value(self, obs):
        return self.v.expand(obs.shape[0])

    def evaluate(self, obs, actions):
        d = self._dist(actions.shape[0])
        return EvalOutput(d.log_prob(actions), d.entropy(), self.v.expand(actions.shape[0]), d)

    def actor_parameters(self):
        return [self.logits]

    def critic_parameters(self):
        return [self.v]


def one_step_batch(actions: torch.Tensor, rewards: torch.Tensor, logp: torch.Tensor) -> RolloutBatch:
    n = actions.shape[0]
    zeros = torch.zeros(1, n, dtype=torch.float64)
    return RolloutBatch(
        obs=torch.zeros(1, n, 1, dtype=torch.float64),
        actions=actions.unsqueeze(0),
        logp=logp.unsqueeze(0),
        values=zeros,
        rewards=rewards.unsqueeze(0),
        dones=torch.ones(1, n, dtype=torch.float64),
        last_value=torch.zeros(n, dtype=torch.float64),
    )


def test_reinforce_gradient_matches_analytic_policy_gradient():
    """Bandit with rewards r_a: dJ/dlogit_k = pi_k (r_k - J). The estimator over many samples must agree."""
    torch.manual_seed(0)
    policy = BanditPolicy([0.3, -0.2, 0.5])
    reward_of = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    n = 200_000
    with torch.no_grad():
        out = policy.act(torch.zeros(n, 1))
    batch = one_step_batch(out.action, reward_of[out.action], out.logp)
    cfg = ReinforceConfig(baseline=False, normalize_advantages=False, gamma=0.99, policy=PolicyConfig())
    algo = Reinforce(cfg, policy)
    from rlarena.algorithms.base import compute_advantages

    loss, _ = algo.policy_loss(compute_advantages(batch, cfg.gamma, cfg.gae_lambda).as_minibatch())
    (grad,) = torch.autograd.grad(-loss, policy.logits)  # the loss is minus the objective
    pi = torch.softmax(policy.logits.detach(), 0)
    analytic = pi * (reward_of - (pi * reward_of).sum())
    # Monte-Carlo error: std of r * grad(log pi) is O(2) here, so 200k samples give ~0.005; allow 0.015.
    torch.testing.assert_close(grad, analytic, atol=0.015, rtol=0)
    assert not torch.allclose(grad, torch.zeros_like(grad), atol=0.05), "the gradient must be informative"


def test_complete_episodes_mask_drops_unfinished_tails():
    dones = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.float32)
    mask = complete_episodes_mask(dones)
    expected = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(8, 8, generator=g, dtype=torch.float64)
    fisher = m @ m.T + 0.1 * torch.eye(8, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: fisher @ v, b, iters=50)
    torch.testing.assert_close(x, torch.linalg.solve(fisher, b), atol=1e-8, rtol=1e-6)


def _gaussian_policy() -> Policy:
    torch.manual_seed(1)
    obs_space = gym.spaces.Box(-1, 1, (3,), dtype=np.float32)
    act_space = gym.spaces.Box(-1, 1, (2,), dtype=np.float32)
    return make_mlp_policy(obs_space, act_space, PolicyConfig(hidden_sizes=[8]))


def _random_batch(policy: Policy, T: int = 16, N: int = 2, seed: int = 0) -> RolloutBatch:
    return policy_batch(policy, 3, T, N, seed)


def test_fisher_vector_product_matches_explicit_fisher():
    """The Hessian of the mean KL at the current parameters, built explicitly, times a vector."""
    policy = _gaussian_policy()
    algo = TRPO(TRPOConfig(cg_damping=0.0), policy)
    from rlarena.algorithms.base import compute_advantages

    mb = compute_advantages(_random_batch(policy), 0.99, 0.95).as_minibatch()
    with torch.no_grad():
        old = policy.evaluate(mb.obs, mb.actions)
    params = algo.actor_params
    flat = torch.cat([p.detach().reshape(-1) for p in params])

    names = {id(p): name for name, p in policy.named_parameters()}

    def kl_of(vector: torch.Tensor) -> torch.Tensor:
        chunks, i = {}, 0
        for p in params:  # the same order as the algorithm's flat vectors
            chunks[names[id(p)]] = vector[i : i + p.numel()].view_as(p)
            i += p.numel()
        new = torch.func.functional_call(policy, chunks, (mb.obs, mb.actions), strict=False, tie_weights=True)
        return algo.mean_kl(old, new, mb)

    fisher = torch.autograd.functional.hessian(kl_of, flat)
    v = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(3))
    fvp = algo.fisher_vector_product(mb, old)
    torch.testing.assert_close(fvp(v), fisher @ v, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("max_kl", [0.01, 0.001])
def test_trpo_step_respects_trust_region_and_improves_surrogate(max_kl):
    policy = _gaussian_policy()
    batch = _random_batch(policy, T=64, N=2, seed=5)
    algo = TRPO(TRPOConfig(max_kl=max_kl, vf_epochs=0), policy)
    before = copy.deepcopy(policy.state_dict())
    metrics = algo.update(batch)
    assert metrics["line_search_accepted"] == 1.0
    assert 0 < metrics["kl"] <= max_kl
    assert metrics["surrogate_improvement"] > 0
    # measured independently of the algorithm's own bookkeeping
    mb = batch.as_minibatch()
    old = copy.deepcopy(policy)
    old.load_state_dict(before)
    with torch.no_grad():
        kl = torch.distributions.kl_divergence(
            old.evaluate(mb.obs, mb.actions).dist, policy.evaluate(mb.obs, mb.actions).dist
        )
    assert kl.mean().item() <= max_kl * (1 + 1e-5)


def test_trpo_full_step_puts_the_quadratic_kl_model_at_max_kl():
    """The step's quadratic KL model, 0.5 s (F + damping) s, equals max_kl when the line search takes the
    whole step (Schulman et al. 2015, appendix C; sb3-contrib, Spinning Up): not twice it."""
    policy = _gaussian_policy()
    batch = _random_batch(policy, T=64, N=2, seed=5)
    max_kl = 1e-5  # small: the quadratic model is close, so the whole step is taken
    algo = TRPO(TRPOConfig(max_kl=max_kl, vf_epochs=0), policy)
    before = parameters_to_vector(algo.actor_params).detach().clone()
    from rlarena.algorithms.base import compute_advantages

    mb = compute_advantages(batch, 0.99, 0.95).as_minibatch()
    with torch.no_grad():
        old = policy.evaluate(mb.obs, mb.actions)
    fvp = algo.fisher_vector_product(mb, old)
    metrics = algo.update(batch)
    assert metrics["line_search_accepted"] == 1.0 and metrics["step_fraction"] == 1.0
    step = parameters_to_vector(algo.actor_params).detach() - before
    assert 0.5 * (step @ fvp(step)).item() == pytest.approx(max_kl, rel=1e-3)


def test_trpo_rejected_line_search_leaves_parameters_unchanged():
    policy = _gaussian_policy()
    batch = _random_batch(policy, T=64, N=2, seed=6)
    # An impossible trust region: no step can have KL <= 1e-30, so every candidate is rejected.
    algo = TRPO(TRPOConfig(max_kl=1e-30, vf_epochs=0, line_search_max_iter=3), policy)
    before = [p.detach().clone() for p in policy.actor_parameters()]
    metrics = algo.update(batch)
    assert metrics["line_search_accepted"] == 0.0
    for p, q in zip(policy.actor_parameters(), before):
        assert torch.equal(p.detach(), q)


def test_a2c_one_step_update_matches_hand_computation():
    """n_steps=1, SGD: theta' = theta - lr * grad of [-delta log pi(a|s) + vf_coef (V(s) - R)^2]."""
    policy = _gaussian_policy()
    reference = copy.deepcopy(policy)
    obs = torch.tensor([[[0.5, -0.2, 0.1]]])
    action = torch.tensor([[[0.3, -0.7]]])
    reward, next_value, gamma, lr, vf_coef = 1.5, 0.4, 0.9, 0.1, 0.5
    with torch.no_grad():
        out = policy.evaluate(obs[0], action[0])
    batch = RolloutBatch(
        obs=obs,
        actions=action,
        logp=out.logp.reshape(1, 1),
        values=out.value.reshape(1, 1),
        rewards=torch.tensor([[reward]]),
        dones=torch.zeros(1, 1),
        last_value=torch.tensor([next_value]),
    )
    cfg = A2CConfig(
        num_envs=1,
        num_steps=1,
        gamma=gamma,
        learning_rate=lr,
        optimizer="sgd",
        vf_coef=vf_coef,
        max_grad_norm=-1,
        anneal_lr=False,
    )
    A2C(cfg, policy).update(batch)

    # By hand: one-step TD target and advantage, then the actor-critic gradient step.
    ref_out = reference.evaluate(obs[0], action[0])
    value = ref_out.value[0]
    target = reward + gamma * next_value
    advantage = (target - value).detach()
    loss = -advantage * ref_out.logp[0] + vf_coef * (value - target) ** 2
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    for p_new, p_old, g in zip(policy.parameters(), reference.parameters(), grads):
        torch.testing.assert_close(p_new.detach(), p_old.detach() - lr * g, atol=1e-6, rtol=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(policy.parameters(), reference.parameters()))
