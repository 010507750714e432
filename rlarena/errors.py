"""The error types every floor raises for what a user can fix: printed as one paragraph, without a traceback.

``rlarena`` commands print ``UserError`` messages and exit with code 2 (set ``RLARENA_TRACEBACK=1`` to see
the traceback as well); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a bad file: the message says what is wrong and what to change."""


class ConfigError(UserError, ValueError):
    """An invalid setting (hyper-parameter, run setting, environment setting); raised before any work."""


class RunFileError(UserError):
    """A file (a run's, or an artifact a run reads) that is missing, corrupt or written by something else;
    the message names the file."""


class MissingFileError(RunFileError, FileNotFoundError):
    """A file a command needs does not exist (a checkpoint an earlier pipeline step makes, a local model
    folder); the message names the file and the command that makes it."""


class RunDirectoryInUse(UserError):
    """Another process holds the run directory's lock."""


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
