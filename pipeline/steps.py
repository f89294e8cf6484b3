"""The training stages as steps that hand over through files, for schedulers.

A scheduler such as Airflow runs each task in its own process (often on another
machine), and what tasks pass to each other (XCom) must stay small. So each step
here takes paths and IDs and returns a small JSON-ready dict:

    prepare  → train.parquet, holdout.parquet, prepared.json in a work dir of the DAG run
    features → fits the feature transformer on the training rows, features.json
    train    → fits, evaluates and logs one MLflow run; returns its run ID
    evaluate → loads the *logged* model back from MLflow, re-scores the held-out rows,
               checks the card's floors; a miss stops the DAG before registering
    register → a new version of the card's model, never Production: production is
               reached only through the pull request gate and `mlops promote`

The work dir is a local folder or any fsspec URL, e.g. `s3://bucket/mlops-work`: on
MWAA or a multi-worker Celery/ECS setup the tasks of one run may land on different
machines, so the hand-over must live on shared storage.

The steps call the same stage functions as `mlops train`, so a run logged by the DAG
is indistinguishable from one logged by hand.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import fsspec
import mlflow
import pandas as pd

from pipeline import registry
from pipeline.card import ModelCard, load_card
from pipeline.config import load_settings
from pipeline.data import CleansingReport, PreparedData, prepare, validate
from pipeline.datasets import load_spec
from pipeline.errors import ConfigError, NegativeVerdict
from pipeline.evaluate import GREATER_IS_BETTER, evaluate
from pipeline.features import build_preprocessor
from pipeline.train import make_estimator, train

TRAIN_FILE = "train.parquet"
HOLDOUT_FILE = "holdout.parquet"
PREPARED_FILE = "prepared.json"
FEATURES_FILE = "features.json"
REGISTERED_BY_TAG = "registered_by"


def work_dir_for(root: str, run_key: str) -> str:
    """A folder (or object prefix) for one scheduler run; the key becomes a safe name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_key).strip("._") or "run"
    return f"{str(root).rstrip('/')}/{safe}"


def _join(work_dir: str, name: str) -> str:
    return f"{work_dir.rstrip('/')}/{name}"


def _write_parquet(frame: pd.DataFrame, url: str) -> None:
    # Through fsspec (s3fs for s3://), which any S3 protocol server accepts.
    with fsspec.open(url, "wb") as handle:
        frame.to_parquet(handle, index=False)


def _read_parquet(url: str) -> pd.DataFrame:
    with fsspec.open(url, "rb") as handle:
        return pd.read_parquet(handle)


def _write_json(work_dir: str, name: str, value: dict[str, Any]) -> None:
    with fsspec.open(_join(work_dir, name), "w", encoding="utf-8") as handle:
        handle.write(json.dumps(value, indent=2))


def _tracking_uri() -> str:
    uri = load_settings().mlflow_tracking_uri
    registry.check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def prepare_step(*, card_path: Path, work_dir: str) -> dict[str, Any]:
    """Load, validate, cleanse and split the card's data; write both splits to `work_dir`."""
    card = load_card(card_path)
    spec = load_spec(card.data.dataset)
    data = prepare(spec, source=card.data.source, holdout_fraction=card.data.holdout_fraction)
    fs, path = fsspec.core.url_to_fs(work_dir)
    fs.makedirs(path, exist_ok=True)
    _write_parquet(data.train, _join(work_dir, TRAIN_FILE))
    _write_parquet(data.holdout, _join(work_dir, HOLDOUT_FILE))
    _write_json(work_dir, PREPARED_FILE, {
        "dataset": spec.name, "data_hash": data.data_hash, "rows_in": data.report.rows_in,
        "rows_out": data.report.rows_out, "counts": data.report.counts})
    return {"work_dir": work_dir, "rows_train": len(data.train),
            "rows_holdout": len(data.holdout), "data_hash": data.data_hash}


def load_prepared(card: ModelCard, work_dir: str) -> PreparedData:
    """The prepared data written by `prepare_step`, with the same dtypes as in memory."""
    try:
        with fsspec.open(_join(work_dir, PREPARED_FILE), "r", encoding="utf-8") as handle:
            meta = json.loads(handle.read())
        train_rows = _read_parquet(_join(work_dir, TRAIN_FILE))
        holdout_rows = _read_parquet(_join(work_dir, HOLDOUT_FILE))
    except FileNotFoundError as err:
        raise ConfigError(f"{work_dir}: no prepared data (run the prepare step first)") from err
    spec = load_spec(card.data.dataset)
    if meta["dataset"] != spec.name:
        raise ConfigError(f"{work_dir}: prepared for dataset {meta['dataset']!r}, "
                          f"but the card names {spec.name!r}")
    report = CleansingReport(rows_in=meta["rows_in"], rows_out=meta["rows_out"],
                             counts=dict(meta["counts"]))
    return PreparedData(spec=spec, train=validate(train_rows, spec),
                        holdout=validate(holdout_rows, spec), report=report,
                        data_hash=meta["data_hash"])


def features_step(*, card_path: Path, work_dir: str) -> dict[str, Any]:
    """Fit the feature transformer on the training rows: a cheap check before training.

    The logged model carries its own copy of this transformer (features and
    estimator are one sklearn Pipeline), so serving and batch scoring take raw
    columns; this step records what the features become and fails early if the
    data cannot be featurized.
    """
    card = load_card(card_path)
    data = load_prepared(card, work_dir)
    transformer = build_preprocessor(data.spec).fit(data.x_train)
    names = [str(n) for n in transformer.get_feature_names_out()]
    summary = {"inputs": data.spec.feature_names, "outputs": names}
    _write_json(work_dir, FEATURES_FILE, summary)
    return {"features_in": len(summary["inputs"]), "features_out": len(names)}


def train_step(*, card_path: Path, work_dir: str, estimator: str,
               params: dict[str, Any]) -> dict[str, Any]:
    """Fit, evaluate on the held-out rows and log one MLflow run; return its ID and metrics."""
    card = load_card(card_path)
    data = load_prepared(card, work_dir)
    built = make_estimator(data.spec.task, estimator, dict(params))
    _tracking_uri()
    result = train(data=data, estimator=built, estimator_name=estimator, params=dict(params),
                   experiment=load_settings().mlops_experiment)
    return {"run_id": result.run_id, "metrics": result.metrics}


def evaluate_step(*, card_path: Path, work_dir: str, run_id: str,
                  tolerance: float = 1e-6) -> dict[str, Any]:
    """Re-score the logged model on the held-out rows and check the card's floors.

    Loading the model back from the tracking server proves the artifact is usable,
    and comparing with the metrics logged at training time proves it is the model
    that was evaluated.
    """
    card = load_card(card_path)
    data = load_prepared(card, work_dir)
    _tracking_uri()
    model = mlflow.sklearn.load_model(f"runs:/{run_id}/{registry.MODEL_ARTIFACT}")
    metrics = evaluate(model, data.x_holdout, data.y_holdout, task=data.spec.task)
    logged = mlflow.get_run(run_id).data.metrics
    for name, value in metrics.items():
        if name in logged and not math.isclose(value, logged[name], rel_tol=tolerance,
                                               abs_tol=tolerance):
            raise NegativeVerdict(f"run {run_id}: {name} re-computed as {value:.6g} but logged as "
                                  f"{logged[name]:.6g}; the logged model is not the one evaluated")
    misses = [miss for name, bound in sorted(card.promotion.floors.items())
              if (miss := _floor_miss(name, bound, metrics.get(name))) is not None]
    if misses:
        raise NegativeVerdict(f"run {run_id}: " + "; ".join(misses))
    return {"run_id": run_id, "metrics": metrics}


def _floor_miss(metric: str, bound: float, value: float | None) -> str | None:
    if value is None:
        return f"{metric} has a floor but was not computed"
    greater = GREATER_IS_BETTER[metric]
    if (value >= bound) if greater else (value <= bound):
        return None
    side = "at least" if greater else "at most"
    return f"{metric} is {value:.4g}, the card's floor is {side} {bound:g}"


def register_step(*, card_path: Path, run_id: str, registered_by: str) -> dict[str, Any]:
    """Register the run's model as a new version (or reuse its version); never Production."""
    card = load_card(card_path)
    uri = _tracking_uri()
    client = registry.client(uri)
    version = registry.register_run(client, card.model.name, run_id)
    client.set_model_version_tag(card.model.name, version.version, REGISTERED_BY_TAG,
                                 registered_by)
    return {"name": card.model.name, "version": str(version.version), "run_id": run_id}


def cleanup_step(*, work_dir: str) -> dict[str, Any]:
    """Remove the run's work dir (the data is reproducible, the model lives in MLflow)."""
    fs, path = fsspec.core.url_to_fs(work_dir)
    existed = bool(fs.exists(path))
    if existed:
        fs.rm(path, recursive=True)
    return {"work_dir": work_dir, "removed": existed}
