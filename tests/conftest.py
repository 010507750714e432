from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
torch.set_num_threads(1)


def _resolve_anyio_lazy_imports() -> None:
    """Import now, in the main thread, what anyio would import on first use.

    anyio (under starlette, the label server) imports its parts lazily; pytest assertion-rewrites anyio
    (every pytest11 plugin's package is marked, even with ``-p no:anyio``), so a first use inside the
    label server's thread runs ``ast.parse`` beside the main thread, and CPython 3.11 can fail that with
    "SystemError: AST constructor recursion depth mismatch" (seen in CI, test_label_page)."""
    try:
        import anyio
        import anyio.abc
    except ImportError:  # the label server's extra is not installed
        return
    for module in (anyio, anyio.abc):
        for name in dir(module):
            getattr(module, name)


_resolve_anyio_lazy_imports()

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run the ``rlarena`` command in a subprocess (the way users run it)."""
    proc = subprocess.run(
        [sys.executable, "-m", "rlarena.bench.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"rlarena {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def cli():
    return run_cli


# Short, fast training overrides shared by smoke tests.
TINY = ["total_steps=256", "algo.num_steps=64", "eval.episodes=2", "eval.every_steps=0", "progress=false"]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)
