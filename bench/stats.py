"""Statistics for leaderboards, following the rliable methodology (Agarwal et al., 2021).

Scores are organised per task (environment): ``per_task[m]`` holds one score per run (seed) on task ``m``.
Confidence intervals come from a *stratified* bootstrap: runs are resampled with replacement inside each
task, never across tasks, so every bootstrap sample keeps the task mix of the data. The resampling itself
is ``scipy.stats.bootstrap`` (percentile intervals); passing each task as a separate, unpaired sample is
exactly a stratified bootstrap. This module only adds the statistics and the bookkeeping around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps
from scipy.integrate import trapezoid

DEFAULT_REPS = 2000
DEFAULT_CONFIDENCE = 0.95
BATCH = 500  # resamples evaluated at once: bounds memory for statistics over all pairs of runs

# A statistic over tasks: gets one array per task, shaped (..., n_runs_m), and reduces the last axis
# (and the task list) to (...) or (..., k) for vector-valued statistics such as a performance profile.
TaskStatistic = Callable[[list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval; ``low``/``high`` are NaN when the data cannot say."""

    value: float
    low: float
    high: float

    @property
    def has_ci(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))


# ---------------------------------------------------------------------------------------------- basics


def iqm(x: ArrayLike, axis: int | None = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (scipy's 25% trimmed mean, as rliable uses)."""
    return np.asarray(sps.trim_mean(np.asarray(x, dtype=float), 0.25, axis=axis))


def optimality_gap(x: ArrayLike, axis: int | None = -1, gamma: float = 1.0) -> np.ndarray:
    """How far scores fall short of ``gamma`` (normalized): mean of max(gamma - x, 0). Lower is better."""
    return np.mean(np.maximum(gamma - np.asarray(x, dtype=float), 0.0), axis=axis)


def normalize(x: ArrayLike, random_score: float, reference_score: float) -> np.ndarray:
    """Map a random policy to 0 and the reference score to 1."""
    if not (np.isfinite(random_score) and np.isfinite(reference_score)):
        raise ValueError("random and reference scores must be finite")
    if reference_score == random_score:
        raise ValueError(f"reference score equals random score ({random_score}): cannot normalize")
    return (np.asarray(x, dtype=float) - random_score) / (reference_score - random_score)


def curve_auc(steps: ArrayLike, values: ArrayLike) -> float:
    """Area under a learning curve divided by its step range: the curve's average height.

    Being in return units, it compares runs of different lengths; a single point is its own average.
    """
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    if s.shape != v.shape or s.ndim != 1 or s.size == 0:
        raise ValueError("steps and values must be 1-D arrays of the same non-zero length")
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    span = s[-1] - s[0]
    if span <= 0:
        return float(np.mean(v))
    return float(trapezoid(v, s) / span)


# ---------------------------------------------------------------------------------- the bootstrap core


def stratified_bootstrap(
    per_task: Sequence[ArrayLike],
    statistic: TaskStatistic,
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimate and percentile CI of ``statistic`` under a stratified bootstrap over runs.

    A task with a single run resamples to itself, so it is passed through as a constant (scipy refuses
    one-observation samples). When *no* task has two runs there is no information about run-to-run
    variability at all, and the interval is NaN rather than a misleading zero-width one.
    """
    tasks = [np.asarray(t, dtype=float).ravel() for t in per_task]
    if not tasks or any(t.size == 0 for t in tasks):
        raise ValueError("every task needs at least one score")
    if not all(np.all(np.isfinite(t)) for t in tasks):
        raise ValueError("scores must be finite")
    point = np.asarray(statistic(tasks), dtype=float)
    varying = {i for i, t in enumerate(tasks) if t.size >= 2}
    if not varying:
        nan = np.full_like(point, np.nan)
        return point, nan, nan
    vector = point.ndim > 0

    def resampled_statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        # scipy passes (batch, n_i) resamples (or the original (n_i,) data) with the runs on the last axis.
        batch = samples[0].shape[:-1]
        it = iter(samples)
        full = [
            next(it) if i in varying else np.broadcast_to(t, (*batch, t.size)) for i, t in enumerate(tasks)
        ]
        out = np.asarray(statistic(full), dtype=float)
        # scipy wants a vector statistic's own axis in front of the resample axis.
        return np.moveaxis(out, -1, 0) if vector else out

    result = sps.bootstrap(
        [tasks[i] for i in sorted(varying)],
        resampled_statistic,
        n_resamples=reps,
        confidence_level=confidence,
        method="percentile",
        paired=False,
        vectorized=True,
        axis=-1,
        batch=BATCH,
        rng=np.random.default_rng(seed),
    )
    low = np.asarray(result.confidence_interval.low, dtype=float)
    high = np.asarray(result.confidence_interval.high, dtype=float)
    return point, low, high


def _estimate(point: np.ndarray, low: np.ndarray, high: np.ndarray) -> Estimate:
    return Estimate(float(point), float(low), float(high))


# ------------------------------------------------------------------------------ statistics over runs


def _pooled(reduce: Callable[..., np.ndarray]) -> TaskStatistic:
    """Pool all runs of all tasks (rliable flattens the runs x tasks matrix) and reduce them."""

    def statistic(tasks: list[np.ndarray]) -> np.ndarray:
        return reduce(np.concatenate(tasks, axis=-1), axis=-1)

    return statistic


def _median_of_task_means(tasks: list[np.ndarray]) -> np.ndarray:
    """rliable's median: the median over tasks of each task's mean score (not the median of all runs)."""
    return np.median(np.stack([t.mean(axis=-1) for t in tasks], axis=0), axis=0)


# Across-task aggregates as rliable (Agarwal et al. 2021) defines them: IQM, mean and optimality gap over
# all runs of all tasks, the median over the tasks' mean scores.
AGGREGATES: dict[str, TaskStatistic] = {
    "IQM": _pooled(iqm),
    "Median": _median_of_task_means,
    "Mean": _pooled(np.mean),
    "Optimality gap": _pooled(optimality_gap),
}


def iqm_ci(scores: ArrayLike, **bootstrap_kw) -> Estimate:
    """IQM over the seeds of one task with its bootstrap CI (one stratum: a plain bootstrap)."""
    return _estimate(*stratified_bootstrap([scores], _pooled(iqm), **bootstrap_kw))


def aggregate_ci(per_task: Sequence[ArrayLike], metric: str = "IQM", **bootstrap_kw) -> Estimate:
    """An aggregate (see ``AGGREGATES``) of normalized scores across tasks with a stratified-bootstrap CI."""
    return _estimate(*stratified_bootstrap(per_task, AGGREGATES[metric], **bootstrap_kw))


def performance_profile(
    per_task: Sequence[ArrayLike], taus: ArrayLike, **bootstrap_kw
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run-score distribution: for each threshold tau, the fraction of runs scoring above tau.

    The fraction is taken per task and then averaged over tasks, so a task with more seeds does not weigh
    more. Returns (profile, low, high), each shaped like ``taus``.
    """
    tau = np.asarray(taus, dtype=float).ravel()

    def statistic(tasks: list[np.ndarray]) -> np.ndarray:
        fractions = [np.mean(t[..., :, None] > tau, axis=-2) for t in tasks]
        return np.mean(np.stack(fractions, axis=0), axis=0)

    return stratified_bootstrap(per_task, statistic, **bootstrap_kw)


def _prob_greater(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + 0.5 P(X = Y) over all pairs of runs: the Mann-Whitney U statistic over n*m."""
    gt = x[..., :, None] > y[..., None, :]
    eq = x[..., :, None] == y[..., None, :]
    return np.mean(gt + 0.5 * eq, axis=(-2, -1))


def probability_of_improvement(
    x_per_task: Sequence[ArrayLike], y_per_task: Sequence[ArrayLike], **bootstrap_kw
) -> Estimate:
    """P(X > Y): the chance that a run of X beats a run of Y on a random task, averaged over tasks.

    ``x_per_task[m]`` and ``y_per_task[m]`` must be the same task. Runs of X and of Y are resampled
    independently inside each task.
    """
    if len(x_per_task) != len(y_per_task) or not x_per_task:
        raise ValueError("X and Y need scores on the same, non-empty list of tasks")
    n = len(x_per_task)

    def statistic(tasks: list[np.ndarray]) -> np.ndarray:
        return np.mean([_prob_greater(tasks[m], tasks[n + m]) for m in range(n)], axis=0)

    return _estimate(*stratified_bootstrap([*x_per_task, *y_per_task], statistic, **bootstrap_kw))


def mean_ci_over_runs(
    curves: ArrayLike,
    *,
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean learning curve over runs (rows) with a pointwise bootstrap CI; NaN band for a single run."""
    data = np.asarray(curves, dtype=float)
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError("curves must be a (runs, points) array with at least one run")
    mean = data.mean(axis=0)
    if data.shape[0] < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    result = sps.bootstrap(
        (data,),
        np.mean,
        n_resamples=reps,
        confidence_level=confidence,
        method="percentile",
        axis=0,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return mean, np.asarray(result.confidence_interval.low), np.asarray(result.confidence_interval.high)
