"""Leaderboard statistics against scipy and hand computations on fixed data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from rlarena.bench import stats

REPS = 1000  # enough for stable intervals, fast enough for a unit test


def test_iqm_is_the_25_percent_trimmed_mean():
    x = [8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0]
    assert stats.iqm(x) == pytest.approx(4.5)  # mean of the middle four: 3, 4, 5, 6
    assert stats.iqm(x) == pytest.approx(sps.trim_mean(x, 0.25))
    assert stats.iqm([1.0, 2.0, 30.0]) == pytest.approx(11.0)  # too few to trim: the mean
    assert stats.iqm(np.array([[1.0, 2, 3, 100], [4, 5, 6, 7]])).tolist() == pytest.approx([2.5, 5.5])


def test_normalize_and_optimality_gap():
    assert stats.normalize([10.0, 110.0, 60.0], 10.0, 110.0).tolist() == pytest.approx([0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="cannot normalize"):
        stats.normalize(1.0, 5.0, 5.0)
    assert stats.optimality_gap([0.5, 1.2, 0.0]) == pytest.approx((0.5 + 0 + 1.0) / 3)


def test_curve_auc_is_the_average_height():
    assert stats.curve_auc([0, 10, 20], [0.0, 10.0, 10.0]) == pytest.approx(7.5)  # (50 + 100) / 20
    assert stats.curve_auc([20, 0, 10], [10.0, 0.0, 10.0]) == pytest.approx(7.5)  # order does not matter
    assert stats.curve_auc([5], [3.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        stats.curve_auc([], [])


def test_single_task_ci_matches_scipy_bootstrap_with_the_same_seed():
    x = np.array([120.0, 95.0, 310.0, 150.0, 80.0, 200.0, 175.0])
    got = stats.iqm_ci(x, reps=REPS, seed=7)
    ref = sps.bootstrap(
        (x,),
        lambda a, axis: sps.trim_mean(a, 0.25, axis=axis),
        n_resamples=REPS,
        method="percentile",
        rng=np.random.default_rng(7),
    ).confidence_interval
    assert got.value == pytest.approx(sps.trim_mean(x, 0.25))
    assert (got.low, got.high) == pytest.approx((ref.low, ref.high))
    assert got.low <= got.value <= got.high
    assert stats.iqm_ci(x, reps=REPS, seed=7) == got  # deterministic for a seed


def test_stratified_bootstrap_never_mixes_tasks():
    # Within each task the runs agree, so resampling inside tasks cannot move the pooled mean; an
    # unstratified bootstrap over all six runs would.
    e = stats.aggregate_ci([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], "Mean", reps=REPS)
    assert (e.value, e.low, e.high) == pytest.approx((0.5, 0.5, 0.5))


def test_stratified_bootstrap_with_single_run_tasks():
    # The one-run task resamples to itself; the other gives (1, 1), (1, 3) or (3, 3), so the pooled mean
    # is 2/3, 4/3 or 2 with probabilities 1/4, 1/2, 1/4: the 95% interval spans [2/3, 2].
    e = stats.aggregate_ci([[0.0], [1.0, 3.0]], "Mean", reps=REPS)
    assert e.value == pytest.approx(4.0 / 3)
    assert (e.low, e.high) == pytest.approx((2.0 / 3, 2.0))
    # No task with two runs: no information on run-to-run variability, so no interval at all.
    none = stats.aggregate_ci([[0.2], [0.4]], "IQM", reps=REPS)
    assert none.value == pytest.approx(0.3) and not none.has_ci


def test_the_median_is_rliables_median_of_task_means_not_of_all_runs():
    # By hand: task means 1, 2 and 10 -> median 2; the median of all nine runs would be 1.5.
    tasks = [[0.0, 1.5, 1.5], [1.5, 1.5, 3.0], [10.0, 10.0, 10.0]]
    assert np.median(np.concatenate(tasks)) == 1.5
    assert stats.aggregate_ci(tasks, "Median", reps=REPS).value == pytest.approx(2.0)


@pytest.mark.parametrize("metric", list(stats.AGGREGATES))
def test_aggregate_intervals_contain_their_estimate(metric):
    rng = np.random.default_rng(0)
    tasks = [rng.normal(loc=m, scale=0.2, size=5) for m in (0.2, 0.5, 0.9)]
    e = stats.aggregate_ci(tasks, metric, reps=REPS)
    pooled = np.concatenate(tasks)
    median_of_means = np.median([t.mean() for t in tasks])  # rliable's aggregate_median
    expected = {"IQM": sps.trim_mean(pooled, 0.25), "Median": median_of_means, "Mean": pooled.mean()}
    expected["Optimality gap"] = np.mean(np.maximum(1 - pooled, 0))
    assert e.value == pytest.approx(expected[metric])
    assert e.low <= e.value <= e.high and e.low < e.high


def test_probability_of_improvement_by_hand_and_against_mann_whitney():
    x, y = [1.0, 2.0, 3.0], [2.0, 2.0]
    # pairs: (1,2)x2 -> 0, (2,2)x2 -> 1/2 each, (3,2)x2 -> 1: (0 + 0 + .5 + .5 + 1 + 1) / 6 = 0.5
    assert stats.probability_of_improvement([x], [y], reps=REPS).value == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 6), rng.normal(0.0, 1.0, 5)
    u = sps.mannwhitneyu(a, b).statistic
    assert stats.probability_of_improvement([a], [b], reps=REPS).value == pytest.approx(u / (6 * 5))
    # averaged over tasks; and P(X > Y) + P(Y > X) = 1
    xs, ys = [[1.0, 2.0], [5.0, 6.0]], [[0.0, 0.5], [5.5, 7.0]]
    p_xy = stats.probability_of_improvement(xs, ys, reps=REPS)
    assert p_xy.value == pytest.approx((1.0 + 0.25) / 2)
    assert stats.probability_of_improvement(ys, xs, reps=REPS).value == pytest.approx(1 - p_xy.value)
    assert p_xy.low <= p_xy.value <= p_xy.high
    with pytest.raises(ValueError):
        stats.probability_of_improvement(xs, ys[:1])


def test_performance_profile_averages_fractions_over_tasks():
    taus = [0.5, 1.5, 5.5]
    profile, low, high = stats.performance_profile([[0.0, 1.0, 2.0], [5.0, 6.0]], taus, reps=REPS)
    # tau=0.5: 2/3 and 2/2 -> 5/6; tau=1.5: 1/3 and 1 -> 2/3; tau=5.5: 0 and 1/2 -> 1/4
    assert profile.tolist() == pytest.approx([5 / 6, 2 / 3, 1 / 4])
    assert low.shape == high.shape == (3,)
    assert np.all(low <= profile) and np.all(profile <= high)


def test_mean_ci_over_runs_matches_scipy_and_handles_one_run():
    curves = np.array([[0.0, 1.0, 4.0], [1.0, 3.0, 5.0], [2.0, 2.0, 9.0]])
    mean, low, high = stats.mean_ci_over_runs(curves, reps=REPS, seed=3)
    ref = sps.bootstrap(
        (curves,), np.mean, axis=0, n_resamples=REPS, method="percentile", rng=np.random.default_rng(3)
    ).confidence_interval
    assert mean.tolist() == pytest.approx([1.0, 2.0, 6.0])
    assert low.tolist() == pytest.approx(ref.low.tolist())
    assert high.tolist() == pytest.approx(ref.high.tolist())
    one_mean, one_low, _ = stats.mean_ci_over_runs(curves[:1])
    assert one_mean.tolist() == [0.0, 1.0, 4.0] and np.isnan(one_low).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        stats.aggregate_ci([], "IQM")
    with pytest.raises(ValueError):
        stats.aggregate_ci([[1.0, float("nan")]], "IQM")
