"""PPO clipped loss speed, forward + backward: rlarena's fused op (one call returning the gradient, and
through ``loss.backward()``) against the loss composed of torch ops (autograd), and the autograd engine's
floor, at n = 64 ... 1048576 (pytest-benchmark).

With the project's default `--benchmark-disable` each case runs once and is checked against the reference.
"""

from __future__ import annotations

import pytest
import torch

from rlarena.bench.perf import peers

SIZES = [pytest.param(n, id=f"n={n}") for n in peers.LOSS_SIZES]


@pytest.fixture(scope="module", params=SIZES)
def case(request):
    n = request.param
    lp, olp, adv = peers.loss_inputs(n)
    out = [t.detach() for t in peers.loss_composed(lp, olp, adv)]
    return n, (lp, olp, adv), out, lp.grad.clone()


def test_loss_rlarena(benchmark, case):
    n, inputs, ref, ref_grad = case
    benchmark.group = f"clipped loss n={n}"
    out = benchmark(peers.loss_rlarena, *inputs)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.detach(), b, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(inputs[0].grad, ref_grad, rtol=1e-4, atol=1e-9)


def test_loss_rlarena_fused(benchmark, case):
    n, inputs, ref, ref_grad = case
    benchmark.group = f"clipped loss n={n}"
    *out, grad = benchmark(peers.loss_rlarena_fused, *inputs)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-9)
    assert inputs[0].grad is None  # no trip through autograd


def test_loss_composed(benchmark, case):
    n, inputs, ref, ref_grad = case
    benchmark.group = f"clipped loss n={n}"
    out = benchmark(peers.loss_composed, *inputs)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.detach(), b)
    torch.testing.assert_close(inputs[0].grad, ref_grad)


def test_loss_autograd_floor(benchmark, case):
    n, inputs, _, _ = case
    benchmark.group = f"clipped loss n={n}"
    benchmark(peers.autograd_floor, inputs[0])
    assert torch.equal(inputs[0].grad, torch.ones_like(inputs[0]))


@pytest.fixture(scope="module", params=SIZES)
def value_case(request):
    n = request.param
    v, old, ret = peers.value_loss_inputs(n)
    loss = peers.value_loss_composed(v, old, ret).detach()
    return n, (v, old, ret), loss, v.grad.clone()


def test_value_loss_rlarena(benchmark, value_case):
    n, inputs, ref, ref_grad = value_case
    benchmark.group = f"value loss n={n}"
    loss = benchmark(peers.value_loss_rlarena, *inputs)
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(inputs[0].grad, ref_grad, rtol=1e-4, atol=1e-9)


def test_value_loss_composed(benchmark, value_case):
    n, inputs, ref, ref_grad = value_case
    benchmark.group = f"value loss n={n}"
    loss = benchmark(peers.value_loss_composed, *inputs)
    torch.testing.assert_close(loss.detach(), ref)
    torch.testing.assert_close(inputs[0].grad, ref_grad)
