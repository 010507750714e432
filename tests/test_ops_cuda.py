"""The CUDA kernels against the pure-torch references (skipped without a CUDA device and a CUDA build)."""

from __future__ import annotations

import pytest
import torch
from op_inputs import cuda_kernels_registered, make_gae, make_loss

from rlarena import ops

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not cuda_kernels_registered(), reason="needs a CUDA device and rlarena built with CUDA"
    ),
]

GAMMA, LAM, CLIP = 0.99, 0.95, 0.2


def tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "T,N",
    [(1, 1), (3, 2), (5000, 1), (2048, 16), (8192, 64), (128, 2048), (64, 40000), (37, 1000), (4, 70000)],
)
@pytest.mark.parametrize("dones", ["random", "all", "none"])
def test_gae_cuda_matches_reference(T, N, dtype, dones):
    cpu = make_gae(T, N, dtype, dones)
    gpu = [t.cuda() for t in cpu]
    adv, ret = ops.gae(*gpu, GAMMA, LAM)
    assert adv.is_cuda and ret.is_cuda
    ref_adv, ref_ret = ops.gae_reference(*gpu, GAMMA, LAM)  # same device, same arithmetic order
    torch.testing.assert_close(adv, ref_adv, **tol(dtype))
    torch.testing.assert_close(ret, ref_ret, **tol(dtype))


def test_gae_cuda_non_contiguous_and_no_grad():
    r, v, d, lv = (t.cuda() for t in make_gae(50, 12, torch.float32))
    v = v.requires_grad_()
    adv, ret = ops.gae(r.T.contiguous().T, v, d, lv, GAMMA, LAM)
    ref_adv, _ = ops.gae_reference(r, v.detach(), d, lv, GAMMA, LAM)
    torch.testing.assert_close(adv, ref_adv, **tol(torch.float32))
    assert not adv.requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 64, 255, 256, 257, 4096, 65536, 1048576 + 3])
def test_loss_cuda_matches_reference(n, dtype):
    lp, olp, adv = (t.cuda() for t in make_loss(n, dtype))
    lp1 = lp.clone().requires_grad_()
    lp2 = lp.clone().requires_grad_()
    out = ops.clipped_surrogate_loss(lp1, olp, adv, CLIP)
    ref = ops.clipped_surrogate_loss_reference(lp2, olp, adv, CLIP)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.detach(), b.detach(), **tol(dtype))
    out[0].backward()
    ref[0].backward()
    torch.testing.assert_close(lp1.grad, lp2.grad, **tol(dtype))


@pytest.mark.parametrize("n", [64, 4096, 65536])
def test_loss_and_grad_cuda(n):
    lp, olp, adv = (t.cuda() for t in make_loss(n, torch.float64))
    out = ops.clipped_surrogate_loss_and_grad(lp, olp, adv, CLIP)
    ref = ops.clipped_surrogate_loss_and_grad_reference(lp, olp, adv, CLIP)
    for a, b in zip(out, ref):
        assert a.is_cuda and not a.requires_grad
        torch.testing.assert_close(a, b, **tol(torch.float64))


@pytest.mark.parametrize("n", [64, 4099, 1_000_000])  # one block; pass 2 over partials; many SMs
@pytest.mark.parametrize("clip", [CLIP, float("inf")])
def test_value_loss_cuda(clip, n):
    assert torch._C._dispatch_has_kernel_for_dispatch_key("rlarena::clipped_value_loss", "CUDA")
    lp, olp, adv = (t.cuda() for t in make_loss(n, torch.float64))
    v1 = lp.clone().requires_grad_()
    v2 = lp.clone().requires_grad_()
    loss = ops.clipped_value_loss(v1, olp, adv, clip)
    ref = ops.clipped_value_loss_reference(v2, olp, adv, clip)
    assert loss.is_cuda
    torch.testing.assert_close(loss.detach(), ref.detach(), **tol(torch.float64))
    loss.backward()
    ref.backward()
    torch.testing.assert_close(v1.grad, v2.grad, **tol(torch.float64))


def test_loss_cuda_gradcheck():
    lp, olp, adv = (t.cuda() for t in make_loss(100, torch.float64))
    lp = lp.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ops.clipped_surrogate_loss(x, olp, adv, CLIP)[0], (lp,))


def test_loss_cuda_deterministic():
    lp, olp, adv = (t.cuda() for t in make_loss(3_000_000, torch.float32))
    for op in (torch.ops.rlarena.clipped_surrogate_loss, torch.ops.rlarena.clipped_value_loss):
        a = op(lp, olp, adv, CLIP)
        b = op(lp, olp, adv, CLIP)
        for x, y in zip(a, b):
            assert torch.equal(x, y)


def test_opcheck_cuda():
    r, v, d, lv = (t.cuda() for t in make_gae(20, 3, torch.float32))
    torch.library.opcheck(torch.ops.rlarena.gae.default, (r, v, d, lv, GAMMA, LAM))
    lp, olp, adv = (t.cuda() for t in make_loss(50, torch.float32))
    torch.library.opcheck(
        torch.ops.rlarena.clipped_surrogate_loss.default, (lp.requires_grad_(), olp, adv, CLIP)
    )


def test_mixed_devices_are_refused():
    lp, olp, adv = make_loss(10, torch.float32)
    with pytest.raises(RuntimeError, match="same device"):
        ops.clipped_surrogate_loss(lp.cuda(), olp, adv.cuda(), CLIP)
    r, v, d, lv = make_gae(5, 2, torch.float32)
    with pytest.raises(RuntimeError, match="same device"):
        ops.gae(r.cuda(), v.cuda(), d, lv.cuda(), GAMMA, LAM)
