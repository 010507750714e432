"""Proximal Policy Optimization (Schulman et al. 2017), following "The 37 implementation details of PPO".

One update: GAE advantages, then ``update_epochs`` passes over shuffled minibatches of the clipped surrogate
(fused op), the (optionally clipped) value loss and an entropy bonus, with gradient-norm clipping, a linearly
annealed learning rate and an optional early stop on the approximate KL.

``minibatch_step`` below is the definition, and runs on the layers every algorithm shares: on the default
policy, ``policy.evaluate`` is one compiled op with autograd (``rlarena.policy_ops``), the losses are fused
ops, and the mean, advantage normalization, clipping and Adam are ``rlarena.blocks``/``rlarena.optim``
kernels with one summation order (the same bits on every x86-64 CPU).

For the default Gaussian MLP on the CPU each pass still runs as one compiled call by default
(``ops.ppo_gaussian_mlp_epoch_``: the same shuffles and math within float32 rounding;
``compiled_update=false`` runs ``minibatch_step``): the shared path does not yet hold PPO's speed target
(3x stable-baselines3 per iteration at HalfCheetah-v5 8x256: 2.43x measured; docs/performance.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rlarena import blocks, ops
from rlarena.registry import register_algorithm
from rlarena.rollout import Minibatch, RolloutBatch

from .base import (
    AlgoConfig,
    Algorithm,
    adam,
    adam_state,
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
    # Run each epoch as one compiled call when the policy is the default Gaussian MLP on the CPU (float32
    # rounding apart, minibatch_step's results; same bits on every x86-64 CPU). False: minibatch_step.
    compiled_update: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("clip_coef", self.clip_coef)
        check(self.update_epochs >= 1, f"update_epochs must be >= 1, got {self.update_epochs}")
        samples = self.num_envs * self.num_steps
        check(
            1 <= self.num_minibatches <= samples,
            f"num_minibatches must be >= 1 and <= num_envs x num_steps ({samples} samples), "
            f"got {self.num_minibatches}",
        )
        check_positive("adam_eps", self.adam_eps)
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

        compiled_epoch = self.compiled_epoch(batch, lr)
        # per minibatch: policy loss, value loss, entropy, clip fraction, approx KL
        rows: list[list[float]] = []
        for _epoch in range(cfg.update_epochs):
            if compiled_epoch is not None:
                # the shuffle batch.minibatches() draws
                rows += compiled_epoch(torch.randperm(batch.minibatch_units, generator=self.generator))
            else:
                minibatches = batch.minibatches(cfg.num_minibatches, self.generator)
                rows += [self.minibatch_step(mb) for mb in minibatches]
            if cfg.target_kl is not None and rows[-1][4] > cfg.target_kl:
                break

        valid = batch.mask
        values = batch.values if valid is None else batch.values[valid]
        returns = batch.returns if valid is None else batch.returns[valid]
        means = [sum(column) / len(column) for column in zip(*rows)]
        return {
            **dict(zip(("policy_loss", "value_loss", "entropy", "clip_fraction"), means)),
            "approx_kl": rows[-1][4],
            "explained_variance": explained_variance(values, returns),
            "learning_rate": lr,
        }

    def minibatch_step(self, mb: Minibatch) -> list[float]:
        """One gradient step; returns the policy loss, value loss, entropy, clip fraction and approx KL."""
        cfg = self.cfg
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
        entropy = blocks.mean(mb.valid(out.entropy))

        loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.clip_and_step(self.optimizer, self.params)
        return [t.item() for t in (policy_loss, value_loss, entropy, clip_fraction, approx_kl)]

    def compiled_epoch(self, batch: RolloutBatch, lr: float):
        """One epoch over ``batch`` as ``ops.ppo_gaussian_mlp_epoch_`` (a function of the shuffle returning
        the minibatches' statistics), or None where it does not apply: not asked for, the fast path off, a
        policy that is not a ``GaussianMLP``, padded or non-tensor batches, not float32 on the CPU."""
        cfg = self.cfg
        net = self.policy.gaussian_mlp()
        if not cfg.compiled_update or not ops.fast_path_enabled() or net is None:
            return None
        if batch.layout != "flat" or batch.mask is not None or not isinstance(batch.obs, torch.Tensor):
            return None
        params = net.parameters()
        tensors = (batch.obs, batch.actions, *params)
        if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
            return None
        state = adam_state(self.optimizer, params)
        if state is None:
            return None
        units = batch.minibatch_units

        def flat(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(units, *x.shape[2:]).contiguous()

        group = self.optimizer.param_groups[0]
        data = [flat(x) for x in (batch.obs, batch.actions, batch.logp, batch.advantages, batch.returns)]
        data.append(flat(batch.values))

        def epoch(perm: torch.Tensor) -> list[list[float]]:
            stats = ops.ppo_gaussian_mlp_epoch_(
                *data, perm, cfg.num_minibatches, net, *state,
                clip_coef=cfg.clip_coef, value_clip=cfg.clip_coef if cfg.clip_vloss else math.inf,
                ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, normalize_advantages=cfg.normalize_advantages,
                max_grad_norm=cfg.max_grad_norm, lr=lr, betas=group["betas"], eps=group["eps"],
            )  # fmt: skip
            if not torch.isfinite(stats[:, 5]).all():
                raise self.non_finite_gradient()
            return stats[:, :5].tolist()

        return epoch
