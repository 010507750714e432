"""REINFORCE / vanilla policy gradient (Williams 1992), with an optional learned value baseline.

One update: discounted reward-to-go returns (GAE with ``gae_lambda = 1``; with a baseline the advantage is
``G_t - V(s_t)``), one gradient step on ``-mean(log pi(a|s) * A)``, then ``vf_iters`` full-batch regression
steps of the value function. With ``whole_episodes`` the unfinished tail of every environment's rollout is
masked out, so only complete episodes (no bootstrapping at all) drive the update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlarena import blocks
from rlarena.registry import register_algorithm
from rlarena.rollout import Minibatch, RolloutBatch

from .base import (
    AlgoConfig,
    Algorithm,
    adam,
    check,
    check_learning_rate,
    check_nonnegative,
    compute_advantages,
    explained_variance,
    normalize,
)


@dataclass
class ReinforceConfig(AlgoConfig):
    """REINFORCE (vanilla policy gradient) with a learned value baseline (``algo=reinforce``)."""

    name: str = "reinforce"
    num_steps: int = 2048
    gae_lambda: float = 1.0  # 1 = Monte-Carlo reward-to-go; < 1 turns this into VPG with GAE
    learning_rate: float = 1e-3
    baseline: bool = True
    vf_learning_rate: float = 1e-3
    vf_iters: int = 5
    whole_episodes: bool = False  # true: drop each env's unfinished last episode (no bootstrapping at all)
    normalize_advantages: bool = True
    ent_coef: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_learning_rate("vf_learning_rate", self.vf_learning_rate)
        check(self.vf_iters >= 0, f"vf_iters must be >= 0, got {self.vf_iters}")
        check_nonnegative("ent_coef", self.ent_coef)


def complete_episodes_mask(dones: torch.Tensor) -> torch.Tensor:
    """``[T, N]`` bool: True up to and including each column's last episode end, False after it."""
    T = dones.shape[0]
    t = torch.arange(T, device=dones.device).unsqueeze(1)
    last_end = torch.where(dones > 0, t, torch.full_like(t, -1)).max(dim=0).values
    return t <= last_end


@register_algorithm("reinforce")
class Reinforce(Algorithm):
    Config = ReinforceConfig

    def __init__(self, cfg: ReinforceConfig, policy, *, seed: int = 0) -> None:
        super().__init__(cfg, policy, seed=seed)
        self.actor_params = policy.actor_parameters()
        self.critic_params = policy.critic_parameters()
        self.actor_optimizer = adam(self.actor_params, cfg.learning_rate)
        self.critic_optimizer = adam(self.critic_params, cfg.vf_learning_rate) if cfg.baseline else None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"actor": self.actor_optimizer}
        if self.critic_optimizer is not None:
            opts["critic"] = self.critic_optimizer
        return opts

    def policy_loss(self, mb: Minibatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The REINFORCE surrogate whose gradient is the policy-gradient estimate; also the mean entropy."""
        out = self.policy.evaluate(mb.obs, mb.actions)
        advantages = mb.valid(mb.advantages)
        if self.cfg.normalize_advantages:
            advantages = normalize(advantages)
        entropy = blocks.mean(mb.valid(out.entropy))
        return -blocks.mean(mb.valid(out.logp) * advantages) - self.cfg.ent_coef * entropy, entropy

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        cfg = self.cfg
        lr = self.annealed_lr(cfg.learning_rate)
        self.set_lr(self.actor_optimizer, lr)
        if not cfg.baseline:  # no critic: plain discounted reward-to-go, no bootstrapping anywhere
            zeros = torch.zeros_like(batch.values)
            batch = batch.replace(
                values=zeros, last_value=torch.zeros_like(batch.last_value), bootstrap_values=zeros
            )
        if cfg.whole_episodes:
            complete = complete_episodes_mask(batch.dones)
            batch = batch.replace(mask=complete if batch.mask is None else batch.mask & complete)
            if batch.num_valid == 0:
                return {"skipped_no_complete_episode": 1.0}
        batch = compute_advantages(batch, cfg.gamma, cfg.gae_lambda)
        mb = batch.as_minibatch()

        loss, entropy = self.policy_loss(mb)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self.clip_and_step(self.actor_optimizer, self.actor_params)

        metrics = {
            "policy_loss": loss.item(),
            "entropy": entropy.item(),
            "grad_norm": grad_norm,
            "learning_rate": lr,
        }
        if cfg.baseline:
            returns = mb.valid(mb.returns)
            for _ in range(cfg.vf_iters):
                value = mb.valid(self.policy.evaluate(mb.obs, mb.actions).value)
                value_loss = 0.5 * blocks.mean((value - returns) ** 2)
                self.critic_optimizer.zero_grad(set_to_none=True)
                value_loss.backward()
                self.clip_and_step(self.critic_optimizer, self.critic_params)
            if cfg.vf_iters:
                metrics["value_loss"] = value_loss.item()
            metrics["explained_variance"] = explained_variance(mb.valid(mb.old_values), returns)
        return metrics
