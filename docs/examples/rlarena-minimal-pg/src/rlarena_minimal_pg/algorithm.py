"""Advantage policy gradient: one GAE pass, one gradient step on actor and critic together."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlarena.algorithms.base import AlgoConfig, Algorithm, check, compute_advantages, normalize


@dataclass
class MinimalPGConfig(AlgoConfig):
    name: str = "minimal_pg"
    vf_coef: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.vf_coef >= 0, f"vf_coef must be >= 0, got {self.vf_coef}")


class MinimalPG(Algorithm):
    Config = MinimalPGConfig

    def __init__(self, cfg: MinimalPGConfig, policy, *, seed: int = 0) -> None:
        super().__init__(cfg, policy, seed=seed)
        self.params = list(policy.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.learning_rate)

    def optimizers(self):
        return {"adam": self.optimizer}

    def update(self, batch):
        batch = compute_advantages(batch, self.cfg.gamma, self.cfg.gae_lambda)
        mb = batch.as_minibatch()
        out = self.policy.evaluate(mb.obs, mb.actions)
        policy_loss = -(mb.valid(out.logp) * normalize(mb.valid(mb.advantages))).mean()
        value_loss = 0.5 * ((mb.valid(out.value) - mb.valid(mb.returns)) ** 2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        (policy_loss + self.cfg.vf_coef * value_loss).backward()
        self.clip_and_step(self.optimizer, self.params)
        return {"policy_loss": policy_loss.item(), "value_loss": value_loss.item()}
