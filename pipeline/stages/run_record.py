"""What every training run records beyond its metrics, so a run can be read on its own.

Called by `pipeline.stages.train.log_run` inside the active run:

- a name that says what it is, `<estimator>-<first 8 characters of the run ID>`
  (`hist_gradient_boosting-3f2a9c1d`), where MLflow would pick "resilient-skink-372";
- its data as MLflow dataset inputs (`mlflow.log_input`): the train and validation rows,
  each with the dataset's name, its source (the card's `data.source`) and the hash of
  its rows (`rows_hash`, the same as the run's `train_rows_hash` / `validation_rows_hash`
  tags), so the run's "Datasets used" say which rows made it;
- which features mattered: permutation importance on the validation rows (how much the
  task's primary metric worsens when one column is shuffled), as
  `importance/permutation_importance.csv`;
- a picture of its errors on the validation rows: predicted vs actual (regression) or
  the confusion matrix (classification), under `plots/`.

The sealed test rows are never touched here: they are the gate's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd

from pipeline.stages.data import BUILTIN, PreparedData, rows_hash
from pipeline.stages.metrics import PRIMARY_METRIC

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMPORTANCE_ARTIFACT = "importance/permutation_importance.csv"
IMPORTANCE_ROWS = 2000
"""Validation rows permutation importance is computed on (a fixed sample when there are
more): each feature costs `IMPORTANCE_REPEATS` predictions of them."""
IMPORTANCE_REPEATS = 5
PLOT_ROWS = 5000
SCORERS = {"rmse": "neg_root_mean_squared_error", "f1_macro": "f1_macro"}
"""scikit-learn's scorer of each task's primary metric (`PRIMARY_METRIC`)."""


def record_run(*, data: PreparedData, model: Any, estimator_name: str, run_id: str) -> None:
    """Name the active run, log its datasets, feature importance and plot."""
    mlflow.set_tag("mlflow.runName", run_name(estimator_name, run_id))
    log_datasets(data)
    table = permutation_table(model, data)
    mlflow.log_text(table.to_csv(index=False), IMPORTANCE_ARTIFACT)
    figure, name = error_plot(model, data)
    mlflow.log_figure(figure, f"plots/{name}")


def run_name(estimator_name: str, run_id: str) -> str:
    """`ridge-3f2a9c1d`: the estimator, and enough of the ID to find the run."""
    return f"{estimator_name}-{run_id[:8]}"


@dataclass(frozen=True)
class DatasetInput:
    """One set of rows as the run records it."""

    context: str
    frame: pd.DataFrame
    digest: str


def dataset_inputs(data: PreparedData) -> list[DatasetInput]:
    """The rows a run learned from and was measured on; never the sealed test rows."""
    return [DatasetInput("training", data.train, rows_hash(data.train)),
            DatasetInput("validation", data.validation, rows_hash(data.validation))]


def log_datasets(data: PreparedData) -> None:
    """`mlflow.log_input` of the train and validation rows: name, source, hash."""
    from mlflow.data.pandas_dataset import from_pandas

    for each in dataset_inputs(data):
        dataset = from_pandas(each.frame, source=_source(data), name=data.spec.name,
                              targets=data.spec.target.name, digest=each.digest)
        mlflow.log_input(dataset, context=each.context)


def _source(data: PreparedData) -> Any:
    """The card's data source as MLflow understands it: a path or URI as such; the
    built-in data (shipped in a package) as code, named by the dataset."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.exceptions import MlflowException

    if data.source and data.source != BUILTIN:
        try:
            with warnings.catch_warnings():  # MLflow warns while it tries its resolvers
                warnings.simplefilter("ignore")
                return resolve_dataset_source(data.source)
        except MlflowException:  # a kind of URI MLflow does not know: named, not resolved
            return CodeDatasetSource(tags={"source": data.source})
    return CodeDatasetSource(tags={"source": f"{BUILTIN}: {data.spec.name}"})


def permutation_table(model: Any, data: PreparedData) -> pd.DataFrame:
    """How much the primary metric worsens on the validation rows when each feature is
    shuffled (mean and spread over the repeats), most important first."""
    from sklearn.inspection import permutation_importance

    x, y = _sample(data.x_validation, data.y_validation, IMPORTANCE_ROWS)
    metric = PRIMARY_METRIC[data.spec.task]
    found = permutation_importance(model, x, y, scoring=SCORERS[metric],
                                   n_repeats=IMPORTANCE_REPEATS, random_state=0)
    table = pd.DataFrame({"feature": list(x.columns),
                          "importance_mean": found.importances_mean,
                          "importance_std": found.importances_std})
    table["metric"] = metric
    table["rows"] = len(x)
    return table.sort_values("importance_mean", ascending=False, ignore_index=True)


def error_plot(model: Any, data: PreparedData) -> tuple[Figure, str]:
    """Predicted vs actual (regression) or the confusion matrix (classification)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x, y = _sample(data.x_validation, data.y_validation, PLOT_ROWS)
    predicted = np.asarray(model.predict(x))
    figure = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    if data.spec.task == "regression":
        truth = y.to_numpy(dtype=float)
        axes.scatter(truth, predicted, s=4, alpha=0.4)
        low, high = float(truth.min()), float(truth.max())
        axes.plot([low, high], [low, high], color="black", linewidth=1, label="perfect")
        axes.set(xlabel="actual", ylabel="predicted",
                 title=f"Predicted vs actual ({len(x):,} validation rows)")
        axes.legend()
        return figure, "predicted_vs_actual.png"
    from sklearn.metrics import ConfusionMatrixDisplay

    ConfusionMatrixDisplay.from_predictions(y, predicted, ax=axes, colorbar=False)
    axes.set_title(f"Confusion matrix ({len(x):,} validation rows)")
    return figure, "confusion_matrix.png"


def _sample(x: pd.DataFrame, y: pd.Series, rows: int) -> tuple[pd.DataFrame, pd.Series]:
    """At most `rows` rows, the same ones on every run of the same data."""
    if len(x) <= rows:
        return x, y
    picked = x.sample(n=rows, random_state=0).index
    return x.loc[picked], y.loc[picked]
