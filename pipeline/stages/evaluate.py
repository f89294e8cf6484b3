"""Evaluation: the task's standard metrics on a set of rows.

Each metric is a function of (y_true, prediction) so the gate can recompute it on
bootstrap resamples; `GREATER_IS_BETTER` tells which direction wins. A run logs its
metrics on the validation rows under a `val_` prefix (`val_rmse`); the bare names
(`rmse`) are the gate's, computed on the sealed test rows only.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.stages.datasets import Task

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def _skm() -> ModuleType:
    """`sklearn.metrics`, imported when a metric is first computed: the gate's types and
    directions are imported by every `mlops` command, scikit-learn (about 1 s) only by
    those that score."""
    import sklearn.metrics

    module: ModuleType = sklearn.metrics
    return module


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, float) - np.asarray(p, float)) ** 2)))


REGRESSION_METRICS: dict[str, MetricFn] = {
    "rmse": _rmse,
    "mae": lambda y, p: float(_skm().mean_absolute_error(y, p)),
    "r2": lambda y, p: float(_skm().r2_score(y, p)),
}

CLASSIFICATION_METRICS: dict[str, MetricFn] = {
    "accuracy": lambda y, p: float(_skm().accuracy_score(y, p)),
    "f1_macro": lambda y, p: float(_skm().f1_score(y, p, average="macro", zero_division=0)),
    "balanced_accuracy": lambda y, p: float(_skm().balanced_accuracy_score(y, p)),
}

GREATER_IS_BETTER: dict[str, bool] = {
    "rmse": False,
    "mae": False,
    "r2": True,
    "accuracy": True,
    "f1_macro": True,
    "balanced_accuracy": True,
    "roc_auc": True,
    "log_loss": False,
}

PRIMARY_METRIC: dict[Task, str] = {"regression": "rmse", "classification": "f1_macro"}

VALIDATION_PREFIX = "val_"


def on_validation(scores: dict[str, float]) -> dict[str, float]:
    """`{"rmse": …}` → `{"val_rmse": …}`: scores named for the rows they were computed on."""
    return {f"{VALIDATION_PREFIX}{name}": value for name, value in scores.items()}


def metric_functions(task: Task) -> dict[str, MetricFn]:
    """The point metrics of a task, computed from labels/values alone."""
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


def evaluate(model: Pipeline, x: pd.DataFrame, y: pd.Series, *, task: Task) -> dict[str, float]:
    """Every standard metric of the task for `model` on (x, y)."""
    from sklearn.base import is_classifier

    prediction = np.asarray(model.predict(x))
    truth = np.asarray(y)
    scores = {name: fn(truth, prediction) for name, fn in metric_functions(task).items()}
    if task == "classification" and is_classifier(model) and hasattr(model, "predict_proba"):
        scores.update(_probability_metrics(model, x, truth))
    return scores


def _probability_metrics(model: Pipeline, x: pd.DataFrame, truth: np.ndarray) -> dict[str, float]:
    proba = model.predict_proba(x)
    classes = list(model.classes_)
    skm = _skm()
    scores = {"log_loss": float(skm.log_loss(truth, proba, labels=classes))}
    if len(set(truth)) < 2:
        return scores
    if len(classes) == 2:
        scores["roc_auc"] = float(skm.roc_auc_score(truth == classes[1], proba[:, 1]))
    else:
        scores["roc_auc"] = float(
            skm.roc_auc_score(truth, proba, multi_class="ovr", labels=classes)
        )
    return scores
