"""`rlarena leaderboard PATH...`: collect finished runs, compare algorithms honestly, write the results.

Reading side of the run directory written by `rlarena train` (see ``results.py``): ``summary.json`` (its
presence means the run finished), ``metrics.jsonl`` (train and eval records), ``config.yaml`` and, for runs
that raised, ``failed.json``. Runs may sit anywhere below the given paths (Hydra multirun folders nest them
as ``multirun/<date>/<time>/<job>/``). Anything unreadable is listed as skipped with a reason, never fatal.

Per environment each algorithm gets the mean and IQM (with a bootstrap CI over seeds) of its final
evaluation return, the area under its learning curve, the last training return and its throughput. Across
environments, scores are normalized (random policy -> 0, reference -> 1) and compared with the rliable
tools in ``stats.py``: aggregate IQM / median / mean / optimality gap, performance profiles and the
probability of improvement.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlarena.io import atomic_write_text

from . import stats
from .results import FAILED, METRICS, REUSED, SUMMARY

CONFIG = "config.yaml"
RUN_MARKERS = (SUMMARY, FAILED, METRICS, REUSED)
CURVE_POINTS = 101  # resolution of the common grid when runs evaluated at different steps


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
    steps_per_sec: float | None
    wall_time_s: float | None
    config_hash: str | None
    random_score: float | None
    reference_score: float | None
    mtime: float = 0.0
    config: dict[str, str] | None = None  # flattened config.yaml without the keys seeds may vary in

    @property
    def auc(self) -> float:
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


# ------------------------------------------------------------------------------------------ collecting


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


def _read_metrics(path: Path) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Eval curve (steps, mean returns) and the last finite training return from ``metrics.jsonl``."""
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


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, sort_keys=True, default=str)
    return flat


# Config keys that legitimately differ between the seeds of one experiment, or only change how a run is
# watched (the training loop leaves the latter out of its config hash too).
VARYING_KEYS = {"seed", "progress", "force", "outputs_root", "torch_threads", "tensorboard", "checkpoint"}


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
        steps_per_sec=_field(summary, "steps_per_sec", "number", required=False),
        wall_time_s=_field(summary, "wall_time_s", "number", required=False),
        config_hash=_field(summary, "config_hash", "str", required=False),
        random_score=_field(summary, "random_score", "number", required=False),
        reference_score=_field(summary, "reference_score", "number", required=False),
    )
    config = _read_config(path)
    env_config = config.get("env") if config else None
    for key in ("random_score", "reference_score"):  # older summaries may lack them; the config has them
        if run_fields[key] is None and isinstance(env_config, dict):
            run_fields[key] = _finite(env_config.get(key))
    steps, means, last_train = _read_metrics(path)
    flat = _flatten(config) if config else None
    return Run(
        path=path,
        eval_steps=steps,
        eval_means=means,
        final_train_return=last_train,
        mtime=summary_file.stat().st_mtime,
        config={k: v for k, v in flat.items() if k.split(".")[0] not in VARYING_KEYS} if flat else None,
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
    collection.runs = _drop_duplicates(loaded, collection)
    _check_groups(collection)
    return collection


def _drop_duplicates(runs: list[Run], collection: Collection) -> list[Run]:
    """The same config (hash) and seed found twice, e.g. a copied sweep: count it once, the newest."""
    newest: dict[tuple, Run] = {}
    kept: list[Run] = []
    for run in sorted(runs, key=lambda r: r.mtime, reverse=True):
        if run.config_hash is None:
            kept.append(run)
            continue
        key = (run.config_hash, run.algo, run.env, run.seed)
        if key in newest:
            collection.skipped.append(Skipped(str(run.path), f"duplicate of {newest[key].path}"))
        else:
            newest[key] = run
            kept.append(run)
    return sorted(kept, key=lambda r: (r.env, r.algo, r.seed, str(r.path)))


def _check_groups(collection: Collection) -> None:
    """Warn about groups whose runs are not comparable seeds of one experiment."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in collection.runs:
        groups[(run.env, run.algo)].append(run)
    for (env, algo), runs in sorted(groups.items()):
        configs = [r.config for r in runs if r.config is not None]
        keys = sorted({k for c in configs for k in c})
        differing = [k for k in keys if len({c.get(k) for c in configs}) > 1]
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
                f"{env}/{algo}: seed(s) {', '.join(map(str, repeated))} appear in several runs with "
                "different configs; each counts as a separate run"
            )


# ------------------------------------------------------------------------------------------- building


@dataclass
class Curve:
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_runs: int


@dataclass
class EnvRow:
    env: str
    env_id: str
    algo: str
    seeds: list[int]
    total_steps: list[int]
    mean: float
    std: float
    iqm: stats.Estimate
    normalized_iqm: stats.Estimate | None
    final_train_return: float | None
    auc: float
    steps_per_sec: float | None

    @property
    def n_runs(self) -> int:
        return len(self.seeds)


@dataclass
class AggregateRow:
    algo: str
    n_tasks: int
    n_runs: int
    metrics: dict[str, stats.Estimate]


@dataclass
class Leaderboard:
    envs: list[str]
    algos: list[str]
    rows: dict[str, list[EnvRow]]
    curves: dict[str, dict[str, Curve]]
    normalization: dict[str, tuple[float, float]]  # env -> (random, reference) used
    unnormalized_envs: list[str]
    aggregate: list[AggregateRow]
    profile_taus: np.ndarray
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    improvement: dict[tuple[str, str], tuple[stats.Estimate, int]]  # (x, y) -> P(X > Y), shared tasks
    reps: int
    confidence: float
    n_runs: int


def _resolve_normalization(
    runs: list[Run], overrides: dict[str, tuple[float, float]], warnings: list[str]
) -> dict[str, tuple[float, float]]:
    """One (random, reference) pair per env: an override, else what the runs recorded (the most common)."""
    per_env: dict[str, Counter] = defaultdict(Counter)
    for run in runs:
        if run.random_score is not None and run.reference_score is not None:
            per_env[run.env][(run.random_score, run.reference_score)] += 1
    result: dict[str, tuple[float, float]] = {}
    for env in sorted({r.env for r in runs}):
        if env in overrides:
            result[env] = overrides[env]
            continue
        if not per_env[env]:
            continue
        (pair, _), *others = per_env[env].most_common()
        if others:
            warnings.append(f"{env}: runs disagree on random/reference scores; using {pair[0]:g}/{pair[1]:g}")
        if pair[0] == pair[1]:
            warnings.append(f"{env}: random score equals reference score ({pair[0]:g}); not normalized")
            continue
        result[env] = pair
    return result


def _mean_curve(runs: list[Run], **bootstrap_kw) -> Curve:
    """Average the learning curves of ``runs`` on common steps (interpolated when their evals differ)."""
    first = runs[0].eval_steps
    if all(np.array_equal(r.eval_steps, first) for r in runs):
        grid = first
        values = np.stack([r.eval_means for r in runs])
    else:
        lo = max(r.eval_steps[0] for r in runs)
        hi = min(r.eval_steps[-1] for r in runs)
        grid = np.linspace(lo, hi, CURVE_POINTS) if hi > lo else np.array([hi])
        values = np.stack([np.interp(grid, r.eval_steps, r.eval_means) for r in runs])
    mean, low, high = stats.mean_ci_over_runs(values, **bootstrap_kw)
    return Curve(grid, mean, low, high, len(runs))


def _optional_mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def build_leaderboard(
    collection: Collection,
    *,
    reps: int = stats.DEFAULT_REPS,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    seed: int = 0,
    reference: dict[str, tuple[float, float]] | None = None,
) -> Leaderboard:
    """All tables and curves of the report. Deterministic for a given ``seed``."""
    boot = dict(reps=reps, confidence=confidence, seed=seed)
    runs = collection.runs
    envs = sorted({r.env for r in runs})
    algos = sorted({r.algo for r in runs})
    normalization = _resolve_normalization(runs, reference or {}, collection.warnings)

    def norm(env: str, x: Any) -> np.ndarray:
        return stats.normalize(x, *normalization[env])

    by_group: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        by_group[run.env][run.algo].append(run)

    rows: dict[str, list[EnvRow]] = {}
    curves: dict[str, dict[str, Curve]] = {}
    for env in envs:
        rows[env], curves[env] = [], {}
        for algo, group in sorted(by_group[env].items()):
            scores = np.array([r.final_return for r in group])
            ids = sorted({r.env_id for r in group if r.env_id})
            rows[env].append(
                EnvRow(
                    env=env,
                    env_id=", ".join(ids),
                    algo=algo,
                    seeds=sorted(r.seed for r in group),
                    total_steps=sorted({r.total_steps for r in group if r.total_steps is not None}),
                    mean=float(scores.mean()),
                    std=float(scores.std(ddof=1)) if len(scores) > 1 else math.nan,
                    iqm=stats.iqm_ci(scores, **boot),
                    normalized_iqm=stats.iqm_ci(norm(env, scores), **boot) if env in normalization else None,
                    final_train_return=_optional_mean(r.final_train_return for r in group),
                    auc=float(np.mean([r.auc for r in group])),
                    steps_per_sec=_optional_mean(r.steps_per_sec for r in group),
                )
            )
            curves[env][algo] = _mean_curve(group, **boot)
        rows[env].sort(key=lambda row: (-row.iqm.value, -row.auc))  # equal IQMs: faster learner first

    # Across environments: only tasks with normalization constants can be pooled.
    normalized_envs = [env for env in envs if env in normalization]
    per_algo: dict[str, list[np.ndarray]] = {}
    for algo in algos:
        tasks = [
            norm(env, [r.final_return for r in by_group[env][algo]])
            for env in normalized_envs
            if by_group[env].get(algo)
        ]
        if tasks:
            per_algo[algo] = tasks
    aggregate = [
        AggregateRow(
            algo=algo,
            n_tasks=len(tasks),
            n_runs=sum(len(t) for t in tasks),
            metrics={name: stats.aggregate_ci(tasks, name, **boot) for name in stats.AGGREGATES},
        )
        for algo, tasks in per_algo.items()
    ]
    aggregate.sort(key=lambda row: -row.metrics["IQM"].value)

    taus = np.array([])
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    if per_algo:
        everything = np.concatenate([np.concatenate(t) for t in per_algo.values()])
        taus = np.linspace(min(0.0, everything.min()), max(1.0, everything.max()), CURVE_POINTS)
        profiles = {algo: stats.performance_profile(tasks, taus, **boot) for algo, tasks in per_algo.items()}

    # Probability of improvement compares runs within a task only, and an increasing affine map per task
    # does not change who beats whom: it works on raw returns and every shared env counts.
    improvement: dict[tuple[str, str], tuple[stats.Estimate, int]] = {}
    for x in algos:
        for y in algos:
            shared = [env for env in envs if by_group[env].get(x) and by_group[env].get(y)]
            if x == y or not shared:
                continue
            xs = [[r.final_return for r in by_group[env][x]] for env in shared]
            ys = [[r.final_return for r in by_group[env][y]] for env in shared]
            improvement[(x, y)] = (stats.probability_of_improvement(xs, ys, **boot), len(shared))

    return Leaderboard(
        envs=envs,
        algos=algos,
        rows=rows,
        curves=curves,
        normalization=normalization,
        unnormalized_envs=[env for env in envs if env not in normalization],
        aggregate=aggregate,
        profile_taus=taus,
        profiles=profiles,
        improvement=improvement,
        reps=reps,
        confidence=confidence,
        n_runs=len(runs),
    )


# ------------------------------------------------------------------------------------------- writing


def ranks(scores: Sequence[float]) -> list[int]:
    """Competition ranks of scores sorted best first: equal scores share a rank (1, 1, 3)."""
    return [1 + sum(other > score for other in scores) for score in scores]


def fmt(x: float | None) -> str:
    """Compact fixed-point numbers; n/a for missing or NaN."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_ci(e: stats.Estimate | None) -> str:
    if e is None:
        return "n/a"
    return f"{fmt(e.value)} [{fmt(e.low)}, {fmt(e.high)}]" if e.has_ci else f"{fmt(e.value)} (no CI)"


def md_escape(text: str) -> str:
    """Keep user strings (algorithm, env names, paths, error messages) from breaking a table or
    injecting HTML into a rendered Markdown page."""
    return (
        str(text)
        .replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def env_title(lb: Leaderboard, env: str) -> str:
    ids = lb.rows[env][0].env_id if lb.rows[env] else ""
    return f"{env} ({ids})" if ids and ids != env else env


ENV_HEADER = [
    "Rank",
    "Algorithm",
    "Seeds",
    "Final return (mean ± std)",
    "IQM [95% CI]",
    "Normalized IQM",
    "AUC",
    "Last train return",
    "Steps/s",
    "Steps",
]


def env_table_rows(lb: Leaderboard, env: str, escape=md_escape) -> list[list[str]]:
    return [
        [
            str(rank),
            escape(row.algo),
            str(row.n_runs),
            f"{fmt(row.mean)} ± {fmt(row.std)}",
            fmt_ci(row.iqm),
            fmt_ci(row.normalized_iqm),
            fmt(row.auc),
            fmt(row.final_train_return),
            fmt(row.steps_per_sec),
            ", ".join(map(str, row.total_steps)) or "n/a",
        ]
        for rank, row in zip(ranks([r.iqm.value for r in lb.rows[env]]), lb.rows[env])
    ]


AGGREGATE_HEADER = ["Rank", "Algorithm", "Tasks", "Runs", *[f"{name} [95% CI]" for name in stats.AGGREGATES]]


def aggregate_table_rows(lb: Leaderboard, escape=md_escape) -> list[list[str]]:
    n_envs = len(lb.normalization)
    return [
        [
            str(rank),
            escape(row.algo),
            f"{row.n_tasks}/{n_envs}",
            str(row.n_runs),
            *[fmt_ci(row.metrics[name]) for name in stats.AGGREGATES],
        ]
        for rank, row in zip(ranks([r.metrics["IQM"].value for r in lb.aggregate]), lb.aggregate)
    ]


def improvement_matrix(lb: Leaderboard, escape=md_escape) -> tuple[list[str], list[list[str]]]:
    header = ["P(row > column)", *[escape(a) for a in lb.algos]]
    rows = []
    for x in lb.algos:
        cells = [escape(x)]
        for y in lb.algos:
            entry = lb.improvement.get((x, y))
            cells.append("—" if x == y else "n/a" if entry is None else fmt_ci(entry[0]))
        rows.append(cells)
    return header, rows


def methodology(lb: Leaderboard) -> list[str]:
    pct = f"{lb.confidence:.0%}"
    return [
        "A run's score is the mean return of its final evaluation; seeds are the runs of one algorithm on "
        "one environment.",
        f"IQM is the interquartile mean (25% trimmed mean; with fewer than 4 seeds it equals the mean). "
        f"Intervals are {pct} percentile intervals of a stratified bootstrap ({lb.reps} resamples; runs "
        "resampled within each environment). 'no CI' means a single run.",
        "AUC is the area under the evaluation curve divided by its step range (the curve's average return).",
        "Normalized score = (score - random) / (reference - random). Aggregates pool the normalized scores "
        "of the environments with both constants; an algorithm missing some of them shows it in 'Tasks'.",
        "Probability of improvement P(X > Y): the chance that a run of X beats a run of Y on the same "
        "environment (ties count half), averaged over the environments both ran.",
    ]


def reused_note(collection: Collection) -> str:
    n = len(collection.reused)
    return f" {n} sweep job(s) reused an identical finished run instead of training." if n else ""


def to_markdown(lb: Leaderboard, collection: Collection) -> str:
    out = [
        "# rlarena leaderboard",
        "",
        f"{lb.n_runs} runs: {len(lb.algos)} algorithms x {len(lb.envs)} environments; "
        f"{len(collection.skipped)} skipped.{reused_note(collection)}",
        "",
    ]
    if lb.aggregate:
        out += [
            "## Across environments (normalized: random = 0, reference = 1)",
            "",
            _md_table(AGGREGATE_HEADER, aggregate_table_rows(lb)),
            "",
        ]
    if lb.unnormalized_envs:
        names = ", ".join(md_escape(e) for e in lb.unnormalized_envs)
        out += [f"Not in the aggregate (no random/reference score recorded): {names}.", ""]
    if lb.improvement:
        header, rows = improvement_matrix(lb)
        out += ["### Probability of improvement", "", _md_table(header, rows), ""]
    for env in lb.envs:
        out += [f"## {md_escape(env_title(lb, env))}", "", _md_table(ENV_HEADER, env_table_rows(lb, env)), ""]
    if collection.skipped:
        rows = [[md_escape(s.path), md_escape(s.reason)] for s in collection.skipped]
        out += [f"## Skipped ({len(collection.skipped)})", "", _md_table(["Path", "Reason"], rows), ""]
    if collection.warnings:
        out += ["## Warnings", "", *[f"- {md_escape(w)}" for w in collection.warnings], ""]
    out += ["## How to read this", "", *[f"- {line}" for line in methodology(lb)], ""]
    return "\n".join(out)


def _csv_cell(value: Any) -> Any:
    """Numbers as numbers (NaN/None empty); strings guarded against spreadsheet formula injection."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv(header: list[str], rows: Iterable[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_csv_cell(v) for v in row] for row in rows])
    return buf.getvalue()


def _ci_cells(e: stats.Estimate | None) -> list[float | None]:
    return [None, None, None] if e is None else [e.value, e.low, e.high]


def _run_row(run: Run, normalization: dict[str, tuple[float, float]]) -> list[Any]:
    normalized = (
        stats.normalize(run.final_return, *normalization[run.env]) if run.env in normalization else None
    )
    return [
        str(run.path),
        run.algo,
        run.env,
        run.seed,
        run.total_steps,
        run.final_return,
        None if normalized is None else float(normalized),
        run.auc,
        run.final_train_return,
        run.steps_per_sec,
        run.wall_time_s,
        run.config_hash,
    ]


def to_csv(lb: Leaderboard, collection: Collection) -> dict[str, str]:
    """File name -> CSV text: the tables in long, machine-friendly form."""
    env_header = [
        "env",
        "env_id",
        "algo",
        "rank",
        "n_seeds",
        "seeds",
        "total_steps",
        "mean",
        "std",
        "iqm",
        "iqm_low",
        "iqm_high",
        "normalized_iqm",
        "normalized_iqm_low",
        "normalized_iqm_high",
        "auc",
        "final_train_return",
        "steps_per_sec",
    ]
    env_rows = [
        [
            row.env,
            row.env_id,
            row.algo,
            rank,
            row.n_runs,
            " ".join(map(str, row.seeds)),
            " ".join(map(str, row.total_steps)),
            row.mean,
            row.std,
            *_ci_cells(row.iqm),
            *_ci_cells(row.normalized_iqm),
            row.auc,
            row.final_train_return,
            row.steps_per_sec,
        ]
        for env in lb.envs
        for rank, row in zip(ranks([r.iqm.value for r in lb.rows[env]]), lb.rows[env])
    ]
    metric_keys = [name.lower().replace(" ", "_") for name in stats.AGGREGATES]
    metric_cols = [f"{key}{suffix}" for key in metric_keys for suffix in ("", "_low", "_high")]
    aggregate_rows = [
        [row.algo, row.n_tasks, row.n_runs, *[v for m in stats.AGGREGATES for v in _ci_cells(row.metrics[m])]]
        for row in lb.aggregate
    ]
    runs_header = [
        "path",
        "algo",
        "env",
        "seed",
        "total_steps",
        "final_return",
        "normalized_return",
        "auc",
        "final_train_return",
        "steps_per_sec",
        "wall_time_s",
        "config_hash",
    ]
    return {
        "leaderboard.csv": _csv(env_header, env_rows),
        "aggregate.csv": _csv(["algo", "n_tasks", "n_runs", *metric_cols], aggregate_rows),
        "probability_of_improvement.csv": _csv(
            ["algo_x", "algo_y", "n_tasks", "p_x_better", "low", "high"],
            [[x, y, n, *_ci_cells(e)] for (x, y), (e, n) in lb.improvement.items()],
        ),
        "runs.csv": _csv(runs_header, [_run_row(r, lb.normalization) for r in collection.runs]),
        "skipped.csv": _csv(["path", "reason"], [[s.path, s.reason] for s in collection.skipped]),
    }


# ----------------------------------------------------------------------------------------------- CLI


def parse_reference(specs: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``--reference`` values: ``ENV=RANDOM,REFERENCE`` or a YAML/JSON file mapping
    ``env: {random_score: .., reference_score: ..}``. Later values win."""
    result: dict[str, tuple[float, float]] = {}
    for spec in specs:
        if "=" in spec and not Path(spec).exists():
            env, _, values = spec.partition("=")
            try:
                random_score, reference_score = (float(v) for v in values.split(","))
            except ValueError:
                raise ValueError(f"--reference {spec!r}: expected ENV=RANDOM,REFERENCE") from None
            result[env.strip()] = (random_score, reference_score)
            continue
        import yaml  # JSON is YAML too

        try:
            data = yaml.safe_load(Path(spec).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"--reference {spec!r}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"--reference {spec!r}: expected a mapping of env -> scores")
        for env, entry in data.items():
            try:
                result[str(env)] = (float(entry["random_score"]), float(entry["reference_score"]))
            except (TypeError, KeyError, ValueError):
                msg = f"--reference {spec!r}: {env!r} needs random_score and reference_score"
                raise ValueError(msg) from None
    for env, (random_score, reference_score) in result.items():
        if random_score == reference_score or not all(map(math.isfinite, (random_score, reference_score))):
            raise ValueError(f"--reference {env}: random and reference must be finite and different")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlarena leaderboard",
        description="Collect finished runs below PATHs and write Markdown, CSV and an HTML report.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="folders to search for run directories")
    parser.add_argument("--out", default="leaderboard", help="output folder (default: %(default)s)")
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="ENV=RANDOM,REF|FILE",
        help="override random/reference scores for normalization (repeatable)",
    )
    parser.add_argument("--reps", type=int, default=stats.DEFAULT_REPS, help="bootstrap resamples")
    parser.add_argument("--confidence", type=float, default=stats.DEFAULT_CONFIDENCE, help="CI level")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (results are deterministic)")
    parser.add_argument("--title", default="rlarena leaderboard", help="title of the HTML report")
    parser.add_argument("--no-html", action="store_true", help="skip the plots and the HTML report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def write_outputs(out: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        atomic_write_text(out / name, text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.reps < 100:
        print("error: --reps must be at least 100", file=sys.stderr)
        return 2
    if not 0 < args.confidence < 1:
        print("error: --confidence must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        reference = parse_reference(args.reference)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    collection = collect_runs(args.paths, progress=not args.no_progress)
    for skipped in collection.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    if not collection.runs:
        print(f"error: no finished runs found under {', '.join(args.paths)}", file=sys.stderr)
        return 1

    lb = build_leaderboard(
        collection, reps=args.reps, confidence=args.confidence, seed=args.seed, reference=reference
    )
    markdown = to_markdown(lb, collection)
    files = {"leaderboard.md": markdown, **to_csv(lb, collection)}
    if not args.no_html:
        from .report import render_html  # matplotlib is only needed for the report

        files["report.html"] = render_html(lb, collection, title=args.title)
    out = Path(args.out)
    write_outputs(out, files)

    print(markdown)
    for warning in collection.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {', '.join(sorted(files))} to {out}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
