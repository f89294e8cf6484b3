"""`mlops monitor` as one function: a window of the log against the version's reference.

The version is Production (or the one asked for); its run's training reference gives
the features, their kinds and the validation rows; the window's rows of that version
are tested column by column (`drift`); labels, when given, give the live metric beside
the value the gate measured for that version (`labels`). The result is one typed value
(`MonitorResult`), written as JSON, HTML and Prometheus gauges by `outputs`.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.errors import DataError, RegistryError
from pipeline.gitops import registry
from pipeline.gitops.card import ModelCard
from pipeline.gitops.verdict import Verdict
from pipeline.monitoring.drift import ColumnDrift, column_drift
from pipeline.monitoring.labels import LiveMetric, join_labels, live_metric, read_labels
from pipeline.monitoring.window import LoggedRows, Window, read_window
from pipeline.stages.reference import PREDICTION, REFERENCE_ARTIFACT, Reference, read_reference

SUMMARY_VERSION = 1


@dataclass(frozen=True)
class MonitorResult:
    """What one run of the monitor found: the JSON summary's one shape."""

    model_name: str
    model_version: str
    run_id: str
    window: Window
    rows: int
    reference_rows: int
    features: tuple[ColumnDrift, ...]
    prediction: ColumnDrift
    correction: str
    live: LiveMetric | None
    checked_at: str
    frames: tuple[Any, Any] | None = field(default=None, compare=False, repr=False)
    """The reference and the window (features and prediction), for the report's charts."""

    @property
    def drift(self) -> bool:
        return self.prediction.drifted or any(f.drifted for f in self.features)

    @property
    def decay(self) -> bool:
        return self.live is not None and self.live.decayed

    @property
    def alarm(self) -> bool:
        return self.drift or self.decay

    def verdict(self) -> str:
        """The one line: what was found, on what."""
        drifted = [f.name for f in self.features if f.drifted]
        parts = [f"{len(drifted)} of {len(self.features)} features drifted"
                 + (f" ({', '.join(drifted)})" if drifted else ""),
                 "prediction drifted" if self.prediction.drifted else "prediction stable"]
        if self.live is not None:
            parts.append(self.live.line() + (": decayed" if self.live.decayed else ""))
        head = "DRIFT" if self.drift else "no drift"
        if self.decay:
            head += ", DECAY"
        return (f"{head}: " + "; ".join(parts) + f"; {self.rows:,} rows of {self.model_name} "
                f"version {self.model_version} from {self.window.line()}")

    def to_json(self) -> dict[str, Any]:
        return {
            "summary_version": SUMMARY_VERSION,
            "drift": self.drift, "decay": self.decay, "alarm": self.alarm,
            "verdict": self.verdict(),
            "model_name": self.model_name, "model_version": self.model_version,
            "run_id": self.run_id,
            "from": self.window.start.isoformat(), "to": self.window.end.isoformat(),
            "rows": self.rows, "reference_rows": self.reference_rows,
            "correction": self.correction,
            "features": [f.to_json() for f in self.features],
            "prediction": self.prediction.to_json(),
            "live_metric": self.live.to_json() if self.live is not None else None,
            "checked_at": self.checked_at,
        }


def resolve_version(mlflow_client: MlflowClient, name: str, version: str | None) -> Any:
    """The version to monitor: the one asked for, else Production."""
    if version is None:
        found = registry.production_version(mlflow_client, name)
        if found is None:
            raise RegistryError(f"{name} has no {registry.PRODUCTION} version to monitor "
                                "(pass --version)")
        return found
    try:
        return mlflow_client.get_model_version(name, version)
    except MlflowException as err:
        raise RegistryError(f"--version {version}: {name} has no such version") from err


def load_reference(mlflow_client: MlflowClient, run_id: str) -> Reference:
    """The run's training reference (written by `mlops train` since the monitor exists)."""
    with tempfile.TemporaryDirectory(prefix="mlops-reference-") as tmp:
        try:
            path = mlflow_client.download_artifacts(run_id, REFERENCE_ARTIFACT, tmp)
        except (MlflowException, OSError) as err:
            raise RegistryError(f"run {run_id} has no training reference ({REFERENCE_ARTIFACT}):"
                                " it was trained before the monitor existed; retrain it") from err
        return read_reference(Path(path), where=f"run {run_id}: {REFERENCE_ARTIFACT}")


def gate_value(mlflow_client: MlflowClient, version: Any, metric: str) -> tuple[float | None, str]:
    """What the gate measured for this version on the sealed rows (the verdict promote
    recorded on it), else the run's validation metric, saying which."""
    text = (version.tags or {}).get(registry.PROMOTE_VERDICT_TAG)
    if text:
        try:
            row = Verdict.from_tag(text).metrics.get(metric)
        except (ValueError, TypeError, KeyError):
            row = None
        if row is not None:
            return float(row.candidate), (f"on the sealed test rows, the verdict promote "
                                          f"recorded on version {version.version}")
    logged = mlflow_client.get_run(version.run_id).data.metrics.get(f"val_{metric}")
    if logged is not None:
        return float(logged), (f"on validation at training (no gate verdict on version "
                               f"{version.version})")
    return None, "none recorded"


def monitor(mlflow_client: MlflowClient, card: ModelCard, *, log: str, window: Window,
            version: str | None = None, labels: Path | None = None) -> MonitorResult:
    """Test the window's traffic of the version against its training reference."""
    found = resolve_version(mlflow_client, card.model.name, version)
    reference = load_reference(mlflow_client, found.run_id)
    rows = read_window(log, window, model_name=card.model.name, version=str(found.version))
    if len(rows.records) < card.monitoring.min_rows:
        raise DataError(f"{log}: {len(rows.records)} logged row(s) of {card.model.name} version "
                        f"{found.version} from {window.line()}; the card's monitoring.min_rows "
                        f"is {card.monitoring.min_rows}")
    frames = _frames(reference, rows)
    features = column_drift(*frames, reference.features | {
        PREDICTION: _prediction_kind(reference)}, card.monitoring)
    live = None
    if labels is not None:
        joined = join_labels(read_labels(labels), rows.records, target=reference.target,
                             id_column=card.monitoring.id_column, where=f"--labels {labels}")
        value, source = gate_value(mlflow_client, found, card.promotion.metric)
        live = live_metric(joined, card, task=reference.task, gate_value=value,
                           gate_source=source)
    return MonitorResult(
        model_name=card.model.name, model_version=str(found.version), run_id=found.run_id,
        window=window, rows=len(rows.records), reference_rows=len(reference.frame),
        features=tuple(f for f in features if f.name != PREDICTION),
        prediction=next(f for f in features if f.name == PREDICTION),
        correction=card.monitoring.correction, live=live,
        checked_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), frames=frames)


def _prediction_kind(reference: Reference) -> str:
    return "numeric" if reference.task == "regression" else "categorical"


def _frames(reference: Reference, rows: LoggedRows) -> tuple[Any, Any]:
    """Reference and window side by side: features plus the prediction column."""
    window = rows.features.copy()
    window[PREDICTION] = rows.records["prediction"].to_numpy()
    return reference.frame, window
