"""Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath), outcome supervision.

The environment samples ``group_size = k`` responses to each prompt (text) or ``k`` whole episodes from
one start state (control: EnvSettings.grouped_episodes, envs/gym_env.py), in ``k`` consecutive columns. One
update:

1. the return of a column is the undiscounted sum of its rewards over its real steps;
2. the advantage of sample ``i`` is ``(R_i - mean(R_group)) / (std(R_group) + eps)`` (sample std), the same
   on every step of the sample; no value function (the critic head is neither used nor trained);
3. ``update_epochs`` passes over ``num_minibatches`` shuffled minibatches of whole columns, each one step on
   PPO's clipped ratio objective. ``loss_aggregation="sequence"`` averages over each sample's steps, then
   over samples (the paper's ``1/G sum_i 1/|o_i| sum_t``); ``"token"`` averages over all steps at once.

The KL to the reference model (text: the SFT model), one of two ways:

* ``kl_coef: null`` (default): in the reward, as the environment puts it there (``env.kl_beta`` per token,
  InstructGPT's and RLOO's way);
* ``kl_coef: beta`` (the paper: 0.04): in the loss. The environment leaves it out of the rewards
  (``EnvSettings.kl_in_reward``) and hands the reference's log-probabilities of the sampled tokens
  (``batch.ref_logp``); the loss adds ``beta`` times the paper's unbiased estimator
  ``pi_ref/pi - log(pi_ref/pi) - 1`` per step, aggregated as the surrogate is. Environments without a
  reference policy (gymnasium) refuse it before the run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rlarena import ops
from rlarena.registry import register_algorithm
from rlarena.rollout import RolloutBatch

from .base import (
    AlgoConfig,
    Algorithm,
    adam,
    check,
    check_groups,
    check_positive,
    column_returns,
    group_normalized_advantages,
    with_column_advantages,
)


@dataclass
class GRPOConfig(AlgoConfig):
    """GRPO: PPO's clipped objective on group-normalized returns, no critic (``algo=grpo``)."""

    name: str = "grpo"
    group_size: int = 4  # samples per prompt / start state (the paper: 64 per question)
    num_envs: int = 16  # 4 groups of 4 (control); text: the family's algo_defaults
    num_steps: int = 1000  # one whole episode per column, up to this many steps (MuJoCo's time limit)
    learning_rate: float = 3e-4
    update_epochs: int = 4
    num_minibatches: int = 4  # whole columns per minibatch
    clip_coef: float = 0.2
    group_std_eps: float = 1e-4  # added to the group's std (a group of equal returns: advantages 0)
    loss_aggregation: str = "sequence"  # sequence: mean per sample, then over samples; token: over all steps
    target_kl: float | None = None  # stop the epochs early when the approximate KL exceeds it
    kl_coef: float | None = None  # null: the KL to the reference is in the env's reward; else in the loss

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.group_size >= 2, f"group_size must be >= 2 (a group std), got {self.group_size}")
        check(
            self.num_envs % self.group_size == 0,
            f"num_envs ({self.num_envs}) must be a multiple of group_size ({self.group_size})",
        )
        check(self.update_epochs >= 1, f"update_epochs must be >= 1, got {self.update_epochs}")
        check(self.num_minibatches >= 1, f"num_minibatches must be >= 1, got {self.num_minibatches}")
        check_positive("clip_coef", self.clip_coef)
        check_positive("group_std_eps", self.group_std_eps)
        check(
            self.loss_aggregation in ("sequence", "token"),
            f"loss_aggregation must be 'sequence' or 'token', got {self.loss_aggregation!r}",
        )
        check(
            self.target_kl is None or self.target_kl > 0,
            f"target_kl must be > 0 or null, got {self.target_kl}",
        )
        check(
            self.kl_coef is None or (self.kl_coef >= 0 and self.kl_coef < float("inf")),
            f"kl_coef must be a finite number >= 0 or null, got {self.kl_coef}",
        )


@register_algorithm("grpo")
class GRPO(Algorithm):
    Config = GRPOConfig

    @classmethod
    def env_settings(cls, cfg: GRPOConfig) -> dict[str, Any]:
        # k samples per prompt (text) or per start state (control), in consecutive columns
        return {
            **super().env_settings(cfg),
            "responses_per_prompt": cfg.group_size,
            "grouped_episodes": True,
            "kl_in_reward": cfg.kl_coef is None,  # else the loss holds it (the batch's ref_logp)
        }

    def __init__(self, cfg: GRPOConfig, policy, *, seed: int = 0) -> None:
        super().__init__(cfg, policy, seed=seed)
        self.params = policy.actor_parameters()  # no critic: the value head stays as it is
        self.optimizer = adam(self.params, cfg.learning_rate)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        cfg = self.cfg
        lr = self.annealed_lr(cfg.learning_rate)
        self.set_lr(self.optimizer, lr)
        check_groups(batch, cfg.group_size, "grpo")
        if cfg.kl_coef is not None and batch.ref_logp is None:
            raise ValueError(
                "algo.kl_coef needs the reference policy's log-probabilities (batch.ref_logp), which this "
                "environment does not provide; leave algo.kl_coef null"
            )
        returns = column_returns(batch)
        column_advantages = group_normalized_advantages(returns, cfg.group_size, cfg.group_std_eps)
        batch = with_column_advantages(batch, column_advantages, returns)

        stats: dict[str, list[float]] = {
            k: [] for k in ("policy_loss", "entropy", "clip_fraction", "grad_norm", "kl_loss")
        }
        approx_kl = torch.zeros(())
        num_minibatches = min(cfg.num_minibatches, batch.minibatch_units)
        for _epoch in range(cfg.update_epochs):
            for mb in batch.minibatches(num_minibatches, self.generator):
                out = self.policy.evaluate(mb.obs, mb.actions)
                advantages = mb.valid(mb.advantages)
                step_weight = torch.ones_like(advantages)
                if cfg.loss_aggregation == "sequence" and mb.mask is not None:
                    # The fused op averages over steps; weighting each step by
                    # num_valid / (columns * its column's length) turns that into a mean per sample, then
                    # over samples (a positive weight passes through PPO's min(.) unchanged).
                    lengths = mb.mask.sum(0).clamp(min=1)
                    weight = mb.num_valid / (mb.mask.shape[1] * lengths)
                    step_weight = mb.valid(weight[None].expand_as(mb.mask))
                    advantages = advantages * step_weight
                logp = mb.valid(out.logp)
                policy_loss, clip_fraction, approx_kl = ops.clipped_surrogate_loss(
                    logp, mb.valid(mb.old_logp), advantages, cfg.clip_coef
                )
                loss = policy_loss
                if cfg.kl_coef is not None:  # DeepSeekMath's estimator of KL(pi || pi_ref), >= 0 per step
                    log_ratio = mb.valid(mb.ref_logp) - logp
                    kl_loss = ((log_ratio.exp() - log_ratio - 1) * step_weight).mean()
                    loss = policy_loss + cfg.kl_coef * kl_loss
                    stats["kl_loss"].append(kl_loss.item())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = self.clip_and_step(self.optimizer, self.params)

                stats["policy_loss"].append(policy_loss.item())
                stats["entropy"].append(mb.valid(out.entropy).mean().item())
                stats["clip_fraction"].append(clip_fraction.item())
                stats["grad_norm"].append(grad_norm)
            if cfg.target_kl is not None and approx_kl.item() > cfg.target_kl:
                break

        return {
            **{k: sum(v) / len(v) for k, v in stats.items() if v},
            "approx_kl": approx_kl.item(),
            "return_mean": returns.mean().item(),
            "group_return_std": returns.reshape(-1, cfg.group_size).std(1).mean().item(),
            "learning_rate": lr,
        }
