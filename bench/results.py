"""A run directory: resolved config, metrics stream, TensorBoard events, checkpoints and the summary.

Layout (one directory per run)::

    config.yaml        the resolved config
    metrics.jsonl      one JSON object per line: {"kind": "train"|"eval", "step": ..., ...}
    tb/                TensorBoard events
    checkpoint.pt      latest checkpoint (atomic: temp file + rename); load with weights_only=True
    summary.json       written last, atomically: its presence means the run finished
    failed.json        instead of summary.json when the run raised (multirun keeps going)
    reused.json        instead of summary.json when an identical finished run was found (sweep re-run)
    .lock              held (flock) by the one process writing the run; holds its PID
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlarena.errors import DiskFullError, RunFileError, is_disk_full
from rlarena.io import atomic_torch_save, atomic_write_json, atomic_write_text, safe_torch_load

log = logging.getLogger("rlarena")

CONFIG = "config.yaml"
SUMMARY = "summary.json"
FAILED = "failed.json"
REUSED = "reused.json"  # a sweep job skipped because an identical run had finished (points to it)
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CHECKPOINT_KEYS = ("step", "iteration", "algo_config", "policy", "algorithm", "env", "torch_rng", "numpy_rng")


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
        # The step of the newest checkpoint on disk: what a resume after a failure goes on from.
        self.checkpoint_step = resume_step
        self._disk_full = False
        if resume_step is not None:
            _drop_metrics_after(self.path / METRICS, resume_step)
        # A fresh run starts its metrics anew: a step is never logged twice in one file.
        mode = "w" if resume_step is None else "a"
        self._metrics = open(self.path / METRICS, mode, encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(str(self.path / "tb"), purge_step=purge)

    def write_config(self, yaml_text: str) -> None:
        atomic_write_text(self.path / CONFIG, yaml_text)

    def log(
        self, kind: str, step: int, values: dict[str, Any], to_file: bool = True, to_tensorboard: bool = True
    ) -> None:
        if to_file:
            record = {"kind": kind, "step": int(step), **_jsonable(values)}
            try:
                self._metrics.write(json.dumps(record, sort_keys=True) + "\n")
                self._metrics.flush()
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                self._disk_full = True  # a torn last line at most, which a resume drops
                raise DiskFullError(self.path / METRICS) from exc
        if self._tb is not None and to_tensorboard:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def log_text(self, tag: str, step: int, text: str) -> None:
        if self._tb is not None:
            self._tb.add_text(tag, text, step)

    def log_gif(self, tag: str, step: int, gif: bytes, width: int, height: int) -> None:
        """An animated GIF in TensorBoard's image dashboard (what ``add_video`` writes, without moviepy)."""
        if self._tb is not None:
            from tensorboard.compat.proto.summary_pb2 import Summary

            image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
            self._tb._get_file_writer().add_summary(
                Summary(value=[Summary.Value(tag=tag, image=image)]), step
            )

    def save_checkpoint(self, state: dict[str, Any]) -> Path:
        path = self.path / CHECKPOINT
        atomic_torch_save(path, state)
        self.checkpoint_step = int(state["step"])
        return path

    def disk_full_hint(self) -> str:
        """What to do after a full disk stopped this run (see :func:`disk_full_hint`)."""
        return disk_full_hint(self.path, self.checkpoint_step)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY, _jsonable(summary))

    def write_failure(self, info: dict[str, Any]) -> None:
        write_failure(self.path, info)

    def close(self) -> None:
        try:
            self._metrics.close()
        except OSError as exc:
            if not (self._disk_full and is_disk_full(exc)):  # else: the failed flush raised in log() already
                raise
        if self._tb is not None:
            self._tb.close()


def disk_full_hint(run_dir: str | os.PathLike, checkpoint_step: int | None) -> str:
    """The rest of the message of a run a full disk stopped: the step its checkpoint on disk holds."""
    if checkpoint_step is None:
        return "no checkpoint was written yet; free space and start the run again"
    resume = f"`rlarena resume {run_dir}`"
    return f"the last good checkpoint is step {checkpoint_step}; free space and run {resume}"


def write_failure(run_dir: str | os.PathLike, info: dict[str, Any]) -> bool:
    """``failed.json``: the run raised (the leaderboard tells a crash from a kill, which leaves none).

    Best effort: called while an error is on its way up (a full disk, often), it never raises; returns
    whether the record was written."""
    path = Path(run_dir) / FAILED
    try:
        atomic_write_json(path, _jsonable(info))
    except Exception as exc:  # the error being recorded matters more than its record
        log.warning("could not write %s: %s", path, exc)
        return False
    return True


# Everything a run writes (besides Hydra's .hydra/ and the lock): what a fresh start clears.
RUN_FILES = (CONFIG, METRICS, "tb", CHECKPOINT, SUMMARY, FAILED, REUSED)


def clear_run_files(run_dir: str | os.PathLike) -> None:
    """Remove a previous run's files from ``run_dir`` (call it while holding the directory's lock)."""
    for name in RUN_FILES:
        target = Path(run_dir) / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def checkpoint_owner(cfg: Any) -> dict[str, str]:
    """What a checkpoint records of the run it belongs to (``run`` in the checkpoint): the algorithm and the
    task. ``cfg``: the run's config."""
    env_id = cfg.env.get("id", cfg.env.name)
    return {"algo": str(cfg.algo.name), "env": str(cfg.env.name), "env_id": str(env_id)}


def _describe_owner(owner: dict[str, Any]) -> str:
    env, env_id = owner.get("env"), owner.get("env_id")
    return f"algo {owner.get('algo')} on {env}" + (f" ({env_id})" if env_id not in (None, env) else "")


def _load_error_reason(exc: BaseException) -> str:
    """torch.load's error in one line. A ``weights_only`` refusal leads with advice to load the file with
    ``weights_only=False``, which runs whatever code it holds: only its cause is kept."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours its advice
    if not text:
        return type(exc).__name__
    for line in text.splitlines():
        if line.strip().startswith("WeightsUnpickler error:"):
            cause = line.strip().removeprefix("WeightsUnpickler error:").strip()
            return cause.split(". Please use")[0]  # the rest: how to allowlist what the file holds
    first = text.splitlines()[0]
    return "it holds objects a safe load refuses" if "weights_only" in text else first


def read_checkpoint(run_dir: str | os.PathLike, cfg: Any = None) -> dict[str, Any]:
    """The run's checkpoint; a truncated, garbled or foreign file raises :class:`RunFileError` naming it.
    With the run's config ``cfg``: a checkpoint that records another run (``checkpoint_owner``) is refused
    too (checkpoints written before the record existed have none and load)."""
    path = Path(run_dir) / CHECKPOINT
    try:
        state = safe_torch_load(path)
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such file") from None
    except Exception as exc:  # torch raises many kinds on a damaged zip/pickle
        reason = _load_error_reason(exc)
        raise RunFileError(f"{path}: not a readable checkpoint (truncated or corrupt?): {reason}") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise RunFileError(f"{path}: not an rlarena run checkpoint (missing {', '.join(missing)})")
    recorded = state.get("run")
    if cfg is not None and recorded is not None:
        mine = checkpoint_owner(cfg)
        if not isinstance(recorded, dict) or {k: recorded.get(k) for k in mine} != mine:
            theirs = _describe_owner(recorded) if isinstance(recorded, dict) else repr(recorded)[:80]
            raise RunFileError(
                f"{path} does not belong to this run (checkpoint: {theirs}; run: {_describe_owner(mine)}); "
                "put back this run's own checkpoint.pt"
            )
    return state


def read_finished_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A finished run's ``summary.json``, with the figures a resume reports checked (:class:`RunFileError`
    naming the file otherwise)."""
    path = Path(run_dir) / SUMMARY
    summary = read_json_file(path)
    steps, score = summary.get("steps_done"), summary.get("eval_return_mean")
    problem = None
    if "steps_done" not in summary or "eval_return_mean" not in summary:
        problem = f"missing {'steps_done' if 'steps_done' not in summary else 'eval_return_mean'!r}"
    elif not isinstance(steps, int) or isinstance(steps, bool):
        problem = f"'steps_done' should be an integer, got {steps!r:.60}"
    elif score is not None and not _is_number(score):  # null: an older run whose evaluation was NaN
        problem = f"'eval_return_mean' should be a number, got {score!r:.60}"
    if problem:
        raise RunFileError(
            f"{path}: not a finished run's summary ({problem}); remove it, and `rlarena resume` finishes the "
            "run again from its checkpoint"
        )
    return summary


def read_json_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object file a run wrote; unreadable or not an object raises :class:`RunFileError` naming it."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFileError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RunFileError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def require_saved_run(run_dir: str | os.PathLike, prog: str, consequence: str) -> Path:
    """``run_dir`` as a Path if it holds a config and a checkpoint; else :class:`RunFileError` saying what
    is missing, prefixed with ``prog`` and followed by ``consequence``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFileError(f"{prog}: no run directory {str(run_dir)!r}")
    missing = [name for name in (CONFIG, CHECKPOINT) if not (run_dir / name).is_file()]
    if missing:
        raise RunFileError(f"{prog}: {str(run_dir)!r} has no {' and no '.join(missing)}; {consequence}")
    return run_dir


def read_run_config(run_dir: str | os.PathLike) -> Any:
    """The run's resolved ``config.yaml`` as an OmegaConf object (:class:`RunFileError` if unreadable)."""
    from omegaconf import DictConfig, OmegaConf

    path = Path(run_dir) / CONFIG
    try:
        cfg = OmegaConf.load(path)
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such file") from None
    except Exception as exc:  # yaml's and OmegaConf's parse errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunFileError(f"{path}: not a readable run config: {reason}") from None
    if not isinstance(cfg, DictConfig) or "algo" not in cfg or "env" not in cfg:
        raise RunFileError(f"{path}: not an rlarena run config (no algo/env sections)")
    return cfg


def metrics_kept_at_resume(file: Path, step: int) -> str:
    """The text of ``metrics.jsonl`` a resume from the checkpoint at ``step`` keeps: the records up to it;
    the torn last line of a killed process is dropped. A missing file, or a line before the last that is no
    record (not UTF-8, not JSON), raises :class:`RunFileError` naming the file: a resume would otherwise
    start a log with no record before ``step``, or keep a line that makes the leaderboard skip the run."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise RunFileError(
            f"{file}: no such file, so the steps up to the checkpoint (step {step}) have no record and a "
            "resume would start the log at that step; put the file back, or train the run afresh"
        ) from None
    except OSError as exc:
        raise RunFileError(f"{file}: cannot read ({exc.strerror or exc})") from None
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline that ends the last record
    kept = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
            record_step = int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
            if i == len(lines) - 1:
                continue  # the torn last line of a killed process
            what = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "not a metrics record"
            raise RunFileError(
                f"{file} line {i + 1}: {what} (each line is one JSON object with a 'step'); repair or remove "
                "that line, then resume"
            ) from None
        if record_step <= step:
            kept.append(line)
    return "".join(line + "\n" for line in kept)


def _drop_metrics_after(file: Path, step: int) -> None:
    atomic_write_text(file, metrics_kept_at_resume(file, step))


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(Path(path) / METRICS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def config_hash(cfg: Any) -> str:
    """What identifies a run's experiment: its resolved config without Hydra's section and the keys that
    only change how it is watched (``NON_SEMANTIC_KEYS``). ``cfg``: an OmegaConf config or a plain mapping."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    data.pop("hydra", None)
    for key in NON_SEMANTIC_KEYS:
        data.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def finished_run_hash(run_dir: str | os.PathLike) -> str | None:
    """The config hash of the finished run in ``run_dir`` (``None`` if none finished there).

    Recomputed from its ``config.yaml`` under today's rules, so runs written before a key became
    non-semantic (``video`` did) are still recognised; the hash stored in ``summary.json`` is the fallback.
    """
    try:
        summary = json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(summary, dict) or summary.get("status") != "finished":
        return None
    try:
        return config_hash(read_run_config(run_dir))
    except RunFileError:
        stored = summary.get("config_hash")
        return stored if isinstance(stored, str) else None


def finished_code_path(run_dir: str | os.PathLike) -> str | None:
    """The CPU code path a finished run recorded (``summary.json``'s ``code_path``; None for runs before
    2026-12-03, which did not record it, or for no readable summary)."""
    try:
        value = json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8")).get("code_path")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def find_finished_run(root: str | os.PathLike, config_hash: str, code_path: str | None = None) -> Path | None:
    """A finished run under ``root`` with the same config hash, if any (sweeps skip those). With
    ``code_path``: only one made on that CPU code path, or one that did not record its code path: the same
    config on another code path computes other numbers, so it is another measurement, not a duplicate."""
    root = Path(root)
    if not root.is_dir():
        return None
    for summary_path in root.rglob(SUMMARY):
        run_dir = summary_path.parent
        if finished_run_hash(run_dir) != config_hash:
            continue
        if code_path is None or finished_code_path(run_dir) in (None, code_path):
            return run_dir
    return None


# ------------------------------------------------------------------------------ reading many run directories
#
# The reading side, used by `rlarena leaderboard`: ``summary.json`` (its presence means the run finished),
# ``metrics.jsonl`` (train and eval records), ``config.yaml`` and, for runs that raised, ``failed.json``.
# Runs may sit anywhere below the given paths (Hydra multirun folders nest them as
# ``multirun/<date>/<time>/<job>/``). Anything unreadable is listed as skipped with a reason, never fatal.

RUN_MARKERS = (SUMMARY, FAILED, METRICS, REUSED)

# Keys that change how a run is watched, not what it computes: excluded from the config hash.
NON_SEMANTIC_KEYS = (
    "progress",
    "force",
    "outputs_root",
    "torch_threads",
    "tensorboard",
    "checkpoint",
    "video",
    "metrics",
)
# Config keys that legitimately differ between the seeds of one experiment, or only change how a run is
# watched: left out when the leaderboard compares the configs of pooled runs.
VARYING_KEYS = {"seed", *NON_SEMANTIC_KEYS}

# The registered name of the reward-from-preferences algorithm (algorithms/preference). Its runs are ranked
# per inner algorithm and label budget (``algo.inner``, ``algo.total_labels``): a label-budget sweep is one
# experiment per budget, not seeds of one, and the leaderboard's labels view plots return against budget.
PREFERENCE_ALGO = "preference"


# The implementation of a run whose summary.json does not name one (written before it recorded it).
DEFAULT_IMPLEMENTATION = "rlarena"

# The suffix of a run trained on a learned reward model (``env.reward: rm``, text envs) rather than the
# environment's own reward: "ppo" and "ppo [RM reward]" are different experiments, never pooled.
RM_REWARD_SUFFIX = " [RM reward]"


def variant_name(
    algo: str, inner: str | None = None, total_labels: int | None = None, reward: str | None = None
) -> str:
    """The name the leaderboard ranks a run under: its algorithm, and for a preference run with a known
    label budget ``preference-<inner> (<n> labels)``, so each budget of a sweep is a row of its own. A run
    with ``env.reward: rm`` gets ``RM_REWARD_SUFFIX``; a preference run learns its own reward model
    whatever ``env.reward`` says, so it never does."""
    if algo != PREFERENCE_ALGO:
        return algo + RM_REWARD_SUFFIX if reward == "rm" else algo
    if total_labels is None:
        return algo
    return f"{algo}-{inner} ({total_labels} labels)" if inner else f"{algo} ({total_labels} labels)"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``); other values,
    lists included, are kept as they are."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class RunSkipped(Exception):
    """A run directory that cannot be scored; the message says why."""


class RunReused(Exception):
    """A sweep job folder that points at an identical run finished elsewhere."""


@dataclass
class Run:
    path: Path
    algo: str
    env: str
    env_id: str | None
    seed: int
    total_steps: int | None
    final_return: float  # mean return of the final evaluation: the run's score
    eval_steps: np.ndarray  # the learning curve, from the eval records
    eval_means: np.ndarray
    final_train_return: float | None
    train_return_last100: float | None  # mean of the last 100 training episodes (CleanRL's metric)
    steps_per_sec: float | None
    wall_time_s: float | None
    config_hash: str | None
    random_score: float | None
    reference_score: float | None
    mtime: float = 0.0
    code_path: str | None = None  # summary.json's (runs before 2026-12-03 lack it)
    config: dict[str, str] | None = None  # flattened config.yaml without the keys seeds may vary in
    inner: str | None = None  # preference runs: algo.inner and algo.total_labels from config.yaml
    total_labels: int | None = None
    # Text runs: the final evaluation's score on the generalization split (summary eval_ood_score).
    ood_score: float | None = None
    reward: str | None = None  # env.reward from config.yaml (text envs: "oracle" or "rm")
    # Whose code ran (summary.json's implementation, e.g. "stable-baselines3" for a peer plugin, and its
    # version); runs written before summary.json recorded it are rlarena's own.
    implementation: str = DEFAULT_IMPLEMENTATION
    implementation_version: str | None = None

    @property
    def variant(self) -> str:
        """What the leaderboard groups seeds by (see ``variant_name``)."""
        return variant_name(self.algo, self.inner, self.total_labels, self.reward)

    @property
    def best_eval_return(self) -> float:
        """The best evaluation over training, the final one included (Tianshou's metric)."""
        return float(max([self.final_return, *self.eval_means.tolist()]))

    @property
    def auc(self) -> float:
        from . import stats  # lazily: the training loop, which writes runs, does not need scipy

        return stats.curve_auc(self.eval_steps, self.eval_means)


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class Collection:
    runs: list[Run] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # sweep jobs that skipped training (see REUSED)


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Skipped]]:
    """Every directory below ``paths`` that looks like a run: it has one of the run files, or is a Hydra
    job folder (``.hydra/``) that never got as far as writing one. Hidden folders are not searched."""
    found: dict[Path, None] = {}  # ordered set: overlapping PATH arguments must not count a run twice
    hydra_only: set[Path] = set()
    missing: list[Skipped] = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            missing.append(Skipped(str(root), "path does not exist"))
            continue
        if root.is_file():
            root = root.parent  # e.g. `leaderboard run/summary.json`
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath).resolve()
            if any(marker in filenames for marker in RUN_MARKERS):
                found[here] = None
                dirnames[:] = []  # a run's own subfolders (checkpoints, tb/) hold no runs
                continue
            if ".hydra" in dirnames:
                found[here] = None
                hydra_only.add(here)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    # A Hydra job folder is only a crashed run if no run was written below it.
    runs = [p for p in found if not (p in hydra_only and any(q != p and q.is_relative_to(p) for q in found))]
    return runs, missing


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunSkipped(f"{path.name}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise RunSkipped(f"{path.name}: not UTF-8 text") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunSkipped(f"{path.name}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> float | None:
    return float(value) if _is_number(value) and math.isfinite(value) else None


def _field(summary: dict[str, Any], key: str, kind: str, required: bool = True) -> Any:
    """One summary field, type-checked; a wrong type is a reason to skip, not a crash later."""
    value = summary.get(key)
    if value is None:
        if required:
            raise RunSkipped(f"{SUMMARY}: missing {key!r}")
        return None
    if kind == "str" and isinstance(value, str) and value:
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "number" and _is_number(value):
        if not math.isfinite(value):
            raise RunSkipped(f"{SUMMARY}: {key!r} is not finite")
        return float(value)
    raise RunSkipped(f"{SUMMARY}: {key!r} should be a {kind}, got {value!r:.60}")


def _failure_reason(path: Path) -> str:
    try:
        info = json.loads((path / FAILED).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "failed (unreadable failed.json)"
    if isinstance(info, dict):
        for key in ("error", "exception", "message", "reason"):
            if info.get(key):
                return f"failed: {str(info[key]).splitlines()[0][:200]}"
    return "failed"


def _read_eval_curve(path: Path) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Eval curve (steps, mean returns) and the last finite training return from ``metrics.jsonl``,
    validated line by line (``read_metrics`` above trusts the file)."""
    file = path / METRICS
    if not file.exists():
        raise RunSkipped(f"{METRICS} missing")
    evals: dict[int, float] = {}
    last_train: float | None = None
    try:
        with open(file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RunSkipped(f"{METRICS} line {lineno}: invalid JSON ({exc.msg})") from exc
                if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                    raise RunSkipped(f"{METRICS} line {lineno}: not a record with an integer 'step'")
                if record.get("kind") == "eval":
                    value = _finite(record.get("eval_return_mean"))
                    if value is not None:
                        evals[record["step"]] = value  # a repeated step (resumed run) keeps the latest
                elif record.get("kind") == "train":
                    value = _finite(record.get("episode_return_mean"))
                    if value is not None:
                        last_train = value
    except (OSError, UnicodeDecodeError) as exc:
        raise RunSkipped(f"{METRICS}: cannot read ({exc})") from exc
    if not evals:
        raise RunSkipped(f"{METRICS} has no eval records with a finite return")
    steps = np.array(sorted(evals), dtype=float)
    return steps, np.array([evals[int(s)] for s in steps]), last_train


def _read_config(path: Path) -> dict[str, Any] | None:
    """The run's resolved config.yaml, or None: it is optional information for the leaderboard."""
    try:
        import yaml  # PyYAML comes with omegaconf

        config = yaml.safe_load((path / CONFIG).read_text(encoding="utf-8"))
    except Exception:  # missing, unreadable or not YAML: simply not recorded
        return None
    return config if isinstance(config, dict) else None


def _preference_fields(algo: str, config: dict[str, Any] | None) -> tuple[str | None, int | None]:
    """``algo.inner`` and ``algo.total_labels`` of a preference run (None where not recorded); other
    algorithms get (None, None) whatever their config holds, so only preference runs become variants."""
    algo_config = config.get("algo") if config else None
    if algo != PREFERENCE_ALGO or not isinstance(algo_config, dict):
        return None, None
    inner, labels = algo_config.get("inner"), algo_config.get("total_labels")
    return (
        inner if isinstance(inner, str) and inner else None,
        labels if isinstance(labels, int) and not isinstance(labels, bool) else None,
    )


def _comparable_config(config: dict[str, Any] | None) -> dict[str, str] | None:
    """The flattened config as JSON strings, without ``VARYING_KEYS``: what the seeds of one experiment
    share."""
    flat = flatten(config) if config else None
    if not flat:
        return None
    return {
        key: json.dumps(value, sort_keys=True, default=str)
        for key, value in flat.items()
        if key.split(".")[0] not in VARYING_KEYS
    }


def load_run(path: str | os.PathLike) -> Run:
    """Read and validate one run directory; raises ``RunSkipped`` with the reason when it can't be used."""
    path = Path(path)
    summary_file = path / SUMMARY
    if not summary_file.exists():
        if (path / FAILED).exists():
            raise RunSkipped(_failure_reason(path))
        if (path / REUSED).exists():
            raise RunReused(str(path))
        what = "has metrics but" if (path / METRICS).exists() else "has"
        raise RunSkipped(f"unfinished or crashed: {what} no {SUMMARY}")
    summary = _read_json(summary_file)
    if not isinstance(summary, dict):
        raise RunSkipped(f"{SUMMARY}: expected a JSON object")
    status = summary.get("status", "finished")
    if status != "finished":
        raise RunSkipped(f"status is {status!r}, not 'finished'")
    if summary.get("eval_return_mean", 0) is None:
        raise RunSkipped(f"{SUMMARY}: final eval return is null (the run produced NaN/inf)")
    run_fields = dict(
        algo=_field(summary, "algo", "str"),
        env=_field(summary, "env", "str"),
        env_id=_field(summary, "env_id", "str", required=False),
        seed=_field(summary, "seed", "int"),
        total_steps=_field(summary, "total_steps", "int", required=False),
        final_return=_field(summary, "eval_return_mean", "number"),
        train_return_last100=_field(summary, "train_return_last100", "number", required=False),
        steps_per_sec=_field(summary, "steps_per_sec", "number", required=False),
        wall_time_s=_field(summary, "wall_time_s", "number", required=False),
        config_hash=_field(summary, "config_hash", "str", required=False),
        random_score=_field(summary, "random_score", "number", required=False),
        reference_score=_field(summary, "reference_score", "number", required=False),
        ood_score=_field(summary, "eval_ood_score", "number", required=False),
        code_path=_field(summary, "code_path", "str", required=False),
        implementation=_field(summary, "implementation", "str", required=False) or DEFAULT_IMPLEMENTATION,
        implementation_version=_field(summary, "implementation_version", "str", required=False),
    )
    config = _read_config(path)
    env_config = config.get("env") if config else None
    for key in ("random_score", "reference_score"):  # older summaries may lack them; the config has them
        if run_fields[key] is None and isinstance(env_config, dict):
            run_fields[key] = _finite(env_config.get(key))
    steps, means, last_train = _read_eval_curve(path)
    inner, total_labels = _preference_fields(run_fields["algo"], config)
    reward = env_config.get("reward") if isinstance(env_config, dict) else None
    return Run(
        path=path,
        eval_steps=steps,
        eval_means=means,
        final_train_return=last_train,
        mtime=summary_file.stat().st_mtime,
        config=_comparable_config(config),
        inner=inner,
        total_labels=total_labels,
        reward=reward if isinstance(reward, str) else None,
        **run_fields,
    )


def collect_runs(paths: Sequence[str | os.PathLike], progress: bool = True) -> Collection:
    """Load every run below ``paths``; unusable ones go to ``skipped`` with the reason."""
    from tqdm import tqdm

    dirs, skipped = find_run_dirs(paths)
    collection = Collection(skipped=skipped)
    loaded: list[Run] = []
    # disable=None: tqdm shows the bar on a terminal and stays silent when stderr is a pipe or a file.
    for path in tqdm(dirs, desc="collecting runs", unit="run", disable=None if progress else True):
        try:
            loaded.append(load_run(path))
        except RunSkipped as exc:
            collection.skipped.append(Skipped(str(path), str(exc)))
        except RunReused:
            collection.reused.append(str(path))
    collection.runs = _split_mixed_tasks(_drop_duplicates(loaded, collection), collection)
    _check_groups(collection)
    return collection


def _split_mixed_tasks(runs: list[Run], collection: Collection) -> list[Run]:
    """Runs under one env name that simulated different gymnasium ids (``env=gym env.id=...``, or runs
    mislabelled before training refused it) are different tasks: each id gets its own row, ``name:id``."""
    ids: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        if run.env_id is not None:
            ids[run.env].add(run.env_id)
    mixed = {env for env, found in ids.items() if len(found) > 1}
    for env in sorted(mixed):
        collection.warnings.append(
            f"{env}: runs of different tasks ({', '.join(sorted(ids[env]))}) are shown as separate rows"
        )
    for run in runs:
        if run.env in mixed and run.env_id is not None:
            run.env = f"{run.env}:{run.env_id}"
    return sorted(runs, key=lambda r: (r.env, r.algo, r.seed, str(r.path)))


def _drop_duplicates(runs: list[Run], collection: Collection) -> list[Run]:
    """The same config (hash) and seed found twice, e.g. a copied sweep: count it once, the newest. Runs on
    different CPU code paths (``code_path``) are different measurements and all count."""
    newest: dict[tuple, Run] = {}
    kept: list[Run] = []
    for run in sorted(runs, key=lambda r: r.mtime, reverse=True):
        if run.config_hash is None:
            kept.append(run)
            continue
        key = (run.config_hash, run.algo, run.env, run.seed, run.code_path)
        if key in newest:
            collection.skipped.append(Skipped(str(run.path), f"duplicate of {newest[key].path}"))
        else:
            newest[key] = run
            kept.append(run)
    return sorted(kept, key=lambda r: (r.env, r.algo, r.seed, str(r.path)))


def _check_groups(collection: Collection) -> None:
    """Warn about groups whose runs are not comparable seeds of one experiment. Groups are the
    leaderboard's rows (variants): preference runs with different label budgets are never pooled."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in collection.runs:
        groups[(run.env, run.variant)].append(run)
    for (env, algo), runs in sorted(groups.items()):
        configs = [r.config for r in runs if r.config is not None]
        keys = sorted({k for c in configs for k in c})
        # A key a later release added with a null default reads as null in configs written before it.
        differing = [k for k in keys if len({c.get(k, "null") for c in configs}) > 1]
        budgets = sorted({r.total_steps for r in runs if r.total_steps is not None})
        if len(budgets) > 1 and "total_steps" not in differing:
            differing.insert(0, "total_steps")
        if differing:
            shown = ", ".join(differing[:6]) + (", ..." if len(differing) > 6 else "")
            collection.warnings.append(
                f"{env}/{algo}: pooled runs differ in their config ({shown}); compare like with like"
            )
        repeated = sorted(seed for seed, n in Counter(r.seed for r in runs).items() if n > 1)
        if repeated:
            collection.warnings.append(
                f"{env}/{algo}: seed(s) {', '.join(map(str, repeated))} appear in several runs (different "
                "configs or CPU code paths); each counts as a separate run"
            )
