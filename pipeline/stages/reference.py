"""The training reference: the rows a model was validated on, stored with its run.

Drift is only meaningful against what the model was checked on, so training writes its
validation rows (the features, the target, and the model's own predictions on them) as
one Parquet artifact of the run, `reference/validation.parquet`. The file's metadata
names the features and their kinds (numeric or categorical), the target and the task,
so `mlops monitor` needs neither the dataset module nor the data to read it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import DataError

REFERENCE_DIR = "reference"
REFERENCE_FILE = "validation.parquet"
REFERENCE_ARTIFACT = f"{REFERENCE_DIR}/{REFERENCE_FILE}"
"""Where a run keeps its reference (`runs:/<run_id>/reference/validation.parquet`)."""
PREDICTION = "prediction"
METADATA_KEY = b"mlops.reference"


@dataclass(frozen=True)
class Reference:
    """The validation rows of a run: features, target, the model's predictions."""

    frame: pd.DataFrame
    features: dict[str, str]
    """Feature name to kind (`numeric` or `categorical`), in the model's order."""
    target: str
    task: str

    @property
    def predictions(self) -> pd.Series:
        return self.frame[PREDICTION]


def reference_frame(model: Any, x_validation: pd.DataFrame, y_validation: pd.Series
                    ) -> pd.DataFrame:
    """The validation features, the target and the model's predictions, side by side."""
    frame = x_validation.copy()
    frame[y_validation.name] = y_validation.to_numpy()
    frame[PREDICTION] = model.predict(x_validation)
    return frame.reset_index(drop=True)


def write_reference(path: Path, frame: pd.DataFrame, *, features: dict[str, str],
                    target: str, task: str) -> None:
    """One Parquet file whose metadata says what each column is."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    about = json.dumps({"features": features, "target": target, "task": task,
                        "prediction": PREDICTION})
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           METADATA_KEY: about.encode()})
    pq.write_table(table, path, compression="zstd")


def read_reference(path: Path, *, where: str) -> Reference:
    """A reference file back; `where` names it in a one-line error."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise DataError(f"{where}: cannot read the training reference ({err})") from err
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise DataError(f"{where}: not a training reference (no {METADATA_KEY.decode()} "
                        "metadata)")
    about = json.loads(raw)
    return Reference(frame=table.to_pandas(), features=dict(about["features"]),
                     target=str(about["target"]), task=str(about["task"]))


def log_reference(model: Any, *, x_validation: pd.DataFrame, y_validation: pd.Series,
                  kinds: dict[str, str], task: str) -> None:
    """Write the reference as an artifact of the active MLflow run."""
    import mlflow

    frame = reference_frame(model, x_validation, y_validation)
    with tempfile.TemporaryDirectory(prefix="reference-") as tmp:
        path = Path(tmp) / REFERENCE_FILE
        write_reference(path, frame, features=kinds, target=str(y_validation.name), task=task)
        mlflow.log_artifact(str(path), artifact_path=REFERENCE_DIR)
