"""Crash-safe writes, safe loads, one writer per directory: a reader never sees a half-written file."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import DiskFullError, RunDirectoryInUse, is_disk_full

TEMP_SUFFIX = ".tmp"


def _file_mode() -> int:
    """The mode ``open()`` gives a new file under this process's umask (mkstemp's 0600 would hide results
    from the rest of a team on a shared filesystem)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def _atomic_target(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``. A write that
    fails for want of space raises :class:`DiskFullError` naming ``path``, which keeps its old content."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        os.fchmod(fd, _file_mode())
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(path) from exc
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
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
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:
            # torch's C++ writer reports a full filesystem in several wordings ("unexpected pos ...",
            # "iostream error", ...) and never with the errno: the room left, read while the partial file
            # still holds its space, tells.
            if _no_room_left(Path(tmp).parent):
                raise OSError(errno.ENOSPC, f"No space left on device ({exc})", str(path)) from exc
            raise


NO_ROOM_BYTES = 1 << 20  # less than this free after a failed write: the filesystem is full


def _no_room_left(folder: Path) -> bool:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < NO_ROOM_BYTES


def safe_torch_load(path: str | os.PathLike, map_location: str = "cpu") -> Any:
    """Load a checkpoint without executing pickled code (``weights_only=True``)."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of atomic writes a killed process left in ``folder`` (call it only while
    holding the folder's lock, so no live writer owns them); returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


LOCK_FILE = ".lock"
_held: dict[Path, tuple[int, int]] = {}  # folder -> (fd, depth): re-entrant within one process


@contextmanager
def exclusive_directory(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the ``with`` block; fail at once with
    :class:`RunDirectoryInUse` naming the holder's PID if another process holds it. The OS releases the
    lock when a process dies, so a killed run never leaves its directory locked."""
    folder = Path(folder).resolve()
    if folder in _held:  # the same process, one level further in (the sweep job, then its training)
        fd, depth = _held[folder]
        _held[folder] = (fd, depth + 1)
        try:
            yield folder
        finally:
            _held[folder] = (fd, _held[folder][1] - 1)
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunDirectoryInUse(
            f"run directory {str(folder)!r} is in use by PID {holder}: two processes must not write one run "
            "(wait for it to finish, or choose another directory)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[folder] = (fd, 1)
    try:
        yield folder
    finally:
        del _held[folder]
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiting locker)
