"""The error types every floor raises for what a user can fix: printed as one paragraph, without a traceback.

``rlarena`` commands print ``UserError`` messages and exit with code 2 (set ``RLARENA_TRACEBACK=1`` to see
the traceback as well); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path


class UserError(Exception):
    """Bad input or a bad file: the message says what is wrong and what to change."""


class ConfigError(UserError, ValueError):
    """An invalid setting (hyper-parameter, run setting, environment setting); raised before any work."""


# ---- config checks: each raises ConfigError with the message a user reads


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_positive(name: str, value: float) -> None:
    check(
        isinstance(value, (int, float)) and value > 0 and math.isfinite(value),
        f"{name} must be > 0, got {value}",
    )


def check_nonnegative(name: str, value: float) -> None:
    check(
        isinstance(value, (int, float)) and value >= 0 and math.isfinite(value),
        f"{name} must be a finite number >= 0, got {value}",
    )


def check_learning_rate(name: str, value: float) -> None:
    """A step size in (0, 1]: beyond 1, Adam, RMSprop and SGD on these networks diverge at once."""
    check(
        isinstance(value, (int, float)) and 0 < value <= 1,
        f"{name} must be > 0 and <= 1, got {value}",
    )


def check_unit(name: str, value: float, *, closed_low: bool = True) -> None:
    ok = (0 <= value <= 1) if closed_low else (0 < value <= 1)
    check(ok, f"{name} must be in {'[' if closed_low else '('}0, 1], got {value}")


class RunFileError(UserError):
    """A file (a run's, or an artifact a run reads) that is missing, corrupt or written by something else;
    the message names the file."""


class MissingFileError(RunFileError, FileNotFoundError):
    """A file a command needs does not exist (a checkpoint an earlier pipeline step makes, a local model
    folder); the message names the file and the command that makes it."""


class RunDirectoryInUse(UserError):
    """Another process holds the run directory's lock."""


class DiskFullError(UserError):
    """The filesystem ran out of room while writing ``path`` (nothing half-written replaced a good file:
    writes are atomic). ``hint``: what to do next (the training loop adds the last good checkpoint)."""

    def __init__(self, path: str | os.PathLike, hint: str | None = None) -> None:
        self.path = Path(path)
        message = f"no space left on device while writing {self.path}"
        super().__init__(f"{message}; {hint}" if hint else message)


# What write(2) reports for a full filesystem or an exhausted quota (torch.save's failures, which carry no
# errno, are turned into ENOSPC by rlarena.io.atomic_torch_save when the filesystem has no room left).
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that failed for want of space."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def report(prog: str, exc: UserError) -> int:
    """Print a user error as one paragraph on stderr (the traceback too if ``RLARENA_TRACEBACK=1``); return
    the exit code for it (2)."""
    import os
    import sys
    import traceback

    if os.environ.get("RLARENA_TRACEBACK") == "1":
        traceback.print_exception(exc)
    print(f"{prog}: {exc}", file=sys.stderr)
    return 2
