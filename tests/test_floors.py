"""The floors: rlarena (core) imports none of the others; algorithms and envs import neither each other nor
bench. Checked statically on every module, including lazy imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "rlarena": ("rlarena.algorithms", "rlarena.envs", "rlarena.bench"),
    "algorithms": ("rlarena.envs", "rlarena.bench"),
    "envs": ("rlarena.algorithms", "rlarena.bench"),
}
PACKAGE_OF = {"rlarena": "rlarena", "algorithms": "rlarena.algorithms", "envs": "rlarena.envs"}


def imported_modules(path: Path, package: str) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = [package, *path.relative_to(REPO / path.relative_to(REPO).parts[0]).with_suffix("").parts]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                base = parts[: len(parts) - node.level]
                names.append(".".join([*base, node.module] if node.module else base))
            else:
                names.append(node.module or "")
    return names


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_no_import_runs_back_up(floor):
    offenders = []
    for path in sorted((REPO / floor).rglob("*.py")):
        for name in imported_modules(path, PACKAGE_OF[floor]):
            if name.startswith(FORBIDDEN[floor]) or name.split(".")[0] in ("algorithms", "envs", "bench"):
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders, "\n".join(offenders)
