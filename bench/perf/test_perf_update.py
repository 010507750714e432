"""Every algorithm's update on the shared fast path (the default policy as a compiled op with autograd, the
fixed-order blocks, rlarena's Adam) against plain autograd (``ops.fast_path(False)``: torch modules and
distributions, ATen's reductions, torch's fused Adam), on the same Hopper-v5 batch (pytest-benchmark). The
algorithms come from the registry (``loop.mujoco_algorithms``): a new plugin is timed with no change here.
``rlarena bench --loop`` times the same cases in interleaved rounds and prints the ratios.

With the project's default ``--benchmark-disable`` each case runs once, as a smoke test.
"""

from __future__ import annotations

import math

import pytest

from rlarena import ops
from rlarena.bench.perf import loop

ALGORITHMS = loop.mujoco_algorithms()


@pytest.fixture(scope="module", params=ALGORITHMS)
def built(request):
    from rlarena.bench.train import build, load_config

    overrides = [f"algo={request.param}", "env=hopper", "algo.num_steps=64"]
    built = build(load_config(overrides), explicit_keys=set())
    yield built, built.env.collect(built.policy, built.algo.rollout_length)
    built.env.close()


@pytest.mark.parametrize("fast", [True, False], ids=["fast_path", "autograd"])
def test_update(benchmark, built, fast):
    built, batch = built
    benchmark.group = f"update, {built.algo.cfg.name}, Hopper-v5"

    def update():
        with ops.fast_path(fast):
            return built.algo.update(batch.replace())

    metrics = benchmark.pedantic(update, rounds=3, warmup_rounds=1)
    assert any(math.isfinite(v) for v in metrics.values())
