"""Seeded inputs for the op and algorithm tests (CPU tensors; the CUDA tests move them to the device)."""

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


def policy_batch(policy, obs_dim: int, T: int = 16, N: int = 2, seed: int = 0, obs_scale: float = 1.0):
    """A rollout ``policy`` could have collected on random observations: its own sampled actions, log-probs
    and values (the draws seeded by ``seed``: the same batch for every copy of the policy), random rewards
    and episode ends."""
    from rlarena.rollout import RolloutBatch

    g = torch.Generator().manual_seed(seed)
    obs = obs_scale * torch.randn(T, N, obs_dim, generator=g)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        out = policy.act(obs.reshape(T * N, obs_dim))
    return RolloutBatch(
        obs=obs,
        actions=out.action.reshape(T, N, -1),
        logp=out.logp.reshape(T, N),
        values=out.value.reshape(T, N),
        rewards=torch.randn(T, N, generator=g),
        dones=(torch.rand(T, N, generator=g) < 0.1).float(),
        last_value=torch.zeros(N),
    )


def cuda_kernels_registered() -> bool:
    """A CUDA device, and rlarena built with its CUDA kernels (what the CUDA tests need to run)."""
    from rlarena import ops

    if ops.backend() != "compiled" or not torch.cuda.is_available():
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("rlarena::gae", "CUDA")


def on_every_isa(fn):
    """``[fn()]`` run under each ISA variant of rlarena's kernels (baseline, AVX2, AVX-512; clamped to what
    this CPU has), the setting restored after."""
    previous = torch.ops.rlarena._config("isa", -1)
    try:
        out = []
        for isa in (0, 1, 2):
            torch.ops.rlarena._config("isa", isa)
            out.append(fn())
        return out
    finally:
        torch.ops.rlarena._config("isa", previous)
