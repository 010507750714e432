"""The compiled CPU kernels and the CUDA kernels give the same results on the same inputs.

tests/test_ops_cuda.py checks each CUDA kernel against the pure-torch reference on the GPU; this checks the
two compiled backends against each other, the way a run moved from device=cpu to device=cuda sees them:
values and gradients agree to rounding (float64: 1e-10; float32: the sums run in other orders, 1e-4).
Skipped without a CUDA device and a CUDA build (scripts/gpu-check.sh runs it on the GPU machine).
"""

from __future__ import annotations

import pytest
import torch
from op_inputs import cuda_kernels_registered, make_gae, make_loss, make_value_loss

from rlarena import ops

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not cuda_kernels_registered(), reason="needs a CUDA device and rlarena built with CUDA"
    ),
]

GAMMA, LAM, CLIP = 0.99, 0.95, 0.2
DTYPES = [torch.float32, torch.float64]


def agree(gpu: torch.Tensor, cpu: torch.Tensor) -> None:
    assert gpu.is_cuda and not cpu.is_cuda
    tol = {"rtol": 1e-4, "atol": 1e-4} if cpu.dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    torch.testing.assert_close(gpu.cpu(), cpu, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,N", [(1, 1), (2048, 1), (2048, 16), (128, 2048), (64, 8192), (37, 1000)])
@pytest.mark.parametrize("dones", ["random", "none"])
def test_gae_cpu_and_cuda_agree(T, N, dtype, dones):
    cpu = make_gae(T, N, dtype, dones)
    on_cpu = ops.gae(*cpu, GAMMA, LAM)
    on_gpu = ops.gae(*(t.cuda() for t in cpu), GAMMA, LAM)
    for g, c in zip(on_gpu, on_cpu):
        agree(g, c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 64, 4099, 65536, 1_000_003])
def test_clipped_loss_cpu_and_cuda_agree(n, dtype):
    cpu = make_loss(n, dtype)
    on_cpu = ops.clipped_surrogate_loss_and_grad(*cpu, CLIP)  # loss, clip_fraction, approx_kl, grad
    on_gpu = ops.clipped_surrogate_loss_and_grad(*(t.cuda() for t in cpu), CLIP)
    for g, c in zip(on_gpu, on_cpu):
        agree(g, c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 64, 4099, 1_000_003])
@pytest.mark.parametrize("clip", [CLIP, float("inf")])
def test_value_loss_cpu_and_cuda_agree(n, dtype, clip):
    value, old_value, returns = make_value_loss(n, dtype)
    leaves = {}
    for device in ("cpu", "cuda"):
        v = value.to(device).requires_grad_()
        loss = ops.clipped_value_loss(v, old_value.to(device), returns.to(device), clip)
        loss.backward()
        leaves[device] = (loss.detach(), v.grad)
    for g, c in zip(leaves["cuda"], leaves["cpu"]):
        agree(g, c)
