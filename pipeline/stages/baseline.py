"""The dummy baseline of a dataset, and the floor a useful model must meet on it.

A new card's floors cannot be copied from another dataset (the demo's `r2: 0.90` means
nothing for other data). What every dataset does have is the score of a model that
ignores the features: the mean of the target (regression) or the class frequencies
(classification), the same `dummy` that `mlops train --estimator dummy` fits. A useful
model must be clearly better than that; the rule, said beside each floor in the card:

    floor = baseline + FLOOR_SHARE x (perfect - baseline)

that is, a model must close at least a tenth of the gap between the dummy and a perfect
score (0 for an error such as RMSE, 1 for a share such as F1 or R²), computed on the
validation rows of the same split the pipeline uses (the sealed test rows stay unseen).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.stages.metrics import greater_is_better

if TYPE_CHECKING:
    from pipeline.stages.data import PreparedData

FLOOR_SHARE = 0.10
"""The share of the gap between the dummy baseline and a perfect score a model must close."""

DUMMY = {"regression": "predicts the mean of the training target",
         "classification": "predicts the training class frequencies"}


@dataclass(frozen=True)
class Floor:
    """A floor derived from the baseline, and the rule in words."""

    metric: str
    bound: float
    baseline: float
    rule: str


def perfect(metric: str) -> float:
    """A perfect score: every error metric here is 0 at best, every share 1."""
    return 1.0 if greater_is_better(metric) else 0.0


def dummy_scores(data: PreparedData) -> dict[str, float]:
    """The dummy baseline, fitted on the training rows, scored on the validation rows."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    from pipeline.stages.evaluate import evaluate
    from pipeline.stages.features import build_model

    dummy = (DummyRegressor(strategy="mean") if data.spec.task == "regression"
             else DummyClassifier(strategy="prior"))
    model = build_model(data.spec, dummy)
    model.fit(data.x_train, data.y_train)
    return evaluate(model, data.x_validation, data.y_validation, task=data.spec.task)


def floor_from_baseline(metric: str, baseline: float, *, task: str, rows: int) -> Floor:
    """The floor of `metric` given the dummy's score on `rows` validation rows."""
    best = perfect(metric)
    bound = float(f"{baseline + FLOOR_SHARE * (best - baseline):.4g}")
    side = "at least" if greater_is_better(metric) else "at most"
    rule = (f"the dummy baseline ({DUMMY[task]}) scores {metric} {baseline:.4g} on the "
            f"{rows} validation rows; a useful model closes at least "
            f"{FLOOR_SHARE:.0%} of the gap to a perfect {best:g}: {side} {bound:g}")
    return Floor(metric=metric, bound=bound, baseline=baseline, rule=rule)
