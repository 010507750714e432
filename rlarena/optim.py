"""``rlarena.optim.Adam``: torch.optim.Adam's update on rlarena's kernel, the same bits on every x86-64 CPU.

A public ``torch.optim.Optimizer`` any plugin can choose (``algorithms/base.py``'s ``adam()`` returns it). Its
state is ``torch.optim.Adam``'s (per parameter ``step`` as a float32 0-dim tensor, ``exp_avg``,
``exp_avg_sq``), so its ``state_dict`` loads into either class. The step is the fused Adam's arithmetic
(``m += (1 - b1)(g - m)``, ``v = b2 v + (1 - b2) g^2``, bias corrections by repeated squaring) written as
plain loops with FMA contraction off (``csrc/cpu/blocks.cpp``); torch's fused and foreach Adam use the
ISA's vector FMA and ``pow``, whose bits differ between CPUs. Parameters off the CPU, or not float32/64, and
``ops.fast_path(False)`` step with ``torch.optim.Adam``'s own fused function.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.adam import adam as torch_adam

from . import ops

__all__ = ["Adam"]


class Adam(torch.optim.Optimizer):
    """Adam (Kingma and Ba 2015) without amsgrad; ``weight_decay`` is L2 (added to the gradient), as in
    ``torch.optim.Adam``."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not (lr >= 0 and eps > 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1 and weight_decay >= 0):
            raise ValueError(
                f"Adam: invalid lr={lr}, betas={betas}, eps={eps} or weight_decay={weight_decay}"
            )
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def state_of(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """``p``'s state (created zero, as before the first step): ``step``, ``exp_avg``, ``exp_avg_sq``."""
        state = self.state[p]
        if not state:  # torch.optim.Adam's layout: a float32 step counter, zero moments
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            states = [self.state_of(p) for p in params]
            compiled = ops.fast_path_enabled() and all(
                p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) and p.is_contiguous()
                for p in params
            )
            if compiled:
                torch.ops.rlarena.adam_step_.default(
                    params,
                    [p.grad.contiguous() for p in params],
                    [s["exp_avg"] for s in states],
                    [s["exp_avg_sq"] for s in states],
                    [s["step"] for s in states],
                    float(group["lr"]), float(beta1), float(beta2), float(group["eps"]),
                    float(group["weight_decay"]),
                )  # fmt: skip
            else:
                torch_adam(
                    params,
                    [p.grad for p in params],
                    [s["exp_avg"] for s in states],
                    [s["exp_avg_sq"] for s in states],
                    [],
                    [s["step"] for s in states],
                    amsgrad=False,
                    beta1=beta1,
                    beta2=beta2,
                    lr=group["lr"],
                    weight_decay=group["weight_decay"],
                    eps=group["eps"],
                    maximize=False,
                    fused=True,  # torch's own fastest Adam (the comparison's baseline)
                )
        return loss
