"""The leaderboard as numbers: per-environment and across-environment statistics of collected runs.

Pure computation over a ``Collection`` (read by ``results.collect_runs``); writing it out is ``tables.py``
(Markdown, CSV) and ``report.py`` (HTML), the command is ``leaderboard_cli.py``.

Per environment each algorithm gets the mean and IQM (with a bootstrap CI over seeds) of its final
evaluation return, the area under its learning curve, the last training return and its throughput. Across
environments, scores are normalized (random policy -> 0, reference -> 1) and compared with the rliable
tools in ``stats.py``: aggregate IQM / median / mean / optimality gap, performance profiles and the
probability of improvement.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import stats
from .results import Collection, Run

CURVE_POINTS = 101  # resolution of the common grid when runs evaluated at different steps


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
    best_eval: float  # mean over seeds of each run's best evaluation
    train_last100: float | None  # mean over seeds of each run's last-100-episode training return
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
                    best_eval=float(np.mean([r.best_eval_return for r in group])),
                    train_last100=_optional_mean(r.train_return_last100 for r in group),
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
