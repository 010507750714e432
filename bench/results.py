"""A run directory: resolved config, metrics stream, TensorBoard events, checkpoints and the summary.

Layout (one directory per run)::

    config.yaml        the resolved config
    metrics.jsonl      one JSON object per line: {"kind": "train"|"eval", "step": ..., ...}
    tb/                TensorBoard events
    checkpoint.pt      latest checkpoint (atomic: temp file + rename); load with weights_only=True
    summary.json       written last, atomically: its presence means the run finished
    failed.json        instead of summary.json when the run raised (multirun keeps going)
    reused.json        instead of summary.json when an identical finished run was found (sweep re-run)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from rlarena.io import atomic_torch_save, atomic_write_json, atomic_write_text, safe_torch_load

SUMMARY = "summary.json"
FAILED = "failed.json"
REUSED = "reused.json"  # a sweep job skipped because an identical run had finished (points to it)
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


def _jsonable(value: Any) -> Any:
    """NaN/inf are not JSON: store them as null rather than produce a file other tools can't parse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class RunDirectory:
    """Writes one run's files. ``resume_step``: reopen a run to continue from its checkpoint at that step;
    metrics and TensorBoard events logged after it (by the interrupted process) are dropped first."""

    def __init__(
        self, path: str | os.PathLike, tensorboard: bool = True, resume_step: int | None = None
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            _drop_metrics_after(self.path / METRICS, resume_step)
        self._metrics = open(self.path / METRICS, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(str(self.path / "tb"), purge_step=purge)

    def write_config(self, yaml_text: str) -> None:
        atomic_write_text(self.path / "config.yaml", yaml_text)

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        record = {"kind": kind, "step": int(step), **_jsonable(values)}
        self._metrics.write(json.dumps(record, sort_keys=True) + "\n")
        self._metrics.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def log_text(self, tag: str, step: int, text: str) -> None:
        if self._tb is not None:
            self._tb.add_text(tag, text, step)

    def save_checkpoint(self, state: dict[str, Any]) -> Path:
        path = self.path / CHECKPOINT
        atomic_torch_save(path, state)
        return path

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY, _jsonable(summary))

    def write_failure(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.path / FAILED, _jsonable(info))

    def close(self) -> None:
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()


def read_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any]:
    return safe_torch_load(Path(run_dir) / CHECKPOINT)


def _drop_metrics_after(file: Path, step: int) -> None:
    if not file.exists():
        return
    lines = file.read_text(encoding="utf-8").splitlines()
    kept = []
    for i, line in enumerate(lines):
        try:
            record_step = int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            if i == len(lines) - 1:
                continue  # the torn last line of a killed process
            kept.append(line)  # anything else is kept as it is
            continue
        if record_step <= step:
            kept.append(line)
    atomic_write_text(file, "".join(line + "\n" for line in kept))


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(Path(path) / METRICS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def find_finished_run(root: str | os.PathLike, config_hash: str) -> Path | None:
    """A finished run under ``root`` with the same config hash, if any (sweeps skip those)."""
    root = Path(root)
    if not root.is_dir():
        return None
    for summary_path in root.rglob(SUMMARY):
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if summary.get("config_hash") == config_hash and summary.get("status") == "finished":
            return summary_path.parent
    return None
