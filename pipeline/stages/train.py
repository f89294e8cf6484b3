"""Training: fit the feature+estimator pipeline, evaluate it, compile its twin, log the run.

The estimator comes from `pipeline.stages.estimators` (a built-in name or `MODULE:FACTORY`)
or from the caller (an estimator object, or a model already fitted). Everything that can
fail on bad input (estimator, parameters, types the server would refuse, data, fitting)
happens before the MLflow run starts, and a failure while logging deletes the run: no
half-logged run is ever left behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import sklearn
import yaml
from mlflow.models import infer_signature
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

import pipeline
from modelio.files import PROBABILITIES_PARAM
from pipeline import progress
from pipeline.errors import ConfigError
from pipeline.stages import DEFAULT_ESTIMATOR as DEFAULT_ESTIMATOR  # what notebooks import
from pipeline.stages import MODEL_ARTIFACT
from pipeline.stages.data import PreparedData, rows_hash
from pipeline.stages.estimators import BUILT_IN, check_loadable, kind_requirements
from pipeline.stages.estimators import make_estimator as make_estimator  # re-exported
from pipeline.stages.evaluate import evaluate, on_validation
from pipeline.stages.features import build_model
from pipeline.stages.reference import log_reference
from pipeline.stages.twin import Twin, TwinRefused, compile_twin

log = logging.getLogger(__name__)


ESTIMATORS = BUILT_IN
"""The built-in estimators by task (`pipeline.stages.estimators`); `--estimator` also takes
`MODULE:FACTORY`."""


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    estimator: str
    metrics: dict[str, float]
    data_hash: str
    model_uri: str
    twin: str = "none"
    """`onnx` when a verified twin was logged, else why not (one line)."""


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """`["max_iter=200", "loss=absolute_error"]` → typed values (YAML scalars)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            params[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--param {key}: cannot parse value") from err
    return params


def fit(data: PreparedData, estimator: BaseEstimator) -> Pipeline:
    """Fit features and estimator together; the estimator's rejections become ConfigError.

    An estimator that stops early on the validation rows (XGBoost's
    `early_stopping_rounds`, LightGBM's `early_stopping_round`) is fitted by `fit_stopped`.
    """
    model = build_model(data.spec, estimator)
    try:
        if stopping_rounds(estimator):
            fit_stopped(model, data)
        else:
            model.fit(data.x_train, data.y_train)
    except InvalidParameterError as err:
        raise ConfigError(f"--param: {str(err).splitlines()[0]}") from err
    except (ValueError, TypeError) as err:
        raise ConfigError(f"fitting {type(estimator).__name__} failed: "
                          f"{_one_line(err)}") from err
    except Exception as err:
        if type(err).__name__ in LIBRARY_ERRORS:
            raise ConfigError(f"fitting {type(estimator).__name__} failed: "
                              f"{_one_line(err)}") from err
        raise
    return model


LIBRARY_ERRORS = frozenset({"XGBoostError", "LightGBMError"})
"""What XGBoost and LightGBM raise for parameters they reject (by name: neither library
need be installed)."""


def stopping_rounds(estimator: BaseEstimator) -> int | None:
    """The early stopping patience of an XGBoost or LightGBM estimator, if it has one."""
    params = estimator.get_params(deep=False)
    rounds = params.get("early_stopping_rounds") or params.get("early_stopping_round")
    return int(rounds) if isinstance(rounds, int) and rounds > 0 else None


def fit_stopped(model: Pipeline, data: PreparedData) -> None:
    """Fit with early stopping on the validation rows.

    The features are fitted on the training rows first, so the estimator can watch its
    validation score on the same features. The booster keeps the rounds past its best;
    both libraries predict with the best round only (XGBoost's `best_iteration`,
    LightGBM's `best_iteration_`), and so do their ONNX converters.
    """
    features, estimator = model.named_steps["features"], model.named_steps["estimator"]
    x_train = features.fit_transform(data.x_train, data.y_train)
    x_validation = features.transform(data.x_validation)
    quiet = {"verbose": False} if "early_stopping_rounds" in estimator.get_params() else {}
    estimator.fit(x_train, data.y_train, eval_set=[(x_validation, data.y_validation)],
                  **quiet)


HGB_ITERATION = re.compile(r"^\[(\d+)/(\d+)\]")
"""What histogram gradient boosting prints per iteration with `verbose=1`: `[12/100] ...`."""


def fit_with_progress(data: PreparedData, estimator: BaseEstimator) -> Pipeline:
    """`fit`, with a bar of boosting iterations while a person watches.

    Histogram gradient boosting reports each iteration only as a printed line (it has
    no callback), so for the length of the fit its `verbose` is on and stdout is read
    line by line into the bar; `verbose` is back to 0 before anything is logged, so
    the run's parameters are the same with or without a terminal.
    """
    total = getattr(estimator, "max_iter", None)
    if not progress.drawing() or not isinstance(
            estimator, HistGradientBoostingRegressor | HistGradientBoostingClassifier) \
            or not isinstance(total, int) or estimator.get_params()["verbose"]:
        return fit(data, estimator)  # nothing to draw, or `--param verbose=…` asked for its own
    with progress.steps("boosting iterations (early stopping may end sooner)", total) \
            as advance:
        estimator.set_params(verbose=1)
        try:
            with contextlib.redirect_stdout(_IterationReader(advance)):
                model = fit(data, estimator)
        finally:
            estimator.set_params(verbose=0)
    return model


class _IterationReader(io.TextIOBase):
    """A stdout that turns `[i/n]` lines into `advance(1)` and drops everything else."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance = advance
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if HGB_ITERATION.match(line):
                self.advance(1)
        return len(text)


def git_commit() -> str:
    """The commit the code was run from, so a run can be traced to its source."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def pip_requirements(types: Sequence[str] = ()) -> list[str]:
    """Explicit requirements: inferring them costs MLflow 6-13 s per logged model. A model
    of another kind (XGBoost, LightGBM) names its library's version, which the server
    checks it reads (`modelio.sklearn_kind.check_kinds`)."""
    import skops

    return [
        f"mlflow=={mlflow.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
        f"skops=={skops.__version__}",
        *kind_requirements(tuple(types)),
    ]


def trusted_types(model: BaseEstimator) -> list[str]:
    """The types skops must be told to trust to load this model again.

    They must be admitted by the loading allowlist (`modelio/allowlist.yaml`) that the
    server, the gate and promote hold to: a model that could never be served is refused
    here, at training time (and, for what the unfitted model shows, before fitting:
    `check_loadable` in `train`), not at promotion.
    """
    return list(check_loadable(model))


def signature_sample(x: pd.DataFrame, *, rows: int = 100) -> pd.DataFrame:
    """Rows to infer the signature from: the first ones plus every row with a gap.

    MLflow marks a column optional only when its sample has missing values; the model
    imputes them, so a column that had gaps in training must accept them when serving.
    """
    with_gaps = x[x.isna().any(axis=1)]
    return pd.concat([x.head(rows), with_gaps.head(1000)]).drop_duplicates()


def log_run(*, data: PreparedData, model: Pipeline, estimator_name: str,
            params: dict[str, Any], metrics: dict[str, float], experiment: str,
            twin: Twin | TwinRefused | None = None) -> str:
    """Log params, metrics, tags and the model as one run; delete it if anything fails.

    The twin is not logged: promotion derives it from the registered model with reviewed
    code (a twin the run carried would be the run owner's word). Whether one compiles
    and agrees is the run's `twin` tag, and its parity figures are metrics. The
    validation rows and the model's predictions on them are the run's training
    reference (`pipeline.stages.reference`), what `mlops monitor` compares traffic with.
    """
    mlflow.set_experiment(experiment)
    signature = model_signature(model, data.x_train)
    types = trusted_types(model)  # before the run exists: a refusal leaves no run
    with mlflow.start_run() as run:
        try:
            mlflow.set_tags(_tags(data, estimator_name))
            mlflow.log_params(_params(data, estimator_name, model, params))
            mlflow.log_metrics(metrics)
            mlflow.log_metrics({f"cleanse_{k}": v for k, v in data.report.counts.items()})
            mlflow.log_metrics(twin_metrics(twin))
            mlflow.set_tag("twin", twin_tag(twin))
            mlflow.sklearn.log_model(
                sk_model=model,
                name=MODEL_ARTIFACT,
                signature=signature,
                input_example=input_example(data),
                pip_requirements=pip_requirements(types),
                skops_trusted_types=types,
            )
            log_reference(model, x_validation=data.x_validation, y_validation=data.y_validation,
                          kinds={c.name: c.kind for c in data.spec.features},
                          task=data.spec.task)
            from pipeline.stages.run_record import record_run  # name, datasets, importance, plot
            record_run(data=data, model=model, estimator_name=estimator_name,
                       run_id=run.info.run_id)
        except BaseException:
            mlflow.end_run(status="FAILED")
            mlflow.delete_run(run.info.run_id)
            raise
    return str(run.info.run_id)


def input_example(data: PreparedData) -> pd.DataFrame:
    """The rows logged with the model as its input example; the twin records the model's
    answers on the same rows (`compile_twin`)."""
    return data.x_train.head(5)


def model_signature(model: Pipeline, x_train: pd.DataFrame) -> Any:
    """Input columns (with which may be missing), the output, and a classifier's params."""
    sample = signature_sample(x_train)
    return infer_signature(sample, model.predict(sample), params=signature_params(model))


def signature_params(model: Pipeline) -> dict[str, Any] | None:
    """A classifier declares `probabilities` (default false): our server, asked with
    `params: {"probabilities": true}`, answers class probabilities. MLflow's own sklearn
    flavor accepts the parameter and ignores it (its pyfunc always predicts labels)."""
    if not hasattr(model, "predict_proba"):
        return None
    return {PROBABILITIES_PARAM: False}


def twin_metrics(twin: Twin | TwinRefused | None) -> dict[str, float]:
    """The parity figures: the gate re-measures them, the benchmark reports them."""
    if twin is None or twin.parity is None:
        return {}
    return {"twin_parity_max_abs": twin.parity.max_abs, "twin_rows": float(twin.parity.rows),
            "twin_parity_tolerance": twin.parity.tolerance,
            "twin_labels_differ": float(twin.parity.labels_differ)}


def twin_tag(twin: Twin | TwinRefused | None) -> str:
    if twin is None:
        return "not compiled"
    return "onnx" if isinstance(twin, Twin) else twin.reason[:500]


def _tags(data: PreparedData, estimator_name: str) -> dict[str, str]:
    return {
        "git_commit": git_commit(),
        "data_hash": data.data_hash,
        "dataset": data.spec.name,
        "task": data.spec.task,
        "target": data.spec.target.name,
        "estimator": estimator_name,
        "train_rows_hash": rows_hash(data.train),
        "validation_rows_hash": rows_hash(data.validation),
        "package_version": pipeline.__version__,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _params(data: PreparedData, estimator_name: str, model: BaseEstimator,
            overrides: dict[str, Any]) -> dict[str, Any]:
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    estimator_params = final.get_params(deep=False)
    return {
        "estimator": estimator_name,
        "dataset": data.spec.name,
        "rows_train": len(data.train),
        "rows_validation": len(data.validation),
        "rows_test": len(data.test),
        "rows_dropped_in_cleansing": data.report.rows_in - data.report.rows_out,
        "overridden_params": ",".join(sorted(overrides)) or "none",
        **{f"estimator.{k}": v for k, v in estimator_params.items()},
    }


def train(*, data: PreparedData, estimator: BaseEstimator, estimator_name: str,
          params: dict[str, Any], experiment: str,
          twin_tolerance: float | None = None, fitted: bool = False) -> TrainResult:
    """The whole training stage: fit, evaluate on the validation rows, compile its twin, log.

    The metrics are named `val_…`: the sealed test rows are the gate's alone. Before
    anything is fitted, the unfitted model is held to the loading allowlist
    (`check_loadable`): a type the server would refuse fails here, every such type named,
    and no run is created. With `fitted`, `estimator` is a model already fitted on the
    raw feature columns (a notebook's), evaluated and logged as it is. The twin is
    verified on the same validation rows; without one the model serves through its own
    runtime.
    """
    model = estimator if fitted else build_model(data.spec, estimator)
    check_loadable(model)
    if not fitted:
        with progress.stage(f"fitting {estimator_name} on {len(data.train):,} rows"):
            model = fit_with_progress(data, estimator)
    x_eval, y_eval = data.x_validation, data.y_validation
    with progress.stage(f"evaluating on {len(data.validation):,} validation rows"):
        metrics = on_validation(evaluate(model, x_eval, y_eval, task=data.spec.task))
    with progress.stage("compiling the ONNX twin and checking it on the same rows"):
        twin = compile_twin(model, data.spec, x_eval, y_eval, tolerance=twin_tolerance,
                            example=input_example(data))
    if isinstance(twin, TwinRefused):
        log.warning("no compiled twin: %s", twin.reason)
    else:
        log.info("compiled twin: %s", twin.parity.line())
    with progress.stage("logging the run and the model"):
        run_id = log_run(data=data, model=model, estimator_name=estimator_name,
                         params=params, metrics=metrics, experiment=experiment, twin=twin)
    return TrainResult(run_id=run_id, estimator=estimator_name, metrics=metrics,
                       data_hash=data.data_hash, model_uri=f"runs:/{run_id}/{MODEL_ARTIFACT}",
                       twin=twin_tag(twin))


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:300]
