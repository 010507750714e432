"""The default actor-critic as an op with autograd: ``gaussian_mlp_evaluate``.

The default policy (``algorithms/policies.py``'s ``MLPActorCritic`` with separate MLPs and a Gaussian head)
evaluated on a batch of rows, forward to ``(logp, entropy, value)`` and backward from any upstream gradient of
the three, in one compiled CPU kernel each way (``csrc/cpu/gaussian_mlp.cpp``). ``MLPActorCritic.evaluate``
calls it wherever it applies, so every algorithm that writes its loss in Python on ``policy.evaluate(...)``
and calls ``loss.backward()`` gets it: nothing in an algorithm's file names it.

The definition is ``MLPActorCritic.evaluate_reference`` (torch modules and distributions); the op agrees with
it within float32 rounding (tests/test_policy_op.py), and gives the same bits on every x86-64 CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import ops

__all__ = ["gaussian_mlp_evaluate", "gaussian_mlp_evaluate_applies"]


def gaussian_mlp_evaluate_applies(obs, actions, log_std: torch.Tensor) -> bool:
    """True where the compiled op runs: the extension is built, and the inputs are 2-D float32 (or float64)
    CPU tensors of one dtype. Elsewhere (CUDA, other dtypes, nested observations) the policy's reference path
    runs."""
    return (
        ops.fast_path_enabled()
        and isinstance(obs, torch.Tensor)
        and isinstance(actions, torch.Tensor)
        and obs.dim() == 2
        and actions.dim() == 2
        and obs.device.type == "cpu"
        and obs.dtype in (torch.float32, torch.float64)
        and obs.dtype == actions.dtype == log_std.dtype
        and log_std.device.type == "cpu"
    )


def gaussian_mlp_evaluate(
    obs: torch.Tensor,
    actions: torch.Tensor,
    actor: Sequence[torch.Tensor],
    critic: Sequence[torch.Tensor],
    log_std: torch.Tensor,
    activation: str = "tanh",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logp, entropy, value)``, each ``[rows]``, of the Gaussian MLP actor-critic on
    ``obs [rows, obs_dim]`` and ``actions [rows, act_dim]``: ``actor``/``critic`` are ``[weight, bias]``
    per linear layer (as ``nn.Linear`` stores them) with ``activation`` between layers, the action
    distribution is
    ``Normal(actor(obs), exp(log_std))`` summed over action dimensions, ``value = critic(obs)``.

    Differentiable in every parameter, ``obs`` and ``actions`` (first order: no double backward; TRPO's
    Fisher-vector products go through the reference's distribution)."""
    logp, entropy, value, _saved = torch.ops.rlarena.gaussian_mlp_evaluate.default(
        obs, actions, list(actor), list(critic), log_std, activation
    )
    return logp, entropy, value


def _widths(params: Sequence[torch.Tensor]) -> int:
    return sum(int(w.shape[0]) for w in params[0::2])


def _register() -> None:
    @torch.library.register_fake("rlarena::gaussian_mlp_evaluate")
    def _evaluate_fake(obs, actions, actor, critic, log_std, activation):
        torch._check(obs.dim() == 2, lambda: "rlarena.gaussian_mlp_evaluate: obs must be [rows, obs_dim]")
        rows = obs.shape[0]
        saved = obs.new_empty((2 * rows * (_widths(actor) + _widths(critic)),))
        return obs.new_empty((rows,)), obs.new_empty((rows,)), obs.new_empty((rows,)), saved

    @torch.library.register_fake("rlarena::gaussian_mlp_evaluate_backward")
    def _backward_fake(
        g_logp, g_entropy, g_value, obs, actions, actor, critic, log_std, activation, saved, inputs
    ):
        grads = [torch.empty_like(p) for p in (*actor, *critic, log_std)]
        rows = obs.shape[0] if inputs else 0
        return grads, obs.new_empty((rows, obs.shape[1])), actions.new_empty((rows, actions.shape[1]))


# The autograd of the op is registered in C++ (csrc/ops.cpp: GaussianMLPEvaluateBackward): the Python glue
# of torch.library.register_autograd cost more than both kernels at 64 rows.
if ops.backend() == "compiled":
    _register()
