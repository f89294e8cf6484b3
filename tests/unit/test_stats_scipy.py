"""The gate's paired bootstrap agrees with scipy's independent implementation.

`scipy.stats.bootstrap(paired=True, method="percentile")` resamples the same rows for
every argument, as the gate does, with its own random stream; both are Monte Carlo, so
the intervals agree within a tolerance: each end within 5% of the interval's width
(with 10,000 resamples each, the ends' Monte Carlo error is about 1% of the width).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from pipeline.gitops.stats import paired_bootstrap

RESAMPLES = 10_000
TOLERANCE = 0.05


def _skewed_pair(n: int = 800, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heavy-tailed, correlated errors: the case where percentile intervals are tested."""
    rng = np.random.default_rng(seed)
    y = rng.lognormal(8, 1, n)
    shared = rng.standard_t(3, n) * y * 0.1
    baseline = y + shared + rng.standard_t(3, n) * 40
    candidate = y + 0.95 * shared + rng.standard_t(3, n) * 40
    return y, candidate, baseline


def _rmse(y: np.ndarray, p: np.ndarray, axis: int) -> np.ndarray:
    return np.asarray(np.sqrt(np.mean((y - p) ** 2, axis=axis)))


def _mae(y: np.ndarray, p: np.ndarray, axis: int) -> np.ndarray:
    return np.asarray(np.mean(np.abs(y - p), axis=axis))


def _r2(y: np.ndarray, p: np.ndarray, axis: int) -> np.ndarray:
    sse = np.sum((y - p) ** 2, axis=axis)
    sst = np.sum((y - np.mean(y, axis=axis, keepdims=True)) ** 2, axis=axis)
    return np.asarray(1.0 - sse / sst)


# Written here from the definitions, independently of pipeline.gitops.stats.
VECTORIZED = {"rmse": _rmse, "mae": _mae, "r2": _r2}


@pytest.mark.parametrize("metric", sorted(VECTORIZED))
def test_paired_bootstrap_matches_scipy_percentile(metric: str) -> None:
    y, candidate, baseline = _skewed_pair()
    point = VECTORIZED[metric]
    ours = paired_bootstrap(metric, y, candidate, baseline, resamples=RESAMPLES,
                            confidence=0.95, seed=0)

    def difference(y_: np.ndarray, c_: np.ndarray, b_: np.ndarray,
                   axis: int = -1) -> np.ndarray:
        return point(y_, c_, axis) - point(y_, b_, axis)

    theirs = sps.bootstrap((y, candidate, baseline), difference, paired=True,
                           vectorized=True, n_resamples=RESAMPLES, confidence_level=0.95,
                           method="percentile", rng=np.random.default_rng(1))
    low, high = theirs.confidence_interval
    width = high - low
    assert width > 0
    assert abs(ours.low - low) <= TOLERANCE * width, (ours, low, high)
    assert abs(ours.high - high) <= TOLERANCE * width, (ours, low, high)
    assert ours.low < ours.difference < ours.high
    assert ours.difference == pytest.approx(float(difference(y, candidate, baseline)))
