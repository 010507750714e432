"""The floors: rlarena (core) imports none of the others; algorithms and envs import neither each other nor
bench; and inside every floor the imports form no circle (A imports B and B, directly or through a chain,
imports A). Checked statically on every module, including lazy imports inside functions."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "rlarena": ("rlarena.algorithms", "rlarena.envs", "rlarena.bench"),
    "algorithms": ("rlarena.envs", "rlarena.bench"),
    "envs": ("rlarena.algorithms", "rlarena.bench"),
}
PACKAGE_OF = {
    "rlarena": "rlarena",
    "algorithms": "rlarena.algorithms",
    "envs": "rlarena.envs",
    "bench": "rlarena.bench",
}
# Import edges (importer, imported) left out of the circle check, each with the reason it is tolerated.
KNOWN_CIRCLES: dict[tuple[str, str], str] = {}


def module_parts(path: Path, package: str) -> list[str]:
    """``bench/perf/run.py`` -> ``["rlarena.bench", "perf", "run"]`` (a package's ``__init__`` keeps it)."""
    return [package, *path.relative_to(REPO / path.relative_to(REPO).parts[0]).with_suffix("").parts]


def module_name(path: Path, package: str) -> str:
    parts = module_parts(path, package)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_statements(path: Path, package: str) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import, relative ones resolved: ``import a.b`` gives
    ``(line, "a.b", [])``, ``from a import b, c`` gives ``(line, "a", ["b", "c"])``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = module_parts(path, package)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                base = parts[: len(parts) - node.level]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module, [alias.name for alias in node.names]))
    return found


def imported_modules(path: Path, package: str) -> list[str]:
    return [module for _, module, _ in import_statements(path, package)]


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_no_import_runs_back_up(floor):
    offenders = []
    for path in sorted((REPO / floor).rglob("*.py")):
        for name in imported_modules(path, PACKAGE_OF[floor]):
            if name.startswith(FORBIDDEN[floor]) or name.split(".")[0] in ("algorithms", "envs", "bench"):
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders, "\n".join(offenders)


def import_graph(floor: str) -> tuple[dict[str, dict[str, str]], dict[str, Path]]:
    """module -> {imported module of the same floor -> where ("path:line")}, and module -> file."""
    package = PACKAGE_OF[floor]
    files = {module_name(p, package): p for p in sorted((REPO / floor).rglob("*.py"))}
    graph: dict[str, dict[str, str]] = {m: {} for m in files}
    for module, path in files.items():
        for line, target, names in import_statements(path, package):
            # `from pkg import mod` imports the submodule pkg.mod; `from mod import name` imports mod.
            targets = [f"{target}.{n}" if f"{target}.{n}" in files else target for n in names] or [target]
            for imported in targets:
                if imported in files and imported != module and (module, imported) not in KNOWN_CIRCLES:
                    graph[module].setdefault(imported, f"{path.relative_to(REPO)}:{line}")
    return graph, files


def circles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """One shortest circle through each strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    found = []
    for group in groups:
        start, members = group[0], set(group)
        parent: dict[str, str] = {}
        queue = deque([start])
        while queue:  # breadth first from start, inside the group, back to start
            node = queue.popleft()
            if start in graph[node]:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                found.append([*reversed(path), start])
                break
            for nxt in graph[node]:
                if nxt in members and nxt not in parent and nxt != start:
                    parent[nxt] = node
                    queue.append(nxt)
    return found


@pytest.mark.parametrize("floor", sorted(PACKAGE_OF))
def test_no_import_circle(floor):
    graph, _ = import_graph(floor)
    described = []
    for circle in circles(graph):
        steps = [f"{a} imports {b} ({graph[a][b]})" for a, b in zip(circle, circle[1:])]
        described.append(" -> ".join(circle) + ":\n    " + "\n    ".join(steps))
    assert not described, "import circles:\n" + "\n".join(described)


def test_circle_finder_sees_chains():
    graph = {"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}, "d": {"a": ""}, "e": {"f": ""}, "f": {"e": ""}}
    assert circles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert circles({"a": {"b": ""}, "b": {}}) == []
