"""Seeded inputs for the op tests (CPU tensors; the CUDA tests move them to the device)."""

from __future__ import annotations

import torch


def make_gae(T, N, dtype=torch.float32, dones="random", seed=0):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=g, dtype=dtype)
    values = torch.randn(T, N, generator=g, dtype=dtype)
    if dones == "all":
        d = torch.ones(T, N, dtype=dtype)
    elif dones == "none":
        d = torch.zeros(T, N, dtype=dtype)
    else:
        d = (torch.rand(T, N, generator=g) < 0.1).to(dtype)
    last_value = torch.randn(N, generator=g, dtype=dtype)
    return rewards, values, d, last_value


def make_loss(shape, dtype=torch.float32, seed=0, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    logp = -1.0 + 0.5 * torch.randn(shape, generator=g, dtype=dtype)
    old_logp = logp + spread * torch.randn(shape, generator=g, dtype=dtype)
    advantages = torch.randn(shape, generator=g, dtype=dtype)
    return logp, old_logp, advantages


def make_value_loss(shape, dtype=torch.float32, seed=0, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    old_value = torch.randn(shape, generator=g, dtype=dtype)
    value = old_value + spread * torch.randn(shape, generator=g, dtype=dtype)
    returns = old_value + torch.randn(shape, generator=g, dtype=dtype)
    return value, old_value, returns
