"""Advantage actor-critic, synchronous (A2C; Mnih et al. 2016, as in stable-baselines3).

One update per short rollout of ``num_envs x num_steps`` steps: n-step returns (``gae_lambda = 1``) or GAE
advantages, then a single gradient step on ``-mean(log pi * A) - ent_coef * H + vf_coef * MSE(V, R)``.
RMSprop as in the original and SB3 (alpha 0.99, eps 1e-5), or Adam, or plain SGD.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlarena import blocks
from rlarena.registry import register_algorithm
from rlarena.rollout import RolloutBatch

from .base import (
    AlgoConfig,
    Algorithm,
    adam,
    check,
    check_nonnegative,
    compute_advantages,
    explained_variance,
    normalize,
)

OPTIMIZERS = ("rmsprop", "adam", "sgd")


@dataclass
class A2CConfig(AlgoConfig):
    """Synchronous advantage actor-critic: stable-baselines3's defaults, 8 envs (``algo=a2c``)."""

    name: str = "a2c"
    num_envs: int = 8
    num_steps: int = 8
    gae_lambda: float = 1.0  # 1 = n-step returns
    learning_rate: float = 7e-4
    optimizer: str = "rmsprop"  # rmsprop | adam | sgd
    rms_alpha: float = 0.99
    optimizer_eps: float = 1e-5
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    normalize_advantages: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        check(0 < self.rms_alpha < 1, f"rms_alpha must be in (0, 1), got {self.rms_alpha}")
        check(self.optimizer_eps > 0, f"optimizer_eps must be > 0, got {self.optimizer_eps}")
        check_nonnegative("ent_coef", self.ent_coef)
        check_nonnegative("vf_coef", self.vf_coef)


@register_algorithm("a2c")
class A2C(Algorithm):
    Config = A2CConfig

    def __init__(self, cfg: A2CConfig, policy, *, seed: int = 0) -> None:
        super().__init__(cfg, policy, seed=seed)
        self.params = list(policy.parameters())
        if cfg.optimizer == "rmsprop":
            self.optimizer = torch.optim.RMSprop(
                self.params, lr=cfg.learning_rate, alpha=cfg.rms_alpha, eps=cfg.optimizer_eps
            )
        elif cfg.optimizer == "adam":
            self.optimizer = adam(self.params, cfg.learning_rate, cfg.optimizer_eps)
        else:
            self.optimizer = torch.optim.SGD(self.params, lr=cfg.learning_rate)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {self.cfg.optimizer: self.optimizer}

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        cfg = self.cfg
        lr = self.annealed_lr(cfg.learning_rate)
        self.set_lr(self.optimizer, lr)
        batch = compute_advantages(batch, cfg.gamma, cfg.gae_lambda)
        mb = batch.as_minibatch()

        out = self.policy.evaluate(mb.obs, mb.actions)
        advantages = mb.valid(mb.advantages)
        if cfg.normalize_advantages:
            advantages = normalize(advantages)
        policy_loss = -blocks.mean(mb.valid(out.logp) * advantages)
        value_loss = blocks.mean((mb.valid(out.value) - mb.valid(mb.returns)) ** 2)
        entropy = blocks.mean(mb.valid(out.entropy))
        loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self.clip_and_step(self.optimizer, self.params)
        return {
            "policy_loss": policy_loss.item(),
            "value_loss": value_loss.item(),
            "entropy": entropy.item(),
            "grad_norm": grad_norm,
            "explained_variance": explained_variance(mb.valid(mb.old_values), mb.valid(mb.returns)),
            "learning_rate": lr,
        }
