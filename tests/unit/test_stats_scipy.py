"""The gate's paired bootstrap agrees with scipy's independent implementation.

`scipy.stats.bootstrap(paired=True)` resamples the same rows for every argument, as the
gate does, with its own random stream; both are Monte Carlo, so the intervals agree
within a tolerance: each end within 5% of the interval's width (with 10,000 resamples
each, the ends' Monte Carlo error is about 1% of the width). Both of the card's
methods are checked: `percentile` and `bca` (scipy's `BCa`, its own jackknife). BCa
moves the ends deeper into the tail of these skewed differences (the low end of RMSE's
to the 0.06% level, six resamples in 10,000), where the Monte Carlo error is larger:
over four seeds each,
both implementations' low ends spread over 8.6% of the width, so BCa is held to 10%.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from pipeline.gitops.stats import Method, jackknife_difference, paired_bootstrap
from pipeline.stages.metrics import METRICS

RESAMPLABLE = sorted(name for name, m in METRICS.items() if m.resamplable)

RESAMPLES = 10_000
TOLERANCE = {"percentile": 0.05, "bca": 0.10}


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


SCIPY_METHOD = {"percentile": "percentile", "bca": "BCa"}


@pytest.mark.parametrize("method", sorted(SCIPY_METHOD))
@pytest.mark.parametrize("metric", sorted(VECTORIZED))
def test_paired_bootstrap_matches_scipy(metric: str, method: Method) -> None:
    y, candidate, baseline = _skewed_pair()
    point = VECTORIZED[metric]
    ours = paired_bootstrap(metric, y, candidate, baseline, resamples=RESAMPLES,
                            confidence=0.95, seed=0, method=method)

    def difference(y_: np.ndarray, c_: np.ndarray, b_: np.ndarray,
                   axis: int = -1) -> np.ndarray:
        return point(y_, c_, axis) - point(y_, b_, axis)

    theirs = sps.bootstrap((y, candidate, baseline), difference, paired=True,
                           vectorized=True, n_resamples=RESAMPLES, confidence_level=0.95,
                           method=SCIPY_METHOD[method], rng=np.random.default_rng(1))
    low, high = theirs.confidence_interval
    width = high - low
    assert width > 0
    assert abs(ours.low - low) <= TOLERANCE[method] * width, (ours, low, high)
    assert abs(ours.high - high) <= TOLERANCE[method] * width, (ours, low, high)
    assert ours.low < ours.difference < ours.high
    assert ours.difference == pytest.approx(float(difference(y, candidate, baseline)))


@pytest.mark.parametrize("metric", RESAMPLABLE)
def test_the_jackknife_leaves_out_each_row_once(metric: str) -> None:
    """The closed forms (rmse, mae, r2, accuracy) and the leave-one-out resamples
    (f1_macro, balanced_accuracy) equal the metric recomputed without each row."""
    rng = np.random.default_rng(3)
    n = 60
    if METRICS[metric].task == "regression":
        y, candidate, baseline = (a[:n] for a in _skewed_pair(n=n))
    else:
        y, candidate, baseline = (rng.integers(0, 3, n) for _ in range(3))
    def fn(y: np.ndarray, p: np.ndarray) -> float:
        value = METRICS[metric].value(y, p)
        assert value is not None
        return value

    expected = [fn(np.delete(y, i), np.delete(candidate, i))
                - fn(np.delete(y, i), np.delete(baseline, i)) for i in range(n)]
    np.testing.assert_allclose(jackknife_difference(metric, y, candidate, baseline), expected,
                               rtol=1e-9, atol=1e-12)
