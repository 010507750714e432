"""Hydra callbacks: report failed sweep jobs at the end instead of losing them in the logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .results import FAILED


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from . import cli

        sweep_dir = Path(config.hydra.sweep.dir)
        for failed in sorted(sweep_dir.rglob(FAILED)):
            try:
                error = json.loads(failed.read_text())["error"]
            except (OSError, ValueError, KeyError):
                error = "(unreadable failure record)"
            cli.FAILED_JOBS.append(f"{failed.parent}: {error}")
