"""Paired bootstrap of a metric difference: is the candidate better by more than noise?

Both models are scored on the same sealed test rows, so each resample draws the same
rows for both and the difference `metric(candidate) - metric(production)` keeps the
pairing (most of the per-row noise cancels). Resampling is vectorized with numpy:
the row indices of a block of resamples form one integer matrix, and each metric is
computed for every resample at once from per-row quantities (squared errors, hits,
per-class counts). Blocks keep memory bounded on large hold-out sets.

The gate's interval is the two-sided percentile interval at the card's confidence
level; the gate's decision uses the end of the interval on the side of "worse", which
is a one-sided test at level (1 - confidence) / 2: conservative by design. Two other
intervals are here for the simulation harness, which measured neither better for the
gate (docs/gate.md, "Which interval"), so the card offers neither: the bias-corrected
and accelerated interval (`method="bca"`, the acceleration from the jackknife of the
difference) and the studentized one (`method="studentized"`, bootstrap-t with each
resample's delta-method standard error, for RMSE, MAE and accuracy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from pipeline.stages.metrics import METRICS, Resampled

# Resamples computed per block: bounds memory at about BLOCK x rows x 8 bytes.
_BLOCK_CELLS = 4_000_000

BatchMetric = Resampled
"""(y_true, y_pred, indices[resamples, rows]) -> metric value per resample."""

Method = Literal["percentile", "bca", "studentized"]
METHODS: tuple[Method, ...] = ("percentile", "bca", "studentized")


@dataclass(frozen=True)
class Interval:
    """The observed difference (candidate - baseline) and its bootstrap interval."""

    metric: str
    difference: float
    low: float
    high: float
    confidence: float
    resamples: int
    method: Method = "percentile"

    def improvement_bound(self, *, greater_is_better: bool) -> float:
        """The pessimistic end of the interval, as an improvement (positive = better)."""
        return self.low if greater_is_better else -self.high


def _gather(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    gathered: np.ndarray = values[indices]
    return gathered


def _floats(values: object) -> np.ndarray:
    return np.asarray(values, dtype=float)


def _resampled(metric: str) -> BatchMetric:
    """The metric's vectorized form (`pipeline.stages.metrics`), or ValueError."""
    found = METRICS.get(metric)
    if found is None or found.resample is None:
        raise ValueError(f"no bootstrap for metric {metric!r}")
    return found.resample


def supports(metric: str) -> bool:
    """The gate can bootstrap this metric's paired difference."""
    found = METRICS.get(metric)
    return found is not None and found.resamplable


def resample_indices(rows: int, resamples: int, *, seed: int) -> list[np.ndarray]:
    """The row indices of every resample, in blocks; the same seed gives the same rows."""
    rng = np.random.default_rng(seed)
    per_block = max(1, _BLOCK_CELLS // max(rows, 1))
    blocks = []
    done = 0
    while done < resamples:
        size = min(per_block, resamples - done)
        blocks.append(rng.integers(0, rows, size=(size, rows), dtype=np.int64))
        done += size
    return blocks


def bootstrap(metric: str, y_true: np.ndarray, prediction: np.ndarray, *, resamples: int,
              confidence: float, seed: int) -> tuple[float, float, float]:
    """(value, low, high): one model's metric on these rows and its percentile interval
    (the live metric `mlops monitor` reports beside the gate's)."""
    fn = _resampled(metric)
    y, p = np.asarray(y_true), np.asarray(prediction)
    if len(y) != len(p) or len(y) == 0:
        raise ValueError("y_true and the predictions must be non-empty and of equal length")
    values = np.concatenate([fn(y, p, idx)
                             for idx in resample_indices(len(y), resamples, seed=seed)])
    alpha = 1.0 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return _point(metric, y, p), float(low), float(high)


def paired_bootstrap(metric: str, y_true: np.ndarray, candidate: np.ndarray,
                     baseline: np.ndarray, *, resamples: int, confidence: float,
                     seed: int, method: Method = "percentile",
                     advance: Callable[[int], None] | None = None) -> Interval:
    """Bootstrap interval of metric(candidate) - metric(baseline) on paired rows.

    `advance(n)` is told after each block of n resamples (a progress bar's hook).
    """
    fn = _resampled(metric)
    y, c, b = (np.asarray(a) for a in (y_true, candidate, baseline))
    if not (len(y) == len(c) == len(b)) or len(y) == 0:
        raise ValueError("y_true and both predictions must be non-empty and of equal length")
    if method == "studentized":
        return _studentized(metric, y, c, b, resamples=resamples, confidence=confidence,
                            seed=seed, advance=advance)
    blocks = []
    for idx in resample_indices(len(y), resamples, seed=seed):
        blocks.append(fn(y, c, idx) - fn(y, b, idx))
        if advance is not None:
            advance(len(idx))
    diffs = np.concatenate(blocks)
    alpha = 1.0 - confidence
    point = _point(metric, y, c) - _point(metric, y, b)
    levels = [alpha / 2, 1 - alpha / 2]
    if method == "bca":
        levels = bca_levels(diffs, point, jackknife_difference(metric, y, c, b), levels)
    elif method != "percentile":
        raise ValueError(f"unknown bootstrap method {method!r} (choose from {METHODS})")
    low, high = np.quantile(diffs, levels)
    return Interval(metric=metric, difference=point, low=float(low), high=float(high),
                    confidence=confidence, resamples=resamples, method=method)


def _per_row(metric: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The per-row quantity whose mean the metric is a smooth function of."""
    if metric == "rmse":
        return _floats((y.astype(float) - p.astype(float)) ** 2)
    if metric == "mae":
        return _floats(np.abs(y.astype(float) - p.astype(float)))
    return _floats(y == p)


STUDENTIZED = ("rmse", "mae", "accuracy")
"""Metrics that are smooth functions of one mean per model, where the delta method gives
each resample's own standard error."""


def _difference_and_se(a: np.ndarray, b: np.ndarray, aa: np.ndarray, bb: np.ndarray,
                       ab: np.ndarray, *, rows: int, root: bool) -> tuple[np.ndarray, np.ndarray]:
    """g(mean a) - g(mean b) and its delta-method standard error, from the means of a, b,
    a², b² and ab (g is the square root for RMSE, the identity otherwise)."""
    if root:
        ra, rb = np.sqrt(a), np.sqrt(b)
        ga, gb = 0.5 / np.where(ra > 0, ra, np.inf), 0.5 / np.where(rb > 0, rb, np.inf)
        difference = ra - rb
    else:
        ga, gb = np.ones_like(a), np.ones_like(b)
        difference = a - b
    variance = (ga ** 2 * (aa - a ** 2) + gb ** 2 * (bb - b ** 2)
                - 2 * ga * gb * (ab - a * b))
    return _floats(difference), _floats(np.sqrt(np.maximum(variance, 0.0) / rows))


def _studentized(metric: str, y: np.ndarray, c: np.ndarray, b: np.ndarray, *,
                 resamples: int, confidence: float, seed: int,
                 advance: Callable[[int], None] | None) -> Interval:
    """Bootstrap-t: each resample's difference in units of its own standard error.

    The percentile interval takes the spread of the resampled differences as it comes;
    on heavy-tailed errors a sample that lacks the extreme rows looks too precise, and
    its interval is too short. Dividing each resample by its own standard error
    (resamples with an extreme row are both further off and wider) corrects that to
    second order.
    """
    if metric not in STUDENTIZED:
        raise ValueError(f"no studentized bootstrap for metric {metric!r} "
                         f"(only {', '.join(STUDENTIZED)})")
    qc, qb = _per_row(metric, y, c), _per_row(metric, y, b)
    columns = np.stack([qc, qb, qc * qc, qb * qb, qc * qb])
    root, rows = metric == "rmse", len(y)
    point, point_se = _difference_and_se(*columns.mean(axis=1), rows=rows, root=root)
    t_values = []
    for idx in resample_indices(rows, resamples, seed=seed):
        means = [_gather(column, idx).mean(axis=1) for column in columns]
        difference, se = _difference_and_se(*means, rows=rows, root=root)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_values.append(np.where(se > 0, (difference - point) / se, 0.0))
        if advance is not None:
            advance(len(idx))
    t = np.concatenate(t_values)
    alpha = 1.0 - confidence
    t_low, t_high = np.quantile(t, [alpha / 2, 1 - alpha / 2])
    centre, spread = float(point), float(point_se)
    return Interval(metric=metric, difference=centre, low=centre - float(t_high) * spread,
                    high=centre - float(t_low) * spread, confidence=confidence,
                    resamples=resamples, method="studentized")


def bca_levels(diffs: np.ndarray, point: float, jackknife: np.ndarray,
               levels: list[float]) -> list[float]:
    """Efron's BCa: the percentile levels moved by the bias (z0) and the acceleration (a).

    z0 measures how far the bootstrap distribution sits off the observed difference
    (ties count half, as scipy does); `a` is the skewness of the jackknife values. With
    z0 = a = 0 the levels are the percentile interval's.
    """
    normal = NormalDist()
    below = (np.count_nonzero(diffs < point) + np.count_nonzero(diffs <= point)) / 2
    share = min(max(below / len(diffs), 0.5 / len(diffs)), 1 - 0.5 / len(diffs))
    z0 = normal.inv_cdf(share)
    spread = jackknife.mean() - jackknife
    denominator = 6.0 * float((spread ** 2).sum()) ** 1.5
    a = float((spread ** 3).sum()) / denominator if denominator > 0 else 0.0
    moved = []
    for level in levels:
        z = z0 + normal.inv_cdf(level)
        moved.append(normal.cdf(z0 + z / (1 - a * z)))
    return moved


def jackknife_difference(metric: str, y: np.ndarray, candidate: np.ndarray,
                         baseline: np.ndarray) -> np.ndarray:
    """metric(candidate) - metric(baseline) with each row left out in turn."""
    closed = _LEAVE_ONE_OUT.get(metric)
    if closed is not None:
        return _floats(closed(y, candidate) - closed(y, baseline))
    fn = _resampled(metric)
    n = len(y)
    rows = np.arange(n)
    per_block = max(1, _BLOCK_CELLS // max(n, 1))
    parts = []
    for start in range(0, n, per_block):
        left_out = rows[start:start + per_block]
        # Row i of the block keeps every row but left_out[i]: shift indices past it.
        keep = np.arange(n - 1)[None, :]
        idx = keep + (keep >= left_out[:, None])
        parts.append(fn(y, candidate, idx) - fn(y, baseline, idx))
    return np.concatenate(parts)


def _loo_mean(values: np.ndarray) -> np.ndarray:
    return _floats((values.sum() - values) / (len(values) - 1))


def _loo_rmse(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return _floats(np.sqrt(_loo_mean((y.astype(float) - p.astype(float)) ** 2)))


def _loo_mae(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return _loo_mean(np.abs(y.astype(float) - p.astype(float)))


def _loo_accuracy(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return _loo_mean((y == p).astype(float))


def _loo_r2(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    y = y.astype(float)
    n = len(y)
    squared = (y - p.astype(float)) ** 2
    sse = squared.sum() - squared
    sst = ((y - y.mean()) ** 2).sum() - n / (n - 1) * (y - y.mean()) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return _floats(np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0),
                                np.where(sse == 0, 1.0, 0.0)))


_LEAVE_ONE_OUT: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "rmse": _loo_rmse,
    "mae": _loo_mae,
    "r2": _loo_r2,
    "accuracy": _loo_accuracy,
}


def _point(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    return float(_resampled(metric)(y, p, np.arange(len(y))[None, :])[0])
