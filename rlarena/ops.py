"""Fused RL ops: generalized advantage estimation and PPO's clipped surrogate and clipped value losses.

``gae``, ``clipped_surrogate_loss``, ``clipped_surrogate_loss_and_grad`` (the same loss with its gradient
returned instead of going through autograd) and ``clipped_value_loss`` run the compiled ``torch.ops.rlarena``
kernels (C++/OpenMP on the CPU, CUDA on the GPU) when the
extension ``rlarena._C`` is built, and the pure-torch references (``*_reference``) otherwise: then a warning
says why, once. Set ``RLARENA_FORCE_REFERENCE=1`` to use the references on purpose; ``backend()`` says which
is in use.

Conventions (the whole project's): rollouts are time-major ``[T, N]``; ``dones[t] = 1`` means the episode
ended at step ``t``, so nothing is bootstrapped across it.

All ops take float32 or float64 (one dtype, one device for all inputs) and raise ``TypeError`` for other
dtypes, ``ValueError`` for shapes that do not fit, ``RuntimeError`` for mixed devices. Non-contiguous inputs
are accepted (copied once).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import numpy as np

from .activations import ACTIVATION_FUNCTIONS

__all__ = [
    "backend",
    "mlp_gaussian_act",
    "ppo_gaussian_mlp_epoch_",
    "PPO_EPOCH_STATS",
    "mlp_gaussian_act_reference",
    "observe_",
    "gaussian_policy_step_",
    "gaussian_policy_step_reference",
    "bind_gaussian_rollout",
    "bind_record_reward",
    "observe_reference",
    "record_action_",
    "record_action_reference",
    "record_reward_",
    "record_reward_reference",
    "clipped_surrogate_loss",
    "clipped_surrogate_loss_and_grad",
    "clipped_surrogate_loss_and_grad_reference",
    "clipped_surrogate_loss_reference",
    "clipped_value_loss",
    "clipped_value_loss_reference",
    "gae",
    "gae_reference",
]


# --------------------------------------------------------------------------------------------------------
# Pure-torch references (the definition of what the kernels compute).


def gae_reference(rewards, values, dones, last_value, gamma: float, lam: float):
    """Generalized advantage estimation, time-major ``[T, N]``; see ``gae`` for the conventions."""
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
    """PPO clipped surrogate loss composed of torch ops; see ``clipped_surrogate_loss``."""
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)
    loss = -surrogate.mean()
    with torch.no_grad():
        clip_fraction = ((ratio - 1).abs() > clip_coef).to(logp.dtype).mean()
        approx_kl = ((ratio - 1) - log_ratio).mean()
    return loss, clip_fraction, approx_kl


def clipped_surrogate_loss_and_grad_reference(logp, old_logp, advantages, clip_coef: float):
    """The composed loss and its gradient by autograd; see ``clipped_surrogate_loss_and_grad``."""
    with torch.enable_grad():
        leaf = logp.detach().requires_grad_(True)
        loss, clip_fraction, approx_kl = clipped_surrogate_loss_reference(
            leaf, old_logp, advantages, clip_coef
        )
        (grad_logp,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), clip_fraction, approx_kl, grad_logp


def clipped_value_loss_reference(value, old_value, returns, clip_coef: float = math.inf):
    """PPO's clipped value loss composed of torch ops; see ``clipped_value_loss``."""
    clipped = old_value + (value - old_value).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.maximum((value - returns) ** 2, (clipped - returns) ** 2).mean()


def mlp_gaussian_act_reference(obs, actor, critic, log_std, activation: str, deterministic: bool = False):
    """One collector step of an MLP actor-critic with a Gaussian head; see ``mlp_gaussian_act``. The ops of
    ``nn.Sequential`` and ``Independent(Normal(mean, exp(log_std)), 1)``'s ``sample`` (or the mean) and
    ``log_prob``."""
    act = ACTIVATION_FUNCTIONS[activation]

    def mlp(x, params):
        for i in range(0, len(params), 2):
            x = torch.nn.functional.linear(x, params[i], params[i + 1])
            if i + 2 < len(params):
                x = act(x)
        return x

    mean = mlp(obs, actor)
    value = mlp(obs, critic).squeeze(-1)
    scale = log_std.exp().expand_as(mean)
    action = mean.clone() if deterministic else torch.normal(mean, scale)
    var = scale**2
    logp = -((action - mean) ** 2) / (2 * var) - scale.log() - math.log(math.sqrt(2 * math.pi))
    return action, logp.sum(-1), value


def _running_update_(x, mean, var, count) -> None:
    """``RunningMeanStd.update`` (rlarena/normalize.py) on float64 tensors, in place."""
    n = x.shape[0]
    if n == 0:
        return
    if n == 1:
        batch_mean, batch_var = x[0], torch.zeros_like(x[0])
    else:
        batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
    total = count + n
    delta = batch_mean - mean
    mean.copy_(mean + delta * n / total)
    var.copy_((var * count + batch_var * n + delta.square() * count * n / total) / total)
    count.copy_(total)


def observe_reference(obs, t: int, raw_buf, obs_buf, mean, var, count, normalize: bool, clip: float) -> None:
    """The collector's observation bookkeeping at row ``t``; see ``observe_``."""
    raw_buf[t] = obs.to(raw_buf.dtype)
    if not normalize:
        obs_buf[t] = obs.to(obs_buf.dtype)
        return
    _running_update_(obs, mean, var, count)
    obs_buf[t] = ((obs - mean) / (var + 1e-8).sqrt()).clamp(-clip, clip).to(obs_buf.dtype)


RECORD_NON_FINITE, RECORD_ENDED, RECORD_CUT = 1, 2, 4  # record_reward_'s flags
RECORD_ACTED = 8  # bind_gaussian_rollout's record also acted on the next row


def record_action_reference(
    action, logp, value, t: int, actions, logp_buf, value_buf, env_actions, low, high, clip: bool
) -> None:
    """The collector's action bookkeeping at row ``t``; see ``record_action_``."""
    actions[t] = action
    logp_buf[t] = logp
    value_buf[t] = value
    env_actions[t] = torch.minimum(torch.maximum(action, low), high) if clip else action


def record_reward_reference(
    next_obs, reward, terminated, truncated, t: int, raw_rewards, rewards, dones, terminated_buf, discounted,
    ret_mean, ret_var, ret_count, normalize: bool, gamma: float, clip: float, episode_return, episode_length,
) -> int:  # fmt: skip
    """The collector's reward bookkeeping at row ``t``; see ``record_reward_``."""
    done = terminated | truncated
    flags = RECORD_ENDED * bool(done.any()) + RECORD_CUT * bool((truncated & ~terminated).any())
    if not (bool(torch.isfinite(next_obs).all()) and bool(torch.isfinite(reward).all())):
        return flags | RECORD_NON_FINITE
    raw_rewards[t] = reward.to(raw_rewards.dtype)
    dones[t] = done.to(dones.dtype)
    terminated_buf[t] = terminated
    episode_return += reward
    episode_length += 1
    if not normalize:
        rewards[t] = reward.to(rewards.dtype)
        return flags
    discounted.copy_(discounted * gamma + reward)
    _running_update_(discounted, ret_mean, ret_var, ret_count)
    discounted[done] = 0.0
    rewards[t] = (reward / (ret_var + 1e-8).sqrt()).clamp(-clip, clip).to(rewards.dtype)
    return flags


# --------------------------------------------------------------------------------------------------------
# Input checks of the reference path (the compiled kernels check the same in C++, with the same messages).


def _check_dtypes(op: str, names: tuple[str, ...], tensors: tuple[torch.Tensor, ...]) -> None:
    first = tensors[0]
    for name, t in zip(names, tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"rlarena.{op}: '{name}' must be a tensor, got {type(t).__name__}")
        if t is first and t.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"rlarena.{op}: '{name}' must be float32 or float64, got {t.dtype} "
                "(convert it with .float() or .double())"
            )
        if t.dtype != first.dtype:
            raise TypeError(
                f"rlarena.{op}: all inputs must have the same dtype, but '{names[0]}' is {first.dtype} "
                f"and '{name}' is {t.dtype} (convert it with .to({names[0]}.dtype))"
            )
        if t.device != first.device:
            raise RuntimeError(
                f"rlarena.{op}: all inputs must be on the same device, but '{names[0]}' is on "
                f"{first.device} and '{name}' is on {t.device}"
            )


def _check_gae_inputs(rewards, values, dones, last_value, gamma, lam) -> None:
    _check_dtypes("gae", ("rewards", "values", "dones", "last_value"), (rewards, values, dones, last_value))
    if rewards.dim() != 2:
        raise ValueError(f"rlarena.gae: rewards must be time-major [T, N], got shape {list(rewards.shape)}")
    for name, t in (("values", values), ("dones", dones)):
        if t.shape != rewards.shape:
            raise ValueError(
                f"rlarena.gae: {name} has shape {list(t.shape)} but rewards has shape {list(rewards.shape)}; "
                "rewards, values and dones must all be [T, N]"
            )
    if last_value.dim() != 1 or last_value.shape[0] != rewards.shape[1]:
        raise ValueError(
            f"rlarena.gae: last_value must be [N] = [{rewards.shape[1]}], got shape {list(last_value.shape)}"
        )
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"rlarena.gae: gamma must be in [0, 1], got {gamma}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"rlarena.gae: lam must be in [0, 1], got {lam}")


def _check_fused_loss_inputs(op: str, names: tuple[str, str, str], tensors, clip_coef, clip_hint="") -> None:
    _check_dtypes(op, names, tensors)
    for name, t in zip(names[1:], tensors[1:]):
        if t.shape != tensors[0].shape:
            raise ValueError(
                f"rlarena.{op}: {name} has shape {list(t.shape)} but {names[0]} has shape "
                f"{list(tensors[0].shape)}; all three inputs must have one shape"
            )
    if not clip_coef > 0.0:
        raise ValueError(f"rlarena.{op}: clip_coef must be > 0{clip_hint}, got {clip_coef}")


def _check_loss_inputs(logp, old_logp, advantages, clip_coef) -> None:
    names = ("logp", "old_logp", "advantages")
    _check_fused_loss_inputs("clipped_surrogate_loss", names, (logp, old_logp, advantages), clip_coef)


def _check_value_loss_inputs(value, old_value, returns, clip_coef) -> None:
    names, tensors = ("value", "old_value", "returns"), (value, old_value, returns)
    _check_fused_loss_inputs("clipped_value_loss", names, tensors, clip_coef, " (inf: no clipping)")


def _gae_fallback(rewards, values, dones, last_value, gamma, lam):
    _check_gae_inputs(rewards, values, dones, last_value, gamma, lam)
    with torch.no_grad():
        return gae_reference(rewards, values, dones, last_value, gamma, lam)


def _loss_fallback(logp, old_logp, advantages, clip_coef):
    _check_loss_inputs(logp, old_logp, advantages, clip_coef)
    return clipped_surrogate_loss_reference(logp, old_logp, advantages, clip_coef)


def _loss_and_grad_fallback(logp, old_logp, advantages, clip_coef):
    _check_loss_inputs(logp, old_logp, advantages, clip_coef)
    return clipped_surrogate_loss_and_grad_reference(logp, old_logp, advantages, clip_coef)


def _value_loss_fallback(value, old_value, returns, clip_coef):
    _check_value_loss_inputs(value, old_value, returns, clip_coef)
    return clipped_value_loss_reference(value, old_value, returns, clip_coef)


# --------------------------------------------------------------------------------------------------------
# Loading the compiled ops.


def _load_backend() -> tuple[str, str | None]:
    if os.environ.get("RLARENA_FORCE_REFERENCE", "0").strip() not in ("", "0"):
        return "reference", None
    try:
        from rlarena import _C  # noqa: F401  (loading the library registers torch.ops.rlarena.*)
    except ImportError as exc:
        return "reference", f"the compiled extension rlarena._C could not be imported ({exc})"
    return "compiled", None


_BACKEND, _WHY = _load_backend()
if _WHY is not None:
    warnings.warn(
        f"rlarena.ops: using the pure-torch reference ops (slow): {_WHY}. Rebuild with "
        "`pip install --no-build-isolation -e .`, or set RLARENA_FORCE_REFERENCE=1 to silence this.",
        RuntimeWarning,
        stacklevel=2,
    )


def backend() -> str:
    """``"compiled"`` when the ``torch.ops.rlarena`` kernels are in use, ``"reference"`` otherwise."""
    return _BACKEND


ISA_NAMES = {0: "baseline x86-64", 1: "AVX2+FMA", 2: "AVX-512"}  # torch.ops.rlarena._config("isa")


def cpu_isa() -> str:
    """The instruction set rlarena's compiled kernels run with (``RLARENA_CPU_ISA``), or ``"reference"``
    without the compiled extension."""
    if _BACKEND != "compiled":
        return "reference"
    return ISA_NAMES.get(int(torch.ops.rlarena._config("isa")), "?")


def code_path() -> str:
    """The CPU code paths this process's arithmetic takes: rlarena's kernels (``RLARENA_CPU_ISA``) and
    ATen's (``ATEN_CPU_CAPABILITY``). Results are bit-identical per code path, not across them: a run
    records it (``summary.json``), and the leaderboard never counts two runs of one config and seed on
    different code paths as one."""
    return f"rlarena {cpu_isa()}, ATen {torch.backends.cpu.get_cpu_capability()}"


_COMPILED = _BACKEND == "compiled"

# The shared fast path of updates (rlarena.policy_ops, rlarena.blocks, rlarena.optim): on unless turned off
# for a comparison with the plain autograd path (bench/perf, tests) by ``fast_path(False)``.
_FAST_PATH = True


def fast_path_enabled() -> bool:
    """True when updates take the compiled fast path (the extension built, not turned off)."""
    return _COMPILED and _FAST_PATH


@contextlib.contextmanager
def fast_path(enabled: bool):
    """Within the block, updates take (True) or skip (False) the compiled fast path: the policy op, the
    fixed-order blocks and rlarena's Adam kernel; False gives torch's autograd, reductions and Adam."""
    global _FAST_PATH
    before, _FAST_PATH = _FAST_PATH, enabled
    try:
        yield
    finally:
        _FAST_PATH = before


def _register_fake_kernels() -> None:
    """Shape-only kernels of the compiled ops, for torch.compile and FakeTensor tracing."""

    @torch.library.register_fake("rlarena::gae")
    def _gae_fake(rewards, values, dones, last_value, gamma, lam):
        torch._check(rewards.dim() == 2, lambda: "rlarena.gae: rewards must be [T, N]")
        torch._check(values.shape == rewards.shape, lambda: "rlarena.gae: values must be [T, N]")
        torch._check(dones.shape == rewards.shape, lambda: "rlarena.gae: dones must be [T, N]")
        torch._check(last_value.dim() == 1, lambda: "rlarena.gae: last_value must be [N]")
        return rewards.new_empty(rewards.shape), rewards.new_empty(rewards.shape)

    @torch.library.register_fake("rlarena::clipped_surrogate_loss")
    def _loss_fake(logp, old_logp, advantages, clip_coef):
        torch._check(old_logp.shape == logp.shape, lambda: "rlarena.clipped_surrogate_loss: shape mismatch")
        torch._check(advantages.shape == logp.shape, lambda: "rlarena.clipped_surrogate_loss: shape mismatch")
        scalar = logp.new_empty(())
        return scalar, logp.new_empty(()), logp.new_empty(()), logp.new_empty(logp.shape)

    @torch.library.register_fake("rlarena::mlp_gaussian_act")
    def _act_fake(obs, actor, critic, log_std, activation, deterministic=False):
        torch._check(obs.dim() == 2, lambda: "rlarena.mlp_gaussian_act: obs must be [N, obs_dim]")
        batch = obs.shape[0]
        return obs.new_empty((batch, actor[-1].shape[0])), obs.new_empty((batch,)), obs.new_empty((batch,))

    @torch.library.register_fake("rlarena::observe_")
    def _observe_fake(obs, t, raw_buf, obs_buf, mean, var, count, normalize, clip):
        return None

    @torch.library.register_fake("rlarena::gaussian_policy_step_")
    def _policy_step_fake(*args):
        return None

    @torch.library.register_fake("rlarena::record_action_")
    def _record_action_fake(*args):
        return None

    @torch.library.register_fake("rlarena::record_reward_")
    def _record_reward_fake(*args):
        return 0

    @torch.library.register_fake("rlarena::ppo_gaussian_mlp_epoch_")
    def _ppo_epoch_fake(obs, actions, old_logp, advantages, returns, old_values, perm, num_minibatches, *_):
        torch._check(obs.dim() == 2, lambda: "rlarena.ppo_gaussian_mlp_epoch_: obs must be [rows, obs_dim]")
        return obs.new_empty((num_minibatches, len(PPO_EPOCH_STATS)), dtype=torch.float64)

    @torch.library.register_fake("rlarena::clipped_value_loss")
    def _value_loss_fake(value, old_value, returns, clip_coef):
        torch._check(old_value.shape == value.shape, lambda: "rlarena.clipped_value_loss: shape mismatch")
        torch._check(returns.shape == value.shape, lambda: "rlarena.clipped_value_loss: shape mismatch")
        return value.new_empty(()), value.new_empty(value.shape)


# Every device's kernel and the ops' autograd are registered in C++ (csrc/): gae never carries a gradient;
# a fused loss's forward returns d loss / d input, which backward only scales (Python autograd glue would
# cost more than the fused op itself at PPO's minibatch sizes).
if _COMPILED:
    _register_fake_kernels()


# --------------------------------------------------------------------------------------------------------
# Public API.


def gae(rewards, values, dones, last_value, gamma: float, lam: float):
    """Generalized advantage estimation (Schulman et al. 2016) over a time-major rollout.

    Args:
        rewards, values, dones: ``[T, N]`` (float32 or float64; ``dones`` as 0/1 floats of the same dtype).
            ``dones[t] = 1`` means the episode ended at step ``t``: nothing is bootstrapped across it.
        last_value: ``[N]``, the value of the observation after the last step (``V_T``).
        gamma, lam: discount and GAE lambda, in ``[0, 1]``.

    Returns ``(advantages, returns)``, both ``[T, N]``, with
    ``delta_t = r_t + gamma (1 - d_t) V_{t+1} - V_t``, ``A_t = delta_t + gamma lam (1 - d_t) A_{t+1}`` and
    ``returns = A + V``.

    Time-limit truncation is the caller's job: when an episode is cut by a time limit rather than ended,
    fold the bootstrap into the reward (``r_t += gamma * V(final_obs)``, as stable-baselines3 does) and
    mark ``dones[t] = 1``.

    GAE works on rollout data: no gradient flows through it (the outputs never require grad, as if computed
    under ``torch.no_grad()``), whatever the inputs.
    """
    if _COMPILED:
        return torch.ops.rlarena.gae.default(rewards, values, dones, last_value, float(gamma), float(lam))
    return _gae_fallback(rewards, values, dones, last_value, float(gamma), float(lam))


def clipped_surrogate_loss(logp, old_logp, advantages, clip_coef: float):
    """PPO's clipped surrogate loss, fused: ``(loss, clip_fraction, approx_kl)``.

    With ``r = exp(logp - old_logp)``: ``loss = -mean(min(r A, clamp(r, 1 - c, 1 + c) A))``,
    ``clip_fraction = mean(|r - 1| > c)`` and ``approx_kl = mean((r - 1) - log r)``. The three inputs have
    one shape (any; treated as flat). Only ``loss`` carries a gradient, and only to ``logp``
    (``old_logp`` and ``advantages`` are data); ``clip_fraction`` and ``approx_kl`` are 0-dim statistics.
    The compiled kernel computes the gradient in the forward pass; backward only scales it.
    """
    if not _COMPILED:
        return _loss_fallback(logp, old_logp, advantages, float(clip_coef))
    loss, clip_fraction, approx_kl, _ = torch.ops.rlarena.clipped_surrogate_loss.default(
        logp, old_logp, advantages, float(clip_coef)
    )
    return loss, clip_fraction, approx_kl


def clipped_surrogate_loss_and_grad(logp, old_logp, advantages, clip_coef: float):
    """The fused forward and backward in one call, without the autograd engine:
    ``(loss, clip_fraction, approx_kl, grad_logp)`` with ``grad_logp = d loss / d logp`` (shape of ``logp``).

    Same kernel and same values as ``clipped_surrogate_loss``; no output carries a gradient. For callers that
    handle the gradient themselves, e.g. ``torch.autograd.backward((logp, other_loss), (grad_logp, None))``
    or a hand-written update: at PPO's minibatch sizes a trip through the autograd engine
    (``loss.backward()``) costs several times the fused kernel (see docs/performance.md).
    """
    if not _COMPILED:
        return _loss_and_grad_fallback(logp, old_logp, advantages, float(clip_coef))
    # The op's last output is already d loss / d logp; a detached logp keeps autograd out of it (a
    # non-tensor goes on as is, for the dispatcher to report).
    detached = logp.detach() if isinstance(logp, torch.Tensor) else logp
    return torch.ops.rlarena.clipped_surrogate_loss.default(detached, old_logp, advantages, float(clip_coef))


def clipped_value_loss(value, old_value, returns, clip_coef: float = math.inf):
    """PPO's value loss, fused: with ``v_c = old_value + clamp(value - old_value, -c, c)``,
    ``loss = 0.5 * mean(max((value - returns)^2, (v_c - returns)^2))``; ``clip_coef = inf`` (the default)
    gives the unclipped ``0.5 * mean((value - returns)^2)``.

    The three inputs have one shape (any; treated as flat); the gradient flows to ``value`` only. The compiled
    kernel computes the gradient in the forward pass; backward only scales it.
    """
    if not _COMPILED:
        return _value_loss_fallback(value, old_value, returns, float(clip_coef))
    loss, _ = torch.ops.rlarena.clipped_value_loss.default(value, old_value, returns, float(clip_coef))
    return loss


def mlp_gaussian_act(obs, actor, critic, log_std, activation: str = "tanh", deterministic: bool = False):
    """One collector step of an MLP actor-critic with a Gaussian head: ``(action, logp, value)``.

    ``obs`` is ``[N, obs_dim]``; ``actor`` and ``critic`` are ``[weight, bias]`` per linear layer (as
    ``nn.Linear`` stores them), with ``activation`` (tanh, relu or elu) between layers; the action is drawn
    from ``Normal(actor(obs), exp(log_std))`` with torch's generator, ``logp`` is its log-density summed over
    action dimensions, ``value`` is ``critic(obs)`` squeezed to ``[N]``. ``deterministic``: the action is the
    mean, nothing is drawn (evaluation). No gradient (call it under ``torch.no_grad()``).

    On the CPU (float32) the compiled op is plain loops (``csrc/cpu/mlp_act.cpp``): one call of ~10 us instead
    of about twenty ATen calls, with the same bits on every x86-64 CPU and within float32 rounding of the
    reference (the same random draws; tests/test_collector.py). Elsewhere it runs the reference's ops in C++.
    """
    if _COMPILED:
        args = (obs, actor, critic, log_std, activation, deterministic)
        return torch.ops.rlarena.mlp_gaussian_act.default(*args)
    return mlp_gaussian_act_reference(obs, actor, critic, log_std, activation, deterministic)


# The columns of ppo_gaussian_mlp_epoch_'s result, one row per minibatch.
PPO_EPOCH_STATS = ("policy_loss", "value_loss", "entropy", "clip_fraction", "approx_kl", "grad_norm")


def ppo_gaussian_mlp_epoch_(
    obs, actions, old_logp, advantages, returns, old_values, perm, num_minibatches: int, net,
    exp_avg, exp_avg_sq, step, *, clip_coef: float, value_clip: float, ent_coef: float, vf_coef: float,
    normalize_advantages: bool, max_grad_norm: float, lr: float, betas: tuple[float, float], eps: float,
) -> torch.Tensor:  # fmt: skip
    """One PPO epoch of a ``GaussianMLP`` (``net``: the default actor-critic) as one compiled call, in place
    on its parameters and on their Adam state (``rlarena.optim.Adam``'s ``exp_avg``, ``exp_avg_sq``,
    ``step``: one tensor per parameter, in ``net.parameters()`` order). Returns ``[num_minibatches, 6]``
    float64 statistics, columns ``PPO_EPOCH_STATS``.

    The rollout comes flat: ``obs [rows, obs_dim]``, ``actions [rows, act_dim]``, the rest ``[rows]``, all
    contiguous float32 on the CPU. For each part of ``torch.tensor_split(perm, num_minibatches)``: the
    advantages normalized (if asked), log-probs and values, PPO's clipped surrogate loss, the value loss
    clipped at ``value_clip`` (``math.inf``: unclipped) and the entropy bonus, their gradient, the gradient
    norm clipped to ``max_grad_norm`` (``<= 0``: not clipped), and an Adam step (no weight decay). That is
    algorithms/ppo.py's minibatch loop (the shared fast path), the definition; the results agree
    within float32 rounding (tests/test_ppo_epoch.py), and this op gives the same bits on every x86-64 CPU.
    A non-finite gradient norm stops the epoch before that step; its row and the later ones hold NaN except
    that row's norm. CPU only; no gradient.
    """
    if not _COMPILED:
        raise RuntimeError("rlarena.ppo_gaussian_mlp_epoch_ needs the compiled extension (rlarena._C)")
    beta1, beta2 = betas
    with torch.no_grad():
        return torch.ops.rlarena.ppo_gaussian_mlp_epoch_.default(
            obs, actions, old_logp, advantages, returns, old_values, perm, num_minibatches,
            net.actor, net.critic, net.log_std, exp_avg, exp_avg_sq, step, net.activation,
            clip_coef, value_clip, ent_coef, vf_coef, normalize_advantages, max_grad_norm,
            lr, beta1, beta2, eps,
        )  # fmt: skip


def observe_(obs, t: int, raw_buf, obs_buf, mean, var, count, normalize: bool, clip: float) -> None:
    """The gym collector's observation bookkeeping, in place: ``raw_buf[t] = obs``; with ``normalize``, the
    running statistics (float64 ``mean``, ``var``, 0-d ``count``: ``RunningMeanStd.tensors()``) take ``obs``
    (``[N, D]`` float64) and ``obs_buf[t] = clamp((obs - mean) / sqrt(var + 1e-8), -clip, clip)``; otherwise
    ``obs_buf[t] = obs``. Buffers are float32 ``[T, N, D]``. The compiled op (CPU) does in one call what
    takes a dozen numpy or torch calls, with ``RunningMeanStd``'s float64 arithmetic."""
    if _COMPILED and obs.device.type == "cpu":
        torch.ops.rlarena.observe_.default(obs, t, raw_buf, obs_buf, mean, var, count, normalize, clip)
    else:
        observe_reference(obs, t, raw_buf, obs_buf, mean, var, count, normalize, clip)


def gaussian_policy_step_reference(
    obs, t: int, raw_buf, obs_buf, mean, var, count, normalize: bool, clip: float, net,
    actions, logp_buf, value_buf, env_actions, low, high, clip_actions: bool,
) -> None:  # fmt: skip
    """The collector's step before the simulator's, for a ``GaussianMLP``; see ``gaussian_policy_step_``."""
    observe_reference(obs, t, raw_buf, obs_buf, mean, var, count, normalize, clip)
    out = mlp_gaussian_act_reference(obs_buf[t], net.actor, net.critic, net.log_std, net.activation)
    record_action_reference(*out, t, actions, logp_buf, value_buf, env_actions, low, high, clip_actions)


def gaussian_policy_step_(
    obs, t: int, raw_buf, obs_buf, mean, var, count, normalize: bool, clip: float, net,
    actions, logp_buf, value_buf, env_actions, low, high, clip_actions: bool,
) -> None:  # fmt: skip
    """``observe_``, the step of ``net`` (a ``GaussianMLP``: ``mlp_gaussian_act``) on the row it wrote to
    ``obs_buf[t]``, and ``record_action_`` of its outputs, as one call: the gym collector's whole step before
    the simulator's for the default policy (each call from Python costs more than these kernels inside the
    loop). The same random draw and bits as the three calls."""
    args = (obs, t, raw_buf, obs_buf, mean, var, count, normalize, clip)
    rest = (actions, logp_buf, value_buf, env_actions, low, high, clip_actions)
    if _COMPILED and obs.device.type == "cpu":
        mlp = (net.actor, net.critic, net.log_std, net.activation)
        torch.ops.rlarena.gaussian_policy_step_.default(*args, *mlp, *rest)
    else:
        gaussian_policy_step_reference(*args, net, *rest)


def bind_gaussian_rollout(
    step_args: tuple, record_args: tuple, rows: int
) -> tuple[Callable[[np.ndarray, int], None], Callable[..., int], Callable[[int], None]]:
    """The default policy's rollout bookkeeping bound once: ``step_args`` are ``gaussian_policy_step_``'s
    arguments after ``obs`` and ``t`` (with the ``GaussianMLP``), ``record_args`` ``record_reward_``'s after
    ``t``; ``rows`` is the rollout's length T. Returns

    - ``act(obs, t)``: ``gaussian_policy_step_`` at row t;
    - ``record(next_obs, reward, terminated, truncated, t) -> flags``: ``record_reward_`` at row t, and when
      it returns no flag and ``t + 1 < rows``, ``act(next_obs, t + 1)`` too, flagged ``RECORD_ACTED``;
    - ``finish(rows)``: fills ``value_buf`` where ``act`` deferred it (the critic runs after the rollout,
      row by row the same numbers).

    ``act`` and ``record`` take the vector env's numpy arrays as they come: observations float64
    ``[N, obs_dim]`` and rewards float64 ``[N]`` (C-contiguous), ``terminated`` and ``truncated`` bool
    ``[N]``.

    Compiled, these are ``rlarena._C.rollout_act`` / ``rollout_record`` on a
    ``torch.classes.rlarena.GaussianRollout``: one call from Python per simulator step that reads the arrays
    in place (a torch.classes method call converts every argument, and each array would first become a
    tensor: at one environment that cost more than the kernels). The same calls in the same order as the
    ops: the same random draws and bits."""
    if _COMPILED and step_args[1].device.type == "cpu":
        from rlarena import _C

        head, net, tail = step_args[:7], step_args[7], step_args[8:]
        mlp = (list(net.actor), list(net.critic), net.log_std, net.activation)
        policy = torch.classes.rlarena.GaussianPolicyStep(*head, *mlp, *tail, True)
        recorder = torch.classes.rlarena.RewardRecorder(*record_args)
        rollout = torch.classes.rlarena.GaussianRollout(policy, recorder)
        capsule = _C.rollout_capsule(rollout.retain())  # owns a reference: the partials keep it alive
        return (
            functools.partial(_C.rollout_act, capsule),
            functools.partial(_C.rollout_record, capsule),
            rollout.finish,
        )

    def act(obs: np.ndarray, t: int) -> None:
        gaussian_policy_step_reference(torch.from_numpy(obs), t, *step_args)

    def record(next_obs, reward, terminated, truncated, t: int) -> int:
        next_obs, reward = torch.from_numpy(next_obs), torch.from_numpy(reward)
        terminated, truncated = torch.from_numpy(terminated), torch.from_numpy(truncated)
        flags = record_reward_reference(next_obs, reward, terminated, truncated, t, *record_args)
        if flags or t + 1 >= rows:
            return flags
        gaussian_policy_step_reference(next_obs, t + 1, *step_args)
        return RECORD_ACTED

    return act, record, lambda rows: None


def bind_record_reward(
    raw_rewards, rewards, dones, terminated_buf, discounted, ret_mean, ret_var, ret_count, normalize: bool,
    gamma: float, clip: float, episode_return, episode_length,
) -> Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], int]:  # fmt: skip
    """``record_reward_`` with every argument after ``t`` bound: ``record(next_obs, reward, terminated,
    truncated, t) -> flags`` on the vector env's numpy arrays, as ``bind_gaussian_rollout``'s ``record``
    takes them (compiled: ``torch.classes.rlarena.RewardRecorder``)."""
    rest = (raw_rewards, rewards, dones, terminated_buf, discounted, ret_mean, ret_var, ret_count, normalize)
    rest += (gamma, clip, episode_return, episode_length)
    compiled = _COMPILED and rewards.device.type == "cpu"
    recorder = torch.classes.rlarena.RewardRecorder(*rest).record if compiled else None

    def record(next_obs, reward, terminated, truncated, t: int) -> int:
        tensors = [torch.from_numpy(a) for a in (next_obs, reward, terminated, truncated)]
        return recorder(*tensors, t) if recorder is not None else record_reward_reference(*tensors, t, *rest)

    return record


def record_action_(
    action, logp, value, t: int, actions, logp_buf, value_buf, env_actions, low, high, clip: bool
) -> None:
    """The gym collector's action bookkeeping at row ``t``, in place: the policy's ``action``
    (``[N, ...]``), ``logp`` and ``value`` (``[N]``) into their ``[T, N, ...]`` buffers, and into
    ``env_actions[t]`` the action the simulator gets: ``min(max(action, low), high)`` with ``clip`` (a Box
    space), else the action."""
    args = (action, logp, value, t, actions, logp_buf, value_buf, env_actions, low, high, clip)
    if _COMPILED and action.device.type == "cpu":
        torch.ops.rlarena.record_action_.default(*args)
    else:
        record_action_reference(*args)


def record_reward_(
    next_obs, reward, terminated, truncated, t: int, raw_rewards, rewards, dones, terminated_buf, discounted,
    ret_mean, ret_var, ret_count, normalize: bool, gamma: float, clip: float, episode_return, episode_length,
) -> int:  # fmt: skip
    """The gym collector's reward bookkeeping at row ``t``, in place: raw reward, done (terminated or
    truncated) and termination flags into their ``[T, N]`` buffers, the episode counters advanced; with
    ``normalize``, the discounted return ``discounted = discounted * gamma + reward`` updates the running
    return statistics, is reset where an episode ended, and ``rewards[t] = clamp(reward / sqrt(ret_var +
    1e-8), -clip, clip)`` (SB3's VecNormalize); otherwise ``rewards[t] = reward``.

    Returns flags (``RECORD_*``): the step's ``next_obs`` or a reward is not finite (then nothing is stored),
    an episode ended, an episode was truncated without terminating. One call does what took a dozen numpy
    calls; the compiled op uses ``RunningMeanStd``'s float64 arithmetic."""
    args = (next_obs, reward, terminated, truncated, t, raw_rewards, rewards, dones, terminated_buf)
    args += (discounted, ret_mean, ret_var, ret_count, normalize, gamma, clip, episode_return, episode_length)
    if _COMPILED and reward.device.type == "cpu":
        return torch.ops.rlarena.record_reward_.default(*args)
    return record_reward_reference(*args)
