"""The leaderboard as numbers: per-environment and across-environment statistics of collected runs.

Pure computation over a ``Collection`` (read by ``results.collect_runs``); writing it out is ``tables.py``
(Markdown, CSV) and ``report.py`` (HTML), the command is ``leaderboard_cli.py``.

Per environment each algorithm gets the mean and IQM (with a bootstrap CI over seeds) of its final
evaluation return, the area under its learning curve, the last training return and its throughput. Across
environments, scores are normalized (random policy -> 0, reference -> 1) and compared with the rliable
tools in ``stats.py``: aggregate IQM / median / mean / optimality gap, performance profiles and the
probability of improvement.

Seeds are grouped by variant (``Run.variant``): the algorithm, and for reward-from-preferences runs also the
inner algorithm and the label budget. When preference runs are present, the labels view sets each budget's
return beside the inner algorithm trained on the true reward (``LabelsRow``).

Each row names its implementation (``Run.implementation``: rlarena's own code or a peer library's). An
algorithm whose registered class names a ``counterpart`` (a peer plugin, e.g. ``sb3_ppo`` -> ``ppo``) is
paired with it: per task both ran and across those tasks, P(rlarena's implementation > the peer's)
(``VersusRow``). The pairs come from the registry, so no plugin is named here.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import stats
from .results import DEFAULT_IMPLEMENTATION, PREFERENCE_ALGO, Collection, Run, variant_name

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
    ood_score: float | None = None  # text: mean over the seeds that report it (generalization split)
    implementation: str = DEFAULT_IMPLEMENTATION  # whose code ran (several, comma-separated, if mixed)

    @property
    def n_runs(self) -> int:
        return len(self.seeds)


@dataclass
class LabelsRow:
    """A row of the return-vs-preference-labels view: the preference runs with inner algorithm ``inner`` and
    ``labels`` preference labels on ``env``, or, when ``labels`` is None, runs of ``inner`` itself trained on
    the true reward (the reference a label budget should approach)."""

    env: str
    inner: str
    labels: int | None
    algo: str  # the same runs' row name in the per-environment table
    seeds: list[int]
    total_steps: list[int]
    mean: stats.Estimate  # mean final return over seeds, with its bootstrap CI
    std: float
    iqm: stats.Estimate

    @property
    def n_runs(self) -> int:
        return len(self.seeds)

    @property
    def true_reward(self) -> bool:
        return self.labels is None


@dataclass
class VersusRow:
    """P(a run of rlarena's ``algo`` beats a run of ``peer``, another library's implementation of the same
    algorithm) on ``env``, or across the ``n_tasks`` tasks both ran when ``env`` is None."""

    algo: str  # rlarena's algorithm: the peer's registered counterpart
    peer: str
    algo_implementation: str
    peer_implementation: str
    peer_version: str  # the version(s) its runs recorded; "" if none did
    env: str | None
    n_tasks: int
    algo_runs: int
    peer_runs: int
    p: stats.Estimate  # P(algo > peer), ties counted half, with its stratified-bootstrap CI

    @property
    def across(self) -> bool:
        return self.env is None


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
    labels: dict[str, list[LabelsRow]]  # env -> labels view; only envs with preference runs, {} if none
    versus: list[VersusRow]  # rlarena's implementation against each peer's; [] without pairs
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


def _variant_order(runs: list[Run]) -> list[str]:
    """Variant names sorted by algorithm, inner algorithm and label budget: 300 labels before 1400."""
    keys = {r.variant: (r.algo, r.inner or "", r.total_labels or 0) for r in runs}
    return sorted(keys, key=lambda name: (keys[name], name))


def _labels_row(
    env: str, name: str, inner: str, labels: int | None, group: list[Run], row: EnvRow, **boot: Any
) -> LabelsRow:
    """The per-env row ``row`` of the runs ``group`` (variant ``name``) as a labels-view row."""
    scores = [r.final_return for r in group]
    return LabelsRow(
        env=env,
        inner=inner,
        labels=labels,
        algo=name,
        seeds=row.seeds,
        total_steps=row.total_steps,
        mean=stats.aggregate_ci([scores], "Mean", **boot),  # one task: a plain bootstrap over seeds
        std=row.std,
        iqm=row.iqm,
    )


def _labels_view(
    by_group: dict[str, dict[str, list[Run]]],
    rows: dict[str, list[EnvRow]],
    warnings: list[str],
    **boot: Any,
) -> dict[str, list[LabelsRow]]:
    """Per env with preference runs: one row per (inner algorithm, label budget), budgets ascending, then
    the inner algorithm on the true reward if it ran there. Reuses the per-env rows; only the mean's CI is
    new (the per-env table shows mean ± std)."""
    view: dict[str, list[LabelsRow]] = {}
    unplaced = 0
    for env in sorted(by_group):
        preference = [r for group in by_group[env].values() for r in group if r.algo == PREFERENCE_ALGO]
        placed = [r for r in preference if r.inner is not None and r.total_labels is not None]
        unplaced += len(preference) - len(placed)
        if not placed:
            continue
        by_name = {row.algo: row for row in rows[env]}
        view[env] = []
        for inner in sorted({r.inner for r in placed}):
            block: list[LabelsRow] = []
            for n in sorted({r.total_labels for r in placed if r.inner == inner}):
                name = variant_name(PREFERENCE_ALGO, inner, n)
                block.append(_labels_row(env, name, inner, n, by_group[env][name], by_name[name], **boot))
            if inner in by_name:  # plain runs of the inner algorithm: the true-reward reference
                reference = _labels_row(env, inner, inner, None, by_group[env][inner], by_name[inner], **boot)
                steps = sorted({s for row in block for s in row.total_steps})
                if steps and reference.total_steps and steps != reference.total_steps:
                    # Returns after different step budgets are not comparable: say so rather than hide it.
                    warnings.append(
                        f"{env}: the labels view compares {PREFERENCE_ALGO}-{inner} runs of "
                        f"{', '.join(map(str, steps))} steps with {inner} (true reward) runs of "
                        f"{', '.join(map(str, reference.total_steps))} steps"
                    )
                block.append(reference)
            view[env] += block
    if unplaced:
        warnings.append(
            f"{unplaced} {PREFERENCE_ALGO} run(s) without algo.inner or algo.total_labels in config.yaml: "
            "left out of the labels view"
        )
    return view


def _implementations(group: list[Run]) -> str:
    return ", ".join(sorted({r.implementation for r in group}))


def registered_counterparts(algos: Iterable[str]) -> dict[str, str]:
    """Algorithm -> the rlarena algorithm it is another implementation of, as its registered class says
    (``Algorithm.counterpart``). A name nobody registered here (a plugin not installed) has none."""
    from rlarena.registry import ALGORITHMS

    found: dict[str, str] = {}
    for algo in sorted(set(algos)):
        counterpart = getattr(ALGORITHMS.get(algo), "counterpart", None) if algo in ALGORITHMS else None
        if isinstance(counterpart, str) and counterpart and counterpart != algo:
            found[algo] = counterpart
    return found


def _versus_row(
    pair: dict[str, str], env: str | None, n_tasks: int, ours: list[Run], theirs: list[Run], p: stats.Estimate
) -> VersusRow:
    return VersusRow(
        **pair,
        algo_implementation=_implementations(ours),
        peer_implementation=_implementations(theirs),
        env=env,
        n_tasks=n_tasks,
        algo_runs=len(ours),
        peer_runs=len(theirs),
        p=p,
    )


def _versus_rows(
    by_group: dict[str, dict[str, list[Run]]],
    envs: list[str],
    counterparts: Mapping[str, str],
    improvement: dict[tuple[str, str], tuple[stats.Estimate, int]],
    **boot: Any,
) -> list[VersusRow]:
    """Each peer against its counterpart: one row per task both have runs on, then (with two tasks or more)
    the row across them, which is the probability-of-improvement entry of the pair."""
    rows: list[VersusRow] = []
    for peer, algo in sorted(counterparts.items(), key=lambda item: (item[1], item[0])):
        shared = [env for env in envs if by_group[env].get(algo) and by_group[env].get(peer)]
        if not shared:
            continue
        algo_runs = [r for env in shared for r in by_group[env][algo]]
        peer_runs = [r for env in shared for r in by_group[env][peer]]
        versions = sorted({r.implementation_version for r in peer_runs if r.implementation_version})
        pair = dict(algo=algo, peer=peer, peer_version=", ".join(versions))
        for env in shared:
            ours, theirs = by_group[env][algo], by_group[env][peer]
            p = stats.probability_of_improvement(
                [[r.final_return for r in ours]], [[r.final_return for r in theirs]], **boot
            )
            rows.append(_versus_row(pair, env, 1, ours, theirs, p))
        if len(shared) > 1:  # one task: the across row would repeat it
            estimate, n_tasks = improvement[(algo, peer)]
            rows.append(_versus_row(pair, None, n_tasks, algo_runs, peer_runs, estimate))
    return rows


def build_leaderboard(
    collection: Collection,
    *,
    reps: int = stats.DEFAULT_REPS,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    seed: int = 0,
    reference: dict[str, tuple[float, float]] | None = None,
    counterparts: Mapping[str, str] | None = None,
) -> Leaderboard:
    """All tables and curves of the report. Deterministic for a given ``seed``. ``counterparts``: peer
    algorithm -> rlarena's algorithm it implements; by default what the registry's classes say."""
    boot = dict(reps=reps, confidence=confidence, seed=seed)
    runs = collection.runs
    envs = sorted({r.env for r in runs})
    algos = _variant_order(runs)  # the leaderboard's "algorithms" are variants (see Run.variant)
    normalization = _resolve_normalization(runs, reference or {}, collection.warnings)

    def norm(env: str, x: Any) -> np.ndarray:
        return stats.normalize(x, *normalization[env])

    by_group: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        by_group[run.env][run.variant].append(run)

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
                    ood_score=_optional_mean(r.ood_score for r in group),
                    implementation=_implementations(group),
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

    labels = _labels_view(by_group, rows, collection.warnings, **boot)
    if counterparts is None:
        counterparts = registered_counterparts(r.algo for r in runs)
    # Only plain variants pair: a peer's runs under its own name against rlarena's under the counterpart's.
    plain = {r.variant for r in runs if r.variant == r.algo}
    pairs = {peer: algo for peer, algo in counterparts.items() if peer in plain and algo in plain}
    versus = _versus_rows(by_group, envs, pairs, improvement, **boot)

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
        labels=labels,
        versus=versus,
        reps=reps,
        confidence=confidence,
        n_runs=len(runs),
    )
