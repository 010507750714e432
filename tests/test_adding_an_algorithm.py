"""docs/adding-an-algorithm.md, followed literally: its plugin file, registered, passes the smoke grid."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
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
