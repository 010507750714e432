"""Front of the compiled ops, with pure-torch references.

``gae`` and ``clipped_surrogate_loss`` dispatch to the ``torch.ops.rlarena`` kernels when the extension
``rlarena._C`` is built, and fall back to the references otherwise.
"""

from __future__ import annotations

import torch


def gae_reference(rewards, values, dones, last_value, gamma: float, lam: float):
    """Generalized advantage estimation, time-major ``[T, N]``; see the module docs for the conventions."""
    T = rewards.shape[0]
    advantages = torch.empty_like(rewards)
    next_adv = torch.zeros_like(last_value)
    next_value = last_value
    for t in range(T - 1, -1, -1):
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * not_done * next_value - values[t]
        next_adv = delta + gamma * lam * not_done * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values


def clipped_surrogate_loss_reference(logp, old_logp, advantages, clip_coef: float):
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)
    loss = -surrogate.mean()
    with torch.no_grad():
        clip_fraction = ((ratio - 1).abs() > clip_coef).to(logp.dtype).mean()
        approx_kl = ((ratio - 1) - log_ratio).mean()
    return loss, clip_fraction, approx_kl


gae = gae_reference
clipped_surrogate_loss = clipped_surrogate_loss_reference
