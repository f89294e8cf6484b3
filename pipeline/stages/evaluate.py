"""Evaluation: a model's outputs on a set of rows, and the task's metrics of them.

A model is asked once per set of rows (`predict`: its predictions and, for a
classifier, its class probabilities); every metric of `pipeline.stages.metrics` is
computed from those outputs. A run logs its metrics on the validation rows under a
`val_` prefix (`val_rmse`); the bare names (`rmse`) are the gate's, computed on the
sealed test rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.stages import metrics
from pipeline.stages.datasets import Task

VALIDATION_PREFIX = "val_"


@dataclass(frozen=True)
class Predictions:
    """What a model answered on some rows: computed once, used by every metric, the
    bootstrap, the plots and the twin's parity."""

    prediction: np.ndarray
    probabilities: np.ndarray | None = None
    classes: list[Any] | None = None


def predict(model: Any, x: pd.DataFrame) -> Predictions:
    """The model's predictions (and a classifier's probabilities, in `classes` order)."""
    prediction = np.asarray(model.predict(x))
    if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        return Predictions(prediction=prediction)
    return Predictions(prediction=prediction,
                       probabilities=np.asarray(model.predict_proba(x), dtype=np.float64),
                       classes=list(model.classes_))


def scores_of(predictions: Predictions, y: pd.Series | np.ndarray, *,
              task: Task) -> dict[str, float]:
    """Every metric of the task that the outputs define (probability metrics need them)."""
    return metrics.scores(task, np.asarray(y), predictions.prediction,
                          predictions.probabilities, predictions.classes)


def evaluate(model: Any, x: pd.DataFrame, y: pd.Series, *, task: Task) -> dict[str, float]:
    """Every standard metric of the task for `model` on (x, y)."""
    return scores_of(predict(model, x), y, task=task)


def on_validation(scores: dict[str, float]) -> dict[str, float]:
    """`{"rmse": …}` → `{"val_rmse": …}`: scores named for the rows they were computed on."""
    return {f"{VALIDATION_PREFIX}{name}": value for name, value in scores.items()}
