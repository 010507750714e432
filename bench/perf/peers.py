"""Peer implementations for the speed benchmarks, and the inputs they run on.

The peers are written here, in the style of the code users would otherwise run (none is copied):

* ``gae_torch_loop``: a reverse Python loop over the rows of torch tensors, as in CleanRL's PPO.
* ``gae_numpy_loop``: the same loop over numpy arrays, as in stable-baselines3's rollout buffer.
* ``gae_torchrl``: TorchRL's ``vec_generalized_advantage_estimate`` (only when torchrl is installed; the
  ``[T, N]`` rollout is viewed as TorchRL's ``[N, T, 1]`` layout, as a user of ``[T, N]`` buffers would).
* ``memory_floor``: two elementwise torch ops that read four arrays and write two, all ``[T, N]``: at least
  the bytes GAE must move (it reads rewards, values, dones and writes advantages and returns).
* ``loss_composed``: the PPO clipped loss composed of torch ops, forward + backward through autograd.
  rlarena is timed two ways against it: ``loss_rlarena`` (the fused op, then ``loss.backward()``) and
  ``loss_rlarena_fused`` (``clipped_surrogate_loss_and_grad``: the same kernel returning the loss, its
  statistics and ``d loss / d logp`` in one call, without the autograd engine).
* ``value_loss_composed``: PPO's clipped value loss composed of torch ops (as in CleanRL), forward + backward;
  ``value_loss_rlarena`` is the fused op, then ``loss.backward()``.
* ``autograd_floor``: ``logp.sum().backward()``, the fixed cost of one trip through the autograd engine
  that any loss pays: it bounds the attainable speed-up at small ``n``.
"""

from __future__ import annotations

import numpy as np
import torch

from rlarena import ops

GAMMA = 0.99
LAM = 0.95
CLIP = 0.2
GAE_SHAPES = ((2048, 1), (2048, 16), (128, 2048), (64, 8192))
LOSS_SIZES = (64, 4096, 65536, 1048576)


def gae_inputs(T: int, N: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=g, dtype=dtype)
    values = torch.randn(T, N, generator=g, dtype=dtype)
    dones = (torch.rand(T, N, generator=g) < 0.02).to(dtype)
    last_value = torch.randn(N, generator=g, dtype=dtype)
    return rewards, values, dones, last_value


def loss_inputs(n: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logp = -1.0 + 0.3 * torch.randn(n, generator=g, dtype=dtype)
    old_logp = logp + 0.15 * torch.randn(n, generator=g, dtype=dtype)
    advantages = torch.randn(n, generator=g, dtype=dtype)
    return logp.requires_grad_(), old_logp, advantages


# ---------------------------------------------------------------------------------------------------- GAE


def gae_rlarena(rewards, values, dones, last_value, gamma=GAMMA, lam=LAM):
    return ops.gae(rewards, values, dones, last_value, gamma, lam)


def gae_torch_loop(rewards, values, dones, last_value, gamma=GAMMA, lam=LAM):
    """CleanRL style: one row of torch ops per step, backwards in time."""
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(num_steps)):
        next_values = last_value if t == num_steps - 1 else values[t + 1]
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_values * not_done - values[t]
        running = delta + gamma * lam * not_done * running
        advantages[t] = running
    return advantages, advantages + values


def gae_numpy_loop(rewards, values, dones, last_value, gamma=GAMMA, lam=LAM):
    """stable-baselines3 style: the same loop over numpy arrays (the buffers SB3 keeps)."""
    n_steps = rewards.shape[0]
    advantages = np.zeros_like(rewards)
    last_gae = np.zeros_like(last_value)
    for step in reversed(range(n_steps)):
        next_values = last_value if step == n_steps - 1 else values[step + 1]
        next_non_terminal = 1.0 - dones[step]
        delta = rewards[step] + gamma * next_values * next_non_terminal - values[step]
        last_gae = delta + gamma * lam * next_non_terminal * last_gae
        advantages[step] = last_gae
    return advantages, advantages + values


def torchrl_gae_fn():
    """TorchRL's vectorized GAE, or None when torchrl is not installed."""
    try:
        from torchrl.objectives.value.functional import vec_generalized_advantage_estimate
    except Exception:  # ImportError, or a torchrl built for another torch
        return None
    return vec_generalized_advantage_estimate


def gae_torchrl(rewards, values, dones, last_value, gamma=GAMMA, lam=LAM, _fn=None):
    """TorchRL: [T, N] seen as [N, T, 1] (batch, time, feature); next values shifted by one step."""
    fn = _fn or torchrl_gae_fn()
    next_values = torch.cat([values[1:], last_value[None]], 0)
    done = dones.T.unsqueeze(-1).bool()
    adv, ret = fn(
        gamma,
        lam,
        values.T.unsqueeze(-1),
        next_values.T.unsqueeze(-1),
        rewards.T.unsqueeze(-1),
        done,
        terminated=done,
    )
    return adv.squeeze(-1).T, ret.squeeze(-1).T


def memory_floor(a, b, c, d):
    """Two elementwise ops reading four [T, N] arrays and writing two: the least traffic GAE needs."""
    return torch.add(a, b), torch.add(c, d)


# --------------------------------------------------------------------------------------- clipped loss


def loss_rlarena(logp, old_logp, advantages, clip=CLIP):
    logp.grad = None
    loss, clip_fraction, approx_kl = ops.clipped_surrogate_loss(logp, old_logp, advantages, clip)
    loss.backward()
    return loss, clip_fraction, approx_kl


def loss_rlarena_fused(logp, old_logp, advantages, clip=CLIP):
    logp.grad = None
    return ops.clipped_surrogate_loss_and_grad(logp, old_logp, advantages, clip)


def loss_composed(logp, old_logp, advantages, clip=CLIP):
    logp.grad = None
    loss, clip_fraction, approx_kl = ops.clipped_surrogate_loss_reference(logp, old_logp, advantages, clip)
    loss.backward()
    return loss, clip_fraction, approx_kl


def value_loss_inputs(n: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    old_value = torch.randn(n, generator=g, dtype=dtype)
    value = (old_value + 0.3 * torch.randn(n, generator=g, dtype=dtype)).requires_grad_()
    returns = old_value + torch.randn(n, generator=g, dtype=dtype)
    return value, old_value, returns


def value_loss_rlarena(value, old_value, returns, clip=CLIP):
    value.grad = None
    loss = ops.clipped_value_loss(value, old_value, returns, clip)
    loss.backward()
    return loss


def value_loss_composed(value, old_value, returns, clip=CLIP):
    value.grad = None
    loss = ops.clipped_value_loss_reference(value, old_value, returns, clip)
    loss.backward()
    return loss


def autograd_floor(logp, old_logp=None, advantages=None, clip=CLIP):
    logp.grad = None
    loss = logp.sum()
    loss.backward()
    return loss
