"""docs/adding-an-algorithm.md, followed literally: its plugin file, registered, passes the smoke grid."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch
from test_smoke import run_smoke

from rlarena.registry import ALGORITHMS, list_algorithms

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "adding-an-algorithm.md"


def guide_plugin_source() -> str:
    """The code block the guide marks as the plugin file (``<!-- plugin: ... -->``), dedented."""
    text = GUIDE.read_text(encoding="utf-8")
    match = re.search(r"<!-- plugin: [^>]+-->\s*\n(\s*)```python\n(.*?)\n\s*```", text, re.S)
    assert match, "the guide has no marked plugin code block"
    indent = match.group(1).replace("\n", "")
    return "\n".join(line.removeprefix(indent) for line in match.group(2).splitlines()) + "\n"


@pytest.fixture(scope="module")
def guide_algorithm():
    module = types.ModuleType("guide_myalgo")
    sys.modules[module.__name__] = module
    exec(compile(guide_plugin_source(), str(GUIDE), "exec"), module.__dict__)  # registers "myalgo"
    yield "myalgo"
    ALGORITHMS._items.pop("myalgo", None)  # leave the registry as the other tests expect it
    ALGORITHMS._origins.pop("myalgo", None)
    sys.modules.pop(module.__name__, None)


def test_guide_code_has_no_placeholders():
    source = guide_plugin_source()
    assert not re.search(r"^\s*\.\.\.|\.\.\.\s*[})\]]", source, re.M), "a placeholder where code should be"
    assert '@register_algorithm("myalgo")' in source


@pytest.mark.parametrize("env", ["invertedpendulum", "cartpole", "text/arithmetic"])
def test_guide_algorithm_passes_the_smoke_grid(guide_algorithm, env, tmp_path):
    assert guide_algorithm in list_algorithms()
    summary = run_smoke(guide_algorithm, env, tmp_path / "run")
    assert summary["steps_done"] >= 128 and summary["algo"] == guide_algorithm
    assert len(summary["eval_returns"]) == 1


def test_guide_algorithm_gets_the_fast_update_with_no_extra_code(guide_algorithm, monkeypatch):
    """The guide's plugin names no fast op, yet its update runs the default policy's compiled op (forward
    and backward) and rlarena's Adam: the speed is in the shared layers."""
    from rlarena import ops, policy_ops
    from rlarena.bench.train import build, load_config
    from rlarena.optim import Adam

    if ops.backend() != "compiled":
        pytest.skip("rlarena._C is not built")
    calls = []
    real = policy_ops.gaussian_mlp_evaluate
    monkeypatch.setattr(policy_ops, "gaussian_mlp_evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    overrides = [f"algo={guide_algorithm}", "env=invertedpendulum", "algo.num_steps=64"]
    built = build(load_config(overrides), explicit_keys=set())
    before = [p.detach().clone() for p in built.policy.parameters()]
    built.algo.learn(built.env.collect(built.policy, built.algo.rollout_length))
    built.env.close()
    assert len(calls) == built.algo.cfg.num_minibatches
    assert isinstance(built.algo.optimizer, Adam)
    assert all(not torch.equal(a, b) for a, b in zip(before, built.policy.parameters()))
