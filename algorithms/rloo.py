"""REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to basics: revisiting REINFORCE style optimization
for learning from human feedback in LLMs"; the estimator of Kool et al. 2019).

The environment samples ``group_size = k`` responses to each prompt (text) or ``k`` whole episodes from
one start state (control: EnvSettings.grouped_episodes, envs/gym_env.py), in ``k`` consecutive columns. One
update:

1. the return of a column is the undiscounted sum of its rewards over its real steps (text: the score at the
   last token plus the per-token KL penalty the environment puts into the rewards);
2. the advantage of sample ``i`` is ``R_i - mean(R_j, j != i)`` over its group, the same on every step of
   the sample; no value function (the policy's critic head is neither used nor trained);
3. the REINFORCE loss ``-mean(log pi(a|s) * A)`` over all real steps, written as ``-mean(ratio * A)`` with
   ``ratio = pi / pi_old`` so that ``update_epochs`` / ``num_minibatches`` > 1 stay importance-weighted (the
   gradient of the first step is exactly REINFORCE's); ``clip_coef`` adds PPO's clipping (off by default).
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
    column_returns,
    leave_one_out_advantages,
    normalize,
    with_column_advantages,
)


@dataclass
class RLOOConfig(AlgoConfig):
    """RLOO: REINFORCE with a leave-one-out baseline over groups of samples (``algo=rloo``)."""

    name: str = "rloo"
    group_size: int = 4  # samples per prompt / start state (the paper's k: 2 and 4)
    num_envs: int = 16  # 4 groups of 4 (control); text: the family's algo_defaults
    num_steps: int = 1000  # one whole episode per column, up to this many steps (MuJoCo's time limit)
    learning_rate: float = 3e-4
    update_epochs: int = 1  # passes over the batch (1: plain on-policy REINFORCE)
    num_minibatches: int = 1  # whole columns per minibatch
    clip_coef: float | None = None  # PPO ratio clipping for update_epochs/num_minibatches > 1; null: off
    normalize_advantages: bool = False  # the paper uses the raw leave-one-out advantages

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.group_size >= 2, f"group_size must be >= 2 (a leave-one-out baseline), got {self.group_size}"
        )
        check(
            self.num_envs % self.group_size == 0,
            f"num_envs ({self.num_envs}) must be a multiple of group_size ({self.group_size})",
        )
        check(self.update_epochs >= 1, f"update_epochs must be >= 1, got {self.update_epochs}")
        check(self.num_minibatches >= 1, f"num_minibatches must be >= 1, got {self.num_minibatches}")
        check(
            self.clip_coef is None or self.clip_coef > 0,
            f"clip_coef must be > 0 or null (no clipping), got {self.clip_coef}",
        )


@register_algorithm("rloo")
class RLOO(Algorithm):
    Config = RLOOConfig

    @classmethod
    def env_settings(cls, cfg: RLOOConfig) -> dict[str, Any]:
        # k samples per prompt (text) or per start state (control), in consecutive columns
        return {**super().env_settings(cfg), "responses_per_prompt": cfg.group_size, "grouped_episodes": True}

    def __init__(self, cfg: RLOOConfig, policy, *, seed: int = 0) -> None:
        super().__init__(cfg, policy, seed=seed)
        self.params = policy.actor_parameters()  # no critic: the value head stays as it is
        self.optimizer = adam(self.params, cfg.learning_rate)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        cfg = self.cfg
        lr = self.annealed_lr(cfg.learning_rate)
        self.set_lr(self.optimizer, lr)
        check_groups(batch, cfg.group_size, "rloo")
        returns = column_returns(batch)
        column_advantages = leave_one_out_advantages(returns, cfg.group_size)
        batch = with_column_advantages(batch, column_advantages, returns)

        stats: dict[str, list[float]] = {
            k: [] for k in ("policy_loss", "entropy", "clip_fraction", "grad_norm")
        }
        approx_kl = torch.zeros(())
        num_minibatches = min(cfg.num_minibatches, batch.minibatch_units)
        for _epoch in range(cfg.update_epochs):
            for mb in batch.minibatches(num_minibatches, self.generator):
                out = self.policy.evaluate(mb.obs, mb.actions)
                advantages = mb.valid(mb.advantages)
                if cfg.normalize_advantages:
                    advantages = normalize(advantages)
                logp, old_logp = mb.valid(out.logp), mb.valid(mb.old_logp)
                if cfg.clip_coef is None:
                    log_ratio = logp - old_logp
                    ratio = log_ratio.exp()
                    policy_loss = -(ratio * advantages).mean()  # = -mean(logp * A) in gradient at ratio 1
                    with torch.no_grad():
                        clip_fraction = torch.zeros(())
                        approx_kl = ((ratio - 1) - log_ratio).mean()
                else:
                    policy_loss, clip_fraction, approx_kl = ops.clipped_surrogate_loss(
                        logp, old_logp, advantages, cfg.clip_coef
                    )
                self.optimizer.zero_grad(set_to_none=True)
                policy_loss.backward()
                grad_norm = self.clip_and_step(self.optimizer, self.params)

                stats["policy_loss"].append(policy_loss.item())
                stats["entropy"].append(mb.valid(out.entropy).mean().item())
                stats["clip_fraction"].append(float(clip_fraction))
                stats["grad_norm"].append(grad_norm)

        return {
            **{k: sum(v) / len(v) for k, v in stats.items()},
            "approx_kl": approx_kl.item(),
            "return_mean": returns.mean().item(),
            "advantage_abs_mean": column_advantages.abs().mean().item(),
            "learning_rate": lr,
        }
