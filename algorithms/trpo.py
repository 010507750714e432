"""Trust Region Policy Optimization (Schulman et al. 2015; as in Spinning Up and sb3-contrib).

One update:
1. GAE advantages (normalized).
2. Policy gradient ``g`` of the surrogate ``mean(ratio * A)`` at the current parameters.
3. Natural-gradient direction ``x ~= F^-1 g`` by conjugate gradient on Fisher-vector products (the Hessian of
   ``KL(pi_old || pi)``, never formed explicitly), damped by ``cg_damping``.
4. Step scaled so that the quadratic KL model equals ``max_kl``; backtracking line search accepts the first
   shrunken step whose *measured* KL is <= ``max_kl`` and whose surrogate improves; if none does, the
   parameters are left unchanged.
5. Separate value-function regression: ``vf_epochs`` passes of minibatch Adam on the returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.distributions import kl_divergence
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from rlarena import blocks
from rlarena.registry import register_algorithm
from rlarena.rollout import EvalOutput, Minibatch, RolloutBatch

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
class TRPOConfig(AlgoConfig):
    """TRPO: sb3-contrib's defaults (``algo=trpo``)."""

    name: str = "trpo"
    num_steps: int = 2048
    max_kl: float = 0.01
    cg_iters: int = 15
    cg_damping: float = 0.1
    line_search_shrink: float = 0.8
    line_search_max_iter: int = 10
    learning_rate: float = 1e-3  # the value function's Adam learning rate (the policy step is set by max_kl)
    anneal_lr: bool = False  # sb3-contrib's TRPO keeps the value function's learning rate constant
    vf_epochs: int = 10
    vf_minibatches: int = 16
    normalize_advantages: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("max_kl", self.max_kl)
        check(self.cg_iters >= 1, f"cg_iters must be >= 1, got {self.cg_iters}")
        check_nonnegative("cg_damping", self.cg_damping)
        check(
            0 < self.line_search_shrink < 1,
            f"line_search_shrink must be in (0, 1), got {self.line_search_shrink}",
        )
        check(
            self.line_search_max_iter >= 1,
            f"line_search_max_iter must be >= 1, got {self.line_search_max_iter}",
        )
        check(
            self.vf_epochs >= 0 and self.vf_minibatches >= 1, "vf_epochs must be >= 0 and vf_minibatches >= 1"
        )


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, tol: float = 1e-10
) -> torch.Tensor:
    """Solve ``A x = b`` for symmetric positive-definite ``A`` given only ``x -> A x``."""
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x, with x = 0
    p = r.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        Ap = matvec(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def flat_grad(y: torch.Tensor, params: list[torch.nn.Parameter], **kwargs) -> torch.Tensor:
    grads = torch.autograd.grad(y, params, allow_unused=True, **kwargs)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


@register_algorithm("trpo")
class TRPO(Algorithm):
    Config = TRPOConfig

    def __init__(self, cfg: TRPOConfig, policy, *, seed: int = 0) -> None:
        super().__init__(cfg, policy, seed=seed)
        self.actor_params = policy.actor_parameters()
        self.critic_params = policy.critic_parameters()
        self.critic_optimizer = adam(self.critic_params, cfg.learning_rate)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_optimizer}

    # ---- pieces, each testable on its own ---------------------------------------------------------------

    def surrogate(self, out: EvalOutput, mb: Minibatch, advantages: torch.Tensor) -> torch.Tensor:
        return blocks.mean(torch.exp(mb.valid(out.logp) - mb.valid(mb.old_logp)) * advantages)

    def mean_kl(self, old: EvalOutput, new: EvalOutput, mb: Minibatch) -> torch.Tensor:
        return mb.valid(kl_divergence(old.dist, new.dist)).mean()

    def fisher_vector_product(self, mb: Minibatch, old: EvalOutput) -> Callable[[torch.Tensor], torch.Tensor]:
        """``v -> (F + damping I) v`` where F is the Hessian of the mean KL at the current parameters."""
        kl = self.mean_kl(old, self.policy.evaluate(mb.obs, mb.actions), mb)
        grad_kl = flat_grad(kl, self.actor_params, create_graph=True)

        def fvp(v: torch.Tensor) -> torch.Tensor:
            return flat_grad(grad_kl @ v, self.actor_params, retain_graph=True) + self.cfg.cg_damping * v

        return fvp

    # ---- the update -------------------------------------------------------------------------------------

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        cfg = self.cfg
        batch = compute_advantages(batch, cfg.gamma, cfg.gae_lambda)
        mb = batch.as_minibatch()
        advantages = mb.valid(mb.advantages)
        if cfg.normalize_advantages:
            advantages = normalize(advantages)

        with torch.no_grad():  # the old policy: a distribution with no graph behind it
            old = self.policy.evaluate(mb.obs, mb.actions)
        out = self.policy.evaluate(mb.obs, mb.actions)
        surrogate_before = self.surrogate(out, mb, advantages)
        g = flat_grad(surrogate_before, self.actor_params)

        fvp = self.fisher_vector_product(mb, old)
        direction = conjugate_gradient(fvp, g, cfg.cg_iters)
        # The quadratic model of the KL at a step a*d is a^2 * shs: the full step puts it at max_kl.
        shs = 0.5 * (direction @ fvp(direction))
        full_step = torch.sqrt(cfg.max_kl / shs.clamp_min(1e-12)) * direction

        old_params = parameters_to_vector(self.actor_params).detach().clone()
        accepted, kl_after, surrogate_after, fraction = False, 0.0, surrogate_before.item(), 0.0
        with torch.no_grad():
            for i in range(cfg.line_search_max_iter):
                fraction = cfg.line_search_shrink**i
                vector_to_parameters(old_params + fraction * full_step, self.actor_params)
                new = self.policy.evaluate(mb.obs, mb.actions)
                kl = self.mean_kl(old, new, mb).item()
                surr = self.surrogate(new, mb, advantages).item()
                if kl <= cfg.max_kl and surr > surrogate_before.item():
                    accepted, kl_after, surrogate_after = True, kl, surr
                    break
            if not accepted:
                vector_to_parameters(old_params, self.actor_params)

        value_loss = self._fit_value(batch)
        return {
            "surrogate_improvement": surrogate_after - surrogate_before.item(),
            "kl": kl_after,
            "line_search_accepted": float(accepted),
            "step_fraction": fraction if accepted else 0.0,
            "value_loss": value_loss,
            "entropy": mb.valid(old.entropy).mean().item(),
            "explained_variance": explained_variance(mb.valid(mb.old_values), mb.valid(mb.returns)),
        }

    def _fit_value(self, batch: RolloutBatch) -> float:
        self.set_lr(self.critic_optimizer, self.annealed_lr(self.cfg.learning_rate))
        value_loss = torch.zeros(())
        for _ in range(self.cfg.vf_epochs):
            for mb in batch.minibatches(min(self.cfg.vf_minibatches, batch.minibatch_units), self.generator):
                value = mb.valid(self.policy.evaluate(mb.obs, mb.actions).value)
                value_loss = 0.5 * blocks.mean((value - mb.valid(mb.returns)) ** 2)
                self.critic_optimizer.zero_grad(set_to_none=True)
                value_loss.backward()
                self.clip_and_step(self.critic_optimizer, self.critic_params)
        return value_loss.item()
