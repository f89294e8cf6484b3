"""Hand-over of prepared data between scheduler tasks, through files.

A scheduler such as Airflow runs each task in its own process (often on another
machine), and what tasks pass to each other (XCom) must stay small. So the prepared
data goes to a work dir of the DAG run as parquet (train.parquet, validation.parquet,
test.parquet, prepared.json) and comes back with the same dtypes; tasks pass only the path.

The work dir is a local folder or any fsspec URL, e.g. `s3://bucket/mlops-work`: on
MWAA or a multi-worker Celery/ECS setup the tasks of one run may land on different
machines, so the hand-over must live on shared storage.
"""

from __future__ import annotations

import json
import re
from typing import Any

import fsspec
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.stages.data import CleansingReport, PreparedData, validate
from pipeline.stages.datasets import DatasetSpec
from pipeline.stages.features import build_preprocessor

TRAIN_FILE = "train.parquet"
VALIDATION_FILE = "validation.parquet"
TEST_FILE = "test.parquet"
PREPARED_FILE = "prepared.json"
FEATURES_FILE = "features.json"


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


def write_prepared(data: PreparedData, work_dir: str) -> dict[str, Any]:
    """Write the three sets and what produced them; return the small summary for XCom."""
    fs, path = fsspec.core.url_to_fs(work_dir)
    fs.makedirs(path, exist_ok=True)
    for frame, name in ((data.train, TRAIN_FILE), (data.validation, VALIDATION_FILE),
                        (data.test, TEST_FILE)):
        _write_parquet(frame, _join(work_dir, name))
    _write_json(work_dir, PREPARED_FILE, {
        "dataset": data.spec.name, "data_hash": data.data_hash, "source": data.source,
        "rows_in": data.report.rows_in, "rows_out": data.report.rows_out,
        "counts": data.report.counts})
    return {"work_dir": work_dir, "rows_train": len(data.train),
            "rows_validation": len(data.validation), "rows_test": len(data.test),
            "data_hash": data.data_hash}


def read_prepared(spec: DatasetSpec, work_dir: str) -> PreparedData:
    """The prepared data written by `write_prepared`, with the same dtypes as in memory."""
    try:
        with fsspec.open(_join(work_dir, PREPARED_FILE), "r", encoding="utf-8") as handle:
            meta = json.loads(handle.read())
        train_rows, validation_rows, test_rows = (
            _read_parquet(_join(work_dir, name))
            for name in (TRAIN_FILE, VALIDATION_FILE, TEST_FILE))
    except FileNotFoundError as err:
        raise ConfigError(f"{work_dir}: no prepared data (run the prepare step first)") from err
    if meta["dataset"] != spec.name:
        raise ConfigError(f"{work_dir}: prepared for dataset {meta['dataset']!r}, "
                          f"but the card names {spec.name!r}")
    report = CleansingReport(rows_in=meta["rows_in"], rows_out=meta["rows_out"],
                             counts=dict(meta["counts"]))
    return PreparedData(spec=spec, train=validate(train_rows, spec),
                        validation=validate(validation_rows, spec),
                        test=validate(test_rows, spec), report=report,
                        data_hash=meta["data_hash"], source=str(meta.get("source", "")))


def write_feature_summary(data: PreparedData, work_dir: str) -> dict[str, Any]:
    """Fit the feature transformer on the training rows: a cheap check before training.

    The logged model carries its own copy of this transformer (features and
    estimator are one sklearn Pipeline), so serving and batch scoring take raw
    columns; this records what the features become and fails early if the data
    cannot be featurized.
    """
    transformer = build_preprocessor(data.spec).fit(data.x_train)
    names = [str(n) for n in transformer.get_feature_names_out()]
    summary = {"inputs": data.spec.feature_names, "outputs": names}
    _write_json(work_dir, FEATURES_FILE, summary)
    return {"features_in": len(summary["inputs"]), "features_out": len(names)}


def cleanup_step(*, work_dir: str) -> dict[str, Any]:
    """Remove the run's work dir (the data is reproducible, the model lives in MLflow)."""
    fs, path = fsspec.core.url_to_fs(work_dir)
    existed = bool(fs.exists(path))
    if existed:
        fs.rm(path, recursive=True)
    return {"work_dir": work_dir, "removed": existed}
