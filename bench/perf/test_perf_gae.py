"""GAE speed: rlarena against the CleanRL-style torch loop, the SB3-style numpy loop, TorchRL (if installed)
and the memory floor, at the benchmark's four shapes (pytest-benchmark).

With the project's default `--benchmark-disable` each case runs once and is checked against the reference
(a correctness smoke test); time them with `pytest bench/perf --benchmark-enable`, or print the side-by-side
table with `python -m rlarena.bench.perf.run`.
"""

from __future__ import annotations

import pytest
import torch

from rlarena import ops
from rlarena.bench.perf import peers

SHAPES = [pytest.param(s, id=f"{s[0]}x{s[1]}") for s in peers.GAE_SHAPES]


@pytest.fixture(scope="module", params=SHAPES)
def case(request):
    T, N = request.param
    r, v, d, lv = peers.gae_inputs(T, N)
    ref = ops.gae_reference(r, v, d, lv, peers.GAMMA, peers.LAM)
    return (T, N), (r, v, d, lv), ref


def _check(result, ref):
    adv, ret = (torch.as_tensor(x) for x in result)
    torch.testing.assert_close(adv, ref[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ret, ref[1], rtol=1e-4, atol=1e-4)


def test_gae_rlarena(benchmark, case):
    shape, inputs, ref = case
    benchmark.group = f"gae {shape[0]}x{shape[1]}"
    _check(benchmark(peers.gae_rlarena, *inputs), ref)


def test_gae_torch_loop(benchmark, case):
    shape, inputs, ref = case
    benchmark.group = f"gae {shape[0]}x{shape[1]}"
    _check(benchmark(peers.gae_torch_loop, *inputs), ref)


def test_gae_numpy_loop(benchmark, case):
    shape, inputs, ref = case
    benchmark.group = f"gae {shape[0]}x{shape[1]}"
    _check(benchmark(peers.gae_numpy_loop, *(t.numpy() for t in inputs)), ref)


@pytest.mark.skipif(peers.torchrl_gae_fn() is None, reason="torchrl not installed (optional extra)")
def test_gae_torchrl(benchmark, case):
    shape, inputs, ref = case
    benchmark.group = f"gae {shape[0]}x{shape[1]}"
    _check(benchmark(peers.gae_torchrl, *inputs), ref)


def test_gae_memory_floor(benchmark, case):
    shape, (r, v, d, lv), _ = case
    benchmark.group = f"gae {shape[0]}x{shape[1]}"
    x = torch.randn_like(r)
    a, b = benchmark(peers.memory_floor, r, v, d, x)
    torch.testing.assert_close(a, r + v)
    torch.testing.assert_close(b, d + x)
