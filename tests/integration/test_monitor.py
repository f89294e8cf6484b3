"""`mlops monitor` against a real MLflow server, on windows written through the log's API.

The model is trained and made Production by `mlops train` (which stores its validation
rows as the run's reference); two windows of 600 validation rows go through the
prediction log's writer as the server will send them: unshifted, then with `carat`
scaled by 1.8. The first must pass (exit 0), the second drift (exit 1) with `carat`
among the drifted features.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from pipeline.gitops.card import load_card, prepare_data
from pipeline.stages.reference import REFERENCE_ARTIFACT
from serving.prediction_log import ModelInfo, PredictionLog
from tests.conftest import TrackingServer
from tests.utils import run_mlops
from tests.utils.cards import unique_name, write_card

pytestmark = pytest.mark.integration

ROWS = 600
PER_REQUEST = 10


@dataclass(frozen=True)
class Logged:
    card: Path
    log: Path
    env: dict[str, str]
    model: str
    run_id: str
    unshifted: tuple[str, str]
    shifted: tuple[str, str]
    truth: pd.DataFrame  # request_id, row, price of the unshifted window


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat()


def _send(log: PredictionLog, info: ModelInfo, model: object, rows: pd.DataFrame,
          prefix: str) -> list[tuple[str, int]]:
    """Rows as /predict requests of PER_REQUEST rows each, logged through the API."""
    keys = []
    for start in range(0, len(rows), PER_REQUEST):
        part = rows.iloc[start:start + PER_REQUEST]
        records = part.to_dict("records")
        predictions = model.predict(part)  # type: ignore[attr-defined]
        request_id = f"{prefix}-{start // PER_REQUEST:03d}"
        log.record(info, request_id, records, predictions)
        keys += [(request_id, i) for i in range(len(part))]
    return keys


@pytest.fixture(scope="module")
def logged(tracking_server: TrackingServer, tmp_path_factory: pytest.TempPathFactory) -> Logged:
    home = tmp_path_factory.mktemp("monitor")
    name = unique_name("it-monitor")
    card = write_card(home, name)
    env = {**tracking_server.env, "MLOPS_EXPERIMENT": "it-monitor", "MLOPS_HOME": str(home)}
    done = run_mlops("train", "--estimator", "hist_gradient_boosting", "--param", "max_iter=40",
                     "--register", "--promote", "--json", "--card", str(card), env=env)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    data = prepare_data(load_card(card))
    sample = data.validation.sample(ROWS, random_state=7).reset_index(drop=True)
    features = data.spec.feature_names
    with pytest.MonkeyPatch.context() as patch:  # the server's URI and login, if it has one
        for key, value in tracking_server.env.items():
            patch.setenv(key, value)
        model = mlflow.sklearn.load_model(f"models:/{name}@production")
    info = ModelInfo(name=name, version="1", run_id=run_id, runtime="sklearn")
    log_dir = home / "predictions"
    with PredictionLog(str(log_dir)) as log:
        began = time.time()
        keys = _send(log, info, model, sample[features], "plain")
        middle = time.time()
        time.sleep(0.01)
        shifted = sample[features].copy()
        shifted["carat"] = shifted["carat"] * 1.8
        _send(log, info, model, shifted, "shifted")
        ended = time.time() + 0.01
    truth = pd.DataFrame(keys, columns=["request_id", "row"])
    truth["price"] = sample["price"].to_numpy()
    return Logged(card=card, log=log_dir, env=env, model=name, run_id=run_id,
                  unshifted=(_iso(began), _iso(middle)), shifted=(_iso(middle), _iso(ended)),
                  truth=truth)


def _monitor(logged: Logged, window: tuple[str, str], *args: str):
    return run_mlops("monitor", "--from", window[0], "--to", window[1], "--log",
                     str(logged.log), "--card", str(logged.card), *args, env=logged.env)


def test_training_stores_the_validation_rows_as_the_reference(
        logged: Logged, tracking_server: TrackingServer, tmp_path: Path) -> None:
    path = MlflowClient(tracking_server.uri).download_artifacts(
        logged.run_id, REFERENCE_ARTIFACT, str(tmp_path))
    reference = pq.read_table(path)
    data = prepare_data(load_card(logged.card))
    assert reference.num_rows == len(data.validation)
    assert set(reference.column_names) == {*data.spec.feature_names, "price", "prediction"}


def test_unshifted_traffic_passes_and_shifted_carat_drifts(logged: Logged,
                                                            tmp_path: Path) -> None:
    calm = _monitor(logged, logged.unshifted, "--json", str(tmp_path / "calm.json"))
    assert calm.returncode == 0, calm.stderr
    assert calm.stdout.startswith("no drift: 0 of 9 features drifted")
    summary = json.loads((tmp_path / "calm.json").read_text())
    assert summary["drift"] is False
    assert summary["rows"] == ROWS
    assert summary["model_version"] == "1"

    shifted = _monitor(logged, logged.shifted, "--json", str(tmp_path / "shifted.json"),
                       "--report", str(tmp_path / "report.html"),
                       "--prometheus", str(tmp_path / "monitor.prom"))
    assert shifted.returncode == 1, shifted.stderr
    assert shifted.stdout.startswith("DRIFT: ")
    assert shifted.stderr.strip().endswith("error: drift found")
    summary = json.loads((tmp_path / "shifted.json").read_text())
    assert summary["drift"] is True
    assert summary["rows"] >= 500
    drifted = {f["name"] for f in summary["features"] if f["drifted"]}
    assert "carat" in drifted
    assert {"x", "y", "z", "cut", "color", "clarity"}.isdisjoint(drifted), \
        "only carat was changed"
    assert summary["prediction"]["drifted"] is True
    carat = next(f for f in summary["features"] if f["name"] == "carat")
    assert carat["statistic"] < carat["threshold"] == 0.05
    html = (tmp_path / "report.html").read_text()
    assert "Drift detected" in html
    assert "carat" in html
    assert "data:image/png;base64," in html
    gauges = (tmp_path / "monitor.prom").read_text()
    assert f'mlops_monitor_drift{{model="{logged.model}",version="1"}} 1.0' in gauges
    assert 'column="carat"' in gauges


def test_labels_give_the_live_metric_beside_the_gates_and_decay_fails(
        logged: Logged, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    logged.truth.to_csv(labels, index=False)
    done = _monitor(logged, logged.unshifted, "--labels", str(labels), "--json",
                    str(tmp_path / "live.json"))
    assert done.returncode == 0, done.stderr
    live = json.loads((tmp_path / "live.json").read_text())["live_metric"]
    assert live["metric"] == "rmse"
    assert live["rows"] == ROWS
    assert live["low"] <= live["value"] <= live["high"]
    assert live["gate_value"] > 0
    assert "no gate verdict on version 1" in live["gate_source"]
    assert live["decayed"] is False

    worse = logged.truth.assign(price=logged.truth["price"] * 1.5)
    worse.to_csv(labels, index=False)
    decayed = _monitor(logged, logged.unshifted, "--labels", str(labels))
    assert decayed.returncode == 1, decayed.stderr
    assert "DECAY" in decayed.stdout
    assert decayed.stderr.strip().endswith("error: the live metric decayed")


def test_bad_input_is_one_line_and_exit_2(logged: Logged, tmp_path: Path) -> None:
    empty = _monitor(logged, ("2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"))
    assert empty.returncode == 2
    assert empty.stderr.strip().startswith("error: ")
    assert "no logged rows from 2020-01-01 00:00:00 to 2020-01-02 00:00:00 UTC" in empty.stderr

    labels = tmp_path / "strangers.csv"
    pd.DataFrame({"request_id": ["nobody"], "row": [0], "price": [1.0]}).to_csv(labels,
                                                                                 index=False)
    unmatched = _monitor(logged, logged.unshifted, "--labels", str(labels))
    assert unmatched.returncode == 2
    assert "none of its 1 keys (request_id + row) matches a logged row" in unmatched.stderr

    stray = logged.log / "prices.parquet"
    pq.write_table(pa.table({"price": np.arange(3.0)}), stray)
    try:
        other = _monitor(logged, logged.unshifted)
    finally:
        stray.unlink()
    assert other.returncode == 2
    assert other.stderr.strip() == (f"error: {stray}: not a prediction log (no schema version "
                                    "in its metadata); move it out of the prediction log")
    for done in (empty, unmatched, other):
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
