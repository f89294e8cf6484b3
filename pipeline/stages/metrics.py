"""Every metric the pipeline computes, in one registry.

Each `Metric` says which task it belongs to, which direction is better, how it is
computed and whether the gate can bootstrap it. Training logs all of a task's metrics
on the validation rows (`val_<name>`), the gate computes them on the sealed test rows
and bootstraps the differences of the resamplable ones, the card may floor any of
them and must name a resamplable one as its primary metric. Adding a metric is one
entry here.

A resamplable metric is written once, vectorized over resamples: `resample(truth,
prediction, indices)` takes an integer matrix whose rows are resamples of row
indices and returns one value per resample. The metric's value on the rows themselves
is the same function with the identity resample, so the point value and the bootstrap
can never disagree. Metrics of probabilities (log loss, ROC AUC) are point values only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.stages.datasets import Task

Resampled = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(truth, prediction, indices[resamples, rows]) -> the metric per resample."""
FromProbabilities = Callable[[np.ndarray, np.ndarray, Sequence[Any]], float | None]
"""(truth, probabilities[rows, classes], classes) -> the metric, or None if undefined."""


@dataclass(frozen=True)
class Metric:
    name: str
    task: Task
    greater_is_better: bool
    resample: Resampled | None = None
    from_probabilities: FromProbabilities | None = None

    @property
    def resamplable(self) -> bool:
        """The gate can bootstrap its paired difference."""
        return self.resample is not None

    @property
    def needs_probabilities(self) -> bool:
        return self.from_probabilities is not None

    def value(self, truth: np.ndarray, prediction: np.ndarray,
              probabilities: np.ndarray | None = None,
              classes: Sequence[Any] | None = None) -> float | None:
        """The metric on these rows; None when it needs what the model does not give."""
        if self.resample is not None:
            identity = np.arange(len(truth))[None, :]
            return float(self.resample(np.asarray(truth), np.asarray(prediction), identity)[0])
        if self.from_probabilities is None or probabilities is None or classes is None:
            return None
        return self.from_probabilities(np.asarray(truth), np.asarray(probabilities), classes)


def _gather(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    gathered: np.ndarray = values[indices]
    return gathered


def _floats(values: object) -> np.ndarray:
    return np.asarray(values, dtype=float)


def _rmse(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    squared = (y.astype(float) - p.astype(float)) ** 2
    return _floats(np.sqrt(_gather(squared, idx).mean(axis=1)))


def _mae(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    absolute = np.abs(y.astype(float) - p.astype(float))
    return _floats(_gather(absolute, idx).mean(axis=1))


def _r2(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    y = y.astype(float)
    sse = _gather((y - p.astype(float)) ** 2, idx).sum(axis=1)
    ys = _gather(y, idx)
    sst = ((ys - ys.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # sklearn's convention for a constant target: 1 if perfect, else 0.
        return _floats(np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0),
                                np.where(sse == 0, 1.0, 0.0)))


def _accuracy(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return _floats(_gather((y == p).astype(float), idx).mean(axis=1))


def _class_counts(y: np.ndarray, p: np.ndarray, idx: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, true counts and predicted counts per (resample, class)."""
    classes, codes = np.unique(np.concatenate([y, p]), return_inverse=True)
    y_code, p_code = codes[: len(y)], codes[len(y):]
    ys, ps = _gather(y_code, idx), _gather(p_code, idx)
    k = len(classes)
    shape = (idx.shape[0], k)
    tp, true_n, pred_n = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for c in range(k):
        is_true, is_pred = ys == c, ps == c
        tp[:, c] = (is_true & is_pred).sum(axis=1)
        true_n[:, c] = is_true.sum(axis=1)
        pred_n[:, c] = is_pred.sum(axis=1)
    return tp, true_n, pred_n


def _f1_macro(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """sklearn's f1 macro with zero_division=0: over labels seen in y or p of the sample."""
    tp, true_n, pred_n = _class_counts(y, p, idx)
    denominator = true_n + pred_n
    present = denominator > 0
    f1 = np.where(present, 2 * tp / np.where(present, denominator, 1.0), 0.0)
    return _floats(f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1))


def _balanced_accuracy(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present in the sample's true labels (as sklearn)."""
    tp, true_n, _ = _class_counts(y, p, idx)
    present = true_n > 0
    recall = np.where(present, tp / np.where(present, true_n, 1.0), 0.0)
    return _floats(recall.sum(axis=1) / np.maximum(present.sum(axis=1), 1))


def _log_loss(y: np.ndarray, proba: np.ndarray, classes: Sequence[Any]) -> float | None:
    import sklearn.metrics  # imported when first computed: the registry is read at start-up

    return float(sklearn.metrics.log_loss(y, proba, labels=list(classes)))


def _roc_auc(y: np.ndarray, proba: np.ndarray, classes: Sequence[Any]) -> float | None:
    """One-vs-rest for more than two classes; undefined with one class in the rows."""
    import sklearn.metrics

    if len(set(y.tolist())) < 2:
        return None
    if len(classes) == 2:
        return float(sklearn.metrics.roc_auc_score(y == classes[1], proba[:, 1]))
    return float(sklearn.metrics.roc_auc_score(y, proba, multi_class="ovr",
                                               labels=list(classes)))


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("rmse", "regression", greater_is_better=False, resample=_rmse),
    Metric("mae", "regression", greater_is_better=False, resample=_mae),
    Metric("r2", "regression", greater_is_better=True, resample=_r2),
    Metric("accuracy", "classification", greater_is_better=True, resample=_accuracy),
    Metric("f1_macro", "classification", greater_is_better=True, resample=_f1_macro),
    Metric("balanced_accuracy", "classification", greater_is_better=True,
           resample=_balanced_accuracy),
    Metric("log_loss", "classification", greater_is_better=False,
           from_probabilities=_log_loss),
    Metric("roc_auc", "classification", greater_is_better=True, from_probabilities=_roc_auc),
)}

PRIMARY_METRIC: dict[Task, str] = {"regression": "rmse", "classification": "f1_macro"}
"""The metric a new card of the task names first (`mlops data init`)."""


def of_task(task: Task) -> list[Metric]:
    return [metric for metric in METRICS.values() if metric.task == task]


def greater_is_better(name: str) -> bool:
    """The direction of a known metric (a name from a verdict or a card)."""
    return METRICS[name].greater_is_better


def scores(task: Task, truth: np.ndarray, prediction: np.ndarray,
           probabilities: np.ndarray | None = None,
           classes: Sequence[Any] | None = None) -> dict[str, float]:
    """Every metric of the task that these outputs define, by name."""
    values = {metric.name: metric.value(truth, prediction, probabilities, classes)
              for metric in of_task(task)}
    return {name: value for name, value in values.items() if value is not None}
