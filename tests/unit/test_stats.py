"""The gate's statistics on constructed data, where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from pipeline.gitops.stats import (
    STUDENTIZED,
    paired_bootstrap,
    resample_indices,
)
from pipeline.stages.metrics import METRICS

REGRESSION = sorted(m.name for m in METRICS.values() if m.task == "regression" and m.resamplable)
CLASSIFICATION = sorted(m.name for m in METRICS.values()
                        if m.task == "classification" and m.resamplable)
SKLEARN = {  # scikit-learn's own implementations: what the vectorized ones must equal
    "rmse": lambda y, p: float(np.sqrt(skm.mean_squared_error(y, p))),
    "mae": skm.mean_absolute_error,
    "r2": skm.r2_score,
    "accuracy": skm.accuracy_score,
    "f1_macro": lambda y, p: skm.f1_score(y, p, average="macro", zero_division=0),
    "balanced_accuracy": skm.balanced_accuracy_score,
}


def test_every_resamplable_metric_is_checked_against_sklearn() -> None:
    assert set(SKLEARN) == set(REGRESSION + CLASSIFICATION)


def _regression(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(100, 20, n)
    good = y + rng.normal(0, 5, n)
    bad = y + rng.normal(0, 15, n)
    return y, good, bad


def _classification(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(np.array(["cat", "dog", "emu"]), n, p=[0.5, 0.3, 0.2])
    others = {label: [o for o in ("cat", "dog", "emu") if o != label] for label in set(y)}
    wrong = np.array([rng.choice(others[label]) for label in y])
    good = np.where(rng.random(n) < 0.92, y, wrong)
    bad = np.where(rng.random(n) < 0.55, y, wrong)
    return y, good, bad


@pytest.mark.parametrize("metric", REGRESSION + CLASSIFICATION)
def test_vectorized_metrics_equal_sklearn_on_each_resample(metric: str) -> None:
    y, good, _ = _regression() if metric in REGRESSION else _classification()
    point = SKLEARN[metric]
    idx = resample_indices(len(y), 5, seed=3)[0]
    resample = METRICS[metric].resample
    assert resample is not None
    batch = resample(y, good, idx)
    expected = [point(y[row], good[row]) for row in idx]
    np.testing.assert_allclose(batch, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("metric", REGRESSION + CLASSIFICATION)
def test_identical_predictions_give_a_zero_interval(metric: str) -> None:
    y, good, _ = _regression() if metric in REGRESSION else _classification()
    interval = paired_bootstrap(metric, y, good, good.copy(), resamples=1000,
                                confidence=0.95, seed=0)
    assert (interval.difference, interval.low, interval.high) == (0.0, 0.0, 0.0)
    # 0 never *clears* a min_improvement of 0: the gate's test is strict.
    for direction in (True, False):
        assert interval.improvement_bound(greater_is_better=direction) <= 0.0


@pytest.mark.parametrize("metric", REGRESSION + CLASSIFICATION)
def test_a_clear_improvement_has_its_whole_interval_on_the_better_side(metric: str) -> None:
    y, good, bad = _regression() if metric in REGRESSION else _classification()
    interval = paired_bootstrap(metric, y, good, bad, resamples=1000, confidence=0.95, seed=0)
    greater = metric not in {"rmse", "mae"}
    assert interval.low <= interval.difference <= interval.high
    assert interval.improvement_bound(greater_is_better=greater) > 0
    # and the other way round, the worse model is clearly worse
    reverse = paired_bootstrap(metric, y, bad, good, resamples=1000, confidence=0.95, seed=0)
    assert reverse.improvement_bound(greater_is_better=greater) < 0


def test_the_same_seed_gives_the_same_interval_and_another_seed_a_close_one() -> None:
    y, good, bad = _regression()
    first = paired_bootstrap("rmse", y, good, bad, resamples=2000, confidence=0.95, seed=7)
    again = paired_bootstrap("rmse", y, good, bad, resamples=2000, confidence=0.95, seed=7)
    other = paired_bootstrap("rmse", y, good, bad, resamples=2000, confidence=0.95, seed=8)
    assert first == again
    assert other != first
    assert abs(other.low - first.low) < 0.1 * abs(first.difference)


def test_blocks_cover_every_resample_whatever_the_size() -> None:
    blocks = resample_indices(50_000, 1_001, seed=0)
    assert sum(len(b) for b in blocks) == 1_001
    assert len(blocks) > 1  # large hold-out sets are bootstrapped in bounded blocks
    assert all(b.min() >= 0 and b.max() < 50_000 for b in blocks)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="no bootstrap"):
        paired_bootstrap("roc_auc", np.ones(3), np.ones(3), np.ones(3), resamples=1000,
                         confidence=0.95, seed=0)
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap("rmse", np.ones(3), np.ones(2), np.ones(3), resamples=1000,
                         confidence=0.95, seed=0)


# Coverage: draw many datasets from a population whose true difference is known and
# count how often the 95% interval contains it. With 400 datasets the Monte Carlo
# standard error of a 0.95 rate is sqrt(0.95 * 0.05 / 400) ~ 0.011; the percentile
# bootstrap also under-covers a little at n = 200. The window [0.91, 0.985] is about
# 3.5 standard errors below and 3 above nominal: wide enough for both effects, narrow
# enough to catch a broken interval (a one-sided or unpaired interval lands far out).
# The simulation is seeded, so the test is deterministic.
DATASETS, ROWS, RESAMPLES = 400, 200, 1000


def _mae_population(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z1, z2 = rng.normal(size=ROWS), rng.normal(size=ROWS)
    baseline_error = z1  # sigma 1
    candidate_error = 0.9 * (0.7 * z1 + np.sqrt(1 - 0.49) * z2)  # sigma 0.9, correlated
    y = rng.normal(50, 10, ROWS)
    return y, y + candidate_error, y + baseline_error


def _accuracy_population(rng: np.random.Generator
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, ROWS)
    u = rng.random(ROWS)
    baseline_right = u < 0.80
    candidate_right = (u < 0.78) | ((u >= 0.80) & (u < 0.87))  # 0.85, overlapping
    return y, np.where(candidate_right, y, 1 - y), np.where(baseline_right, y, 1 - y)


@pytest.mark.parametrize(("metric", "population", "true_difference"), [
    ("mae", _mae_population, np.sqrt(2 / np.pi) * (0.9 - 1.0)),
    ("accuracy", _accuracy_population, 0.85 - 0.80),
])
def test_the_interval_covers_the_true_difference_at_about_its_nominal_rate(
    metric: str, population: object, true_difference: float
) -> None:
    rng = np.random.default_rng(2026)
    covered = 0
    for i in range(DATASETS):
        y, candidate, baseline = population(rng)  # type: ignore[operator]
        interval = paired_bootstrap(metric, y, candidate, baseline, resamples=RESAMPLES,
                                    confidence=0.95, seed=i)
        covered += interval.low <= true_difference <= interval.high
    rate = covered / DATASETS
    assert 0.91 <= rate <= 0.985, f"coverage {rate:.3f}"


def _rmse_population(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A row scale shared by both models (log-normal, E[s^2] = 1: some rows are hard for
    both), correlated normal noise: true RMSE 1.0 for the baseline, 0.9 for the candidate."""
    scale = np.exp(0.5 * rng.standard_normal(ROWS) - 0.25)
    z1, z2 = rng.normal(size=ROWS), rng.normal(size=ROWS)
    y = rng.normal(50, 10, ROWS)
    return (y, y + scale * 0.9 * (0.7 * z1 + np.sqrt(1 - 0.49) * z2), y + scale * z1)


def test_the_studentized_interval_covers_the_true_rmse_difference() -> None:
    """Each resample divided by its own delta-method standard error: the interval covers
    the truth at about its nominal rate, and its upper end (the gate's) errs about 2.5%
    of the time."""
    rng = np.random.default_rng(2027)
    covered = above = 0
    for i in range(DATASETS):
        y, candidate, baseline = _rmse_population(rng)
        interval = paired_bootstrap("rmse", y, candidate, baseline, resamples=RESAMPLES,
                                    confidence=0.95, seed=i, method="studentized")
        assert interval.method == "studentized"
        covered += interval.low <= -0.1 <= interval.high
        above += interval.high < -0.1
    assert 0.91 <= covered / DATASETS <= 0.985, f"coverage {covered / DATASETS:.3f}"
    assert above / DATASETS <= 0.05, f"upper end below the truth {above / DATASETS:.3f}"


def test_the_studentized_interval_agrees_with_the_percentile_one_on_light_tails() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(100, 10, 3000)
    baseline = y + rng.normal(0, 5, 3000)
    candidate = y + 0.9 * (baseline - y) + rng.normal(0, 1, 3000)
    for metric in STUDENTIZED:
        truth = (y > 100).astype(int) if metric == "accuracy" else y
        c = (candidate > 100).astype(int) if metric == "accuracy" else candidate
        b = (baseline > 100).astype(int) if metric == "accuracy" else baseline
        runs = [paired_bootstrap(metric, truth, c, b, resamples=4000, confidence=0.95,
                                 seed=1, method=m) for m in ("percentile", "studentized")]
        width = runs[0].high - runs[0].low
        assert runs[1].difference == pytest.approx(runs[0].difference, rel=1e-9, abs=1e-12)
        assert runs[1].low == pytest.approx(runs[0].low, abs=0.1 * width)
        assert runs[1].high == pytest.approx(runs[0].high, abs=0.1 * width)


def test_the_studentized_interval_names_the_metrics_it_supports() -> None:
    with pytest.raises(ValueError, match="no studentized bootstrap for metric 'r2'"):
        paired_bootstrap("r2", np.ones(3), np.ones(3), np.ones(3), resamples=1000,
                         confidence=0.95, seed=0, method="studentized")
