"""Generic building blocks of an update, with one summation order on every CPU.

``mean`` (differentiable), ``normalize`` (advantages: data) and ``clip_grad_norm_`` run the compiled CPU
kernels of ``csrc/cpu/blocks.cpp`` on CPU float tensors and torch's own functions anywhere else (the
definitions they agree with, within float rounding). Why they exist: ATen's reductions add in vector lanes as
wide as the CPU's ISA, so the same update rounded differently on an AVX2 and an AVX-512 machine; these add in
double, in index order, and give the same bits everywhere. Any algorithm can use them; with the policy op
(``rlarena.policy_ops``), the fused losses and ``rlarena.optim.Adam`` an update is CPU-independent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import ops

__all__ = ["clip_grad_norm_", "mean", "normalize"]


def _compiled_cpu(x: torch.Tensor) -> bool:
    return ops.fast_path_enabled() and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean()`` (0-dim, differentiable), summed in double in index order on the CPU."""
    if x.numel() == 0 or not _compiled_cpu(x):
        return x.mean()
    return torch.ops.rlarena.mean.default(x)[0]


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x - x.mean()) / (x.std() + eps)`` with the unbiased std (``x - x.mean()`` below two elements), as
    data: the result carries no gradient. The statistics in double, in index order, on the CPU."""
    if x.numel() == 0 or not _compiled_cpu(x):
        x = x.detach()
        if x.numel() < 2:
            return x - x.mean()
        return (x - x.mean()) / (x.std() + eps)
    return torch.ops.rlarena.normalize.default(x.detach(), float(eps))


def clip_grad_norm_(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (the 2-norm over every parameter's ``.grad``, gradients scaled by
    ``max_norm / (norm + 1e-6)`` when that is below 1; ``max_norm <= 0``: only the norm), with the sum of
    squares in double in a fixed order on the CPU. Returns the norm before clipping (float64 0-dim on the
    compiled path)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), dtype=torch.float64)
    if all(_compiled_cpu(g) and g.is_contiguous() for g in grads):
        return torch.ops.rlarena.clip_grad_norm_.default(grads, float(max_norm))
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], max_norm)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _register_fake_kernels() -> None:
    @torch.library.register_fake("rlarena::mean")
    def _mean_fake(x):
        return x.new_empty(()), x.new_empty(x.shape)

    @torch.library.register_fake("rlarena::normalize")
    def _normalize_fake(x, eps):
        return x.new_empty(x.shape)

    @torch.library.register_fake("rlarena::clip_grad_norm_")
    def _clip_fake(grads, max_norm):
        return grads[0].new_empty((), dtype=torch.float64)

    @torch.library.register_fake("rlarena::adam_step_")
    def _adam_fake(params, grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
        return None


if ops.backend() == "compiled":
    _register_fake_kernels()
