"""Proximal Policy Optimization (Schulman et al. 2017), following "The 37 implementation details of PPO".

One update: GAE advantages, then ``update_epochs`` passes over shuffled minibatches of the clipped surrogate
(fused op), the (optionally clipped) value loss and an entropy bonus, with gradient-norm clipping, a linearly
annealed learning rate and an optional early stop on the approximate KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rlarena import ops
from rlarena.registry import register_algorithm
from rlarena.rollout import RolloutBatch

from .base import (
    AlgoConfig,
    Algorithm,
    adam,
    check,
    check_nonnegative,
    check_positive,
    compute_advantages,
    explained_variance,
    normalize,
)


@dataclass
class PPOConfig(AlgoConfig):
    """PPO for continuous control: CleanRL's ppo_continuous_action defaults (``algo=ppo``)."""

    name: str = "ppo"
    num_minibatches: int = 32
    update_epochs: int = 10
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    normalize_advantages: bool = True
    target_kl: float | None = None
    adam_eps: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("clip_coef", self.clip_coef)
        check(self.update_epochs >= 1, f"update_epochs must be >= 1, got {self.update_epochs}")
        check(self.num_minibatches >= 1, f"num_minibatches must be >= 1, got {self.num_minibatches}")
        check_nonnegative("ent_coef", self.ent_coef)
        check_nonnegative("vf_coef", self.vf_coef)
        check(
            self.target_kl is None or self.target_kl > 0,
            f"target_kl must be > 0 or null, got {self.target_kl}",
        )


@register_algorithm("ppo")
class PPO(Algorithm):
    Config = PPOConfig

    def __init__(self, cfg: PPOConfig, policy, *, seed: int = 0) -> None:
        super().__init__(cfg, policy, seed=seed)
        self.params = list(policy.parameters())
        self.optimizer = adam(self.params, cfg.learning_rate, cfg.adam_eps)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        cfg = self.cfg
        lr = self.annealed_lr(cfg.learning_rate)
        self.set_lr(self.optimizer, lr)
        batch = compute_advantages(batch, cfg.gamma, cfg.gae_lambda)

        stats: dict[str, list[float]] = {
            k: [] for k in ("policy_loss", "value_loss", "entropy", "clip_fraction")
        }
        approx_kl = torch.zeros(())
        for _epoch in range(cfg.update_epochs):
            for mb in batch.minibatches(cfg.num_minibatches, self.generator):
                out = self.policy.evaluate(mb.obs, mb.actions)
                advantages = mb.valid(mb.advantages)
                if cfg.normalize_advantages:
                    advantages = normalize(advantages)
                policy_loss, clip_fraction, approx_kl = ops.clipped_surrogate_loss(
                    mb.valid(out.logp), mb.valid(mb.old_logp), advantages, cfg.clip_coef
                )

                # clip_vloss: the new value is kept within clip_coef of the one used to collect
                value_loss = ops.clipped_value_loss(
                    mb.valid(out.value),
                    mb.valid(mb.old_values),
                    mb.valid(mb.returns),
                    cfg.clip_coef if cfg.clip_vloss else math.inf,
                )
                entropy = mb.valid(out.entropy).mean()

                loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.clip_and_step(self.optimizer, self.params)

                stats["policy_loss"].append(policy_loss.item())
                stats["value_loss"].append(value_loss.item())
                stats["entropy"].append(entropy.item())
                stats["clip_fraction"].append(clip_fraction.item())
            if cfg.target_kl is not None and approx_kl.item() > cfg.target_kl:
                break

        valid = batch.mask
        values = batch.values if valid is None else batch.values[valid]
        returns = batch.returns if valid is None else batch.returns[valid]
        return {
            **{k: sum(v) / len(v) for k, v in stats.items()},
            "approx_kl": approx_kl.item(),
            "explained_variance": explained_variance(values, returns),
            "learning_rate": lr,
        }
