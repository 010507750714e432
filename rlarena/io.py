"""Crash-safe file writes and safe loads: a reader never sees a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def _atomic_target(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    with _atomic_target(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch  # lazily: readers of JSON results (the leaderboard) should not pay for torch

    with _atomic_target(path) as tmp:
        torch.save(obj, tmp)


def safe_torch_load(path: str | os.PathLike, map_location: str = "cpu") -> Any:
    """Load a checkpoint without executing pickled code (``weights_only=True``)."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)
