"""`mlops score` on its three engines: the same rows, the same model, verified where loaded.

A real MLflow server, the model promoted with its manifest (bootstrap), a real serving
process for the api engine, and Apache Spark in local mode with a real JVM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipeline.gitops import registry
from pipeline.stages.data import prepare
from pipeline.stages.datasets import load_spec
from tests.conftest import TrackingServer, TrackingServers
from tests.serving.conftest import serving_process
from tests.utils import MLOPS, REPO, missing_service, run_mlops
from tests.utils.cards import unique_name, write_card

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPARK_ROWS = 50_000


@dataclass(frozen=True)
class Scoring:
    server: TrackingServer
    name: str
    card: Path
    batch: Path  # parquet with an `id` column and the features

    def score(self, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
        return run_mlops("score", *args, "--card", str(self.card), "--json",
                         env={**self.server.env, **(env or {})})


def _batch(path: Path, rows: int) -> Path:
    """Demo-like rows (features only, plus an id), repeated up to `rows`."""
    data = prepare(load_spec("diamonds"))
    features = pd.concat([data.x_test, data.x_validation, data.x_train]).reset_index(drop=True)
    repeated = features.iloc[np.arange(rows) % len(features)].reset_index(drop=True)
    repeated.insert(0, "id", np.arange(rows))
    repeated.to_parquet(path, index=False)
    return path


def _setup(server: TrackingServer, tmp: Path, rows: int) -> Scoring:
    name = unique_name("score")
    card = write_card(tmp, name)
    boot = run_mlops("train", "--estimator", "ridge", "--register", "--promote",
                     "--card", str(card), env=server.env)
    assert boot.returncode == 0, boot.stderr
    return Scoring(server=server, name=name, card=card, batch=_batch(tmp / "batch.parquet", rows))


@pytest.fixture
def scoring(tracking_server: TrackingServer, tmp_path: Path) -> Scoring:
    return _setup(tracking_server, tmp_path, 5_000)


@pytest.fixture(scope="module")
def spark_scoring(tracking_servers: TrackingServers,
                  tmp_path_factory: pytest.TempPathFactory) -> Scoring:
    if shutil.which("java") is None:
        missing_service("no Java for Spark: sudo make services (openjdk-17-jre-headless)")
    return _setup(tracking_servers.get("sqlite"), tmp_path_factory.mktemp("spark"), SPARK_ROWS)


def _read(folder: Path) -> pd.DataFrame:
    assert (folder / "_SUCCESS").exists()
    return pd.read_parquet(folder).sort_values("id").reset_index(drop=True)


def test_local_and_api_engines_score_the_same_rows_as_predict(scoring: Scoring,
                                                              tmp_path: Path) -> None:
    done = scoring.score(str(scoring.batch), str(tmp_path / "local"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"output": str(tmp_path / "local"), "rows": 5_000,
                                       "engine": "local", "model_versions": ["1"],
                                       "runtime": "onnx"}
    local = _read(tmp_path / "local")
    assert list(local.columns) == ["id", "prediction", "model_name", "model_version",
                                   "model_run_id"]
    assert local["id"].tolist() == list(range(5_000))
    by_sklearn = scoring.score(str(scoring.batch), str(tmp_path / "sklearn"),
                               "--runtime", "sklearn")
    assert by_sklearn.returncode == 0, by_sklearn.stderr
    assert json.loads(by_sklearn.stdout)["runtime"] == "sklearn"

    sample = tmp_path / "sample.parquet"
    pd.read_parquet(scoring.batch).head(500).to_parquet(sample, index=False)
    with serving_process(tmp_path / "serving", scoring.server.env, scoring.name) as server:
        api = scoring.score(str(sample), str(tmp_path / "api"), "--engine", "api",
                            env={"MLOPS_SERVING_URL": server.url})
        assert api.returncode == 0, api.stderr
        rows = pd.read_parquet(sample).drop(columns="id").head(50)
        records = [{k: (None if pd.isna(v) else v) for k, v in r.items()}
                   for r in rows.to_dict(orient="records")]
        served = server.predict(records).json()["predictions"]
    api_scores = _read(tmp_path / "api")
    # The server and the local engine both answer with the verified compiled twin.
    np.testing.assert_array_equal(api_scores["prediction"], local["prediction"].head(500))
    np.testing.assert_array_equal(served, local["prediction"].head(50))
    # sklearn: within the twin's verified tolerance, 1e-6 of the largest value.
    tolerance = 1e-6 * max(1.0, float(local["prediction"].abs().max()))
    np.testing.assert_allclose(_read(tmp_path / "sklearn")["prediction"], local["prediction"],
                               rtol=0, atol=tolerance)


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: pd.DataFrame({"id": [1], "carat": [0.3]}).to_parquet(p),
     "has no column cut and 7 more"),
    (lambda p: pd.read_parquet(p.parent / "batch.parquet").head(10).assign(carat="big")
     .to_parquet(p), "column carat holds text, but the model takes double"),
    (lambda p: p.write_text(""), "is empty"),
])
def test_bad_input_fails_in_one_line_and_writes_nothing(scoring: Scoring, tmp_path: Path,
                                                        make: object, message: str) -> None:
    bad = tmp_path / ("bad.csv" if "empty" in message else "bad.parquet")
    make(bad)  # type: ignore[operator]
    done = scoring.score(str(bad), str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: score:"), done.stderr
    assert message in lines[-1]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_spark_engine_equals_the_local_engine_row_for_row(spark_scoring: Scoring,
                                                         tmp_path: Path) -> None:
    spark = spark_scoring.score(str(spark_scoring.batch), str(tmp_path / "spark"),
                                "--engine", "spark", "--spark-master", "local[2]")
    assert spark.returncode == 0, spark.stderr
    assert json.loads(spark.stdout)["rows"] == SPARK_ROWS
    assert json.loads(spark.stdout)["runtime"] == "onnx"  # each executor checked the twin
    local = spark_scoring.score(str(spark_scoring.batch), str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    on_spark, here = _read(tmp_path / "spark"), _read(tmp_path / "local")
    assert len(list((tmp_path / "spark").glob("part-*.parquet"))) >= 1
    assert on_spark["id"].tolist() == here["id"].tolist()
    np.testing.assert_allclose(on_spark["prediction"], here["prediction"], rtol=1e-12)
    assert set(on_spark["model_version"]) == {"1"}


def _tamper(scoring: Scoring) -> None:
    """Replace the Production version's model file with another valid skops model."""
    client = MlflowClient(scoring.server.uri, registry_uri=scoring.server.uri)
    other = run_mlops("train", "--estimator", "dummy", "--json", "--card", str(scoring.card),
                      env=scoring.server.env)
    assert other.returncode == 0, other.stderr
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        for key, value in scoring.server.env.items():
            patch.setenv(key, value)
        donor = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"runs:/{json.loads(other.stdout)['run_id']}/model", dst_path=tmp,
            tracking_uri=scoring.server.uri))
        production = client.get_model_version_by_alias(scoring.name, "production")
        client.log_model_artifact(registry.logged_model_id(client, str(production.run_id)),
                                  str(donor / "model.skops"))


def test_a_killed_spark_job_leaves_no_output(spark_scoring: Scoring, tmp_path: Path) -> None:
    output = tmp_path / "killed"
    process = subprocess.Popen(
        [MLOPS, "score", str(spark_scoring.batch), str(output), "--engine", "spark",
         "--spark-master", "local[1]", "--card", str(spark_scoring.card)],
        env={**os.environ, **spark_scoring.server.env}, cwd=REPO, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not [p for p in tmp_path.iterdir() if p.name.startswith(".killed.staging")]:
        assert process.poll() is None, "the job ended before it started writing"
        assert time.monotonic() < deadline, "the job never started writing"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
    assert not output.exists(), "a killed job must leave nothing where readers look"


def test_the_spark_path_refuses_a_tampered_model(spark_scoring: Scoring,
                                                 tmp_path: Path) -> None:
    # A model of its own: the module's Production stays intact for the tests after this one.
    tampered = _setup(spark_scoring.server, tmp_path, 5_000)
    _tamper(tampered)
    done = tampered.score(str(tampered.batch), str(tmp_path / "spark"),
                          "--engine", "spark", "--spark-master", "local[2]")
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "refused: model.skops: expected sha256" in line, done.stderr
    assert not (tmp_path / "spark").exists()


def test_both_engines_log_every_scored_row_as_the_server_does(spark_scoring: Scoring,
                                                              tmp_path: Path) -> None:
    """`--prediction-log`: each scored row once, in the server's record, the input's
    ID column (the card's monitoring.id_column) as the row's ID."""
    import json as json_

    import pyarrow.dataset as ds

    from serving.prediction_log import schema_problem

    card = write_card(tmp_path, spark_scoring.name, replace={"id_column: null": "id_column: id"})
    logs = {}
    for engine, extra in (("local", ()), ("spark", ("--spark-master", "local[2]"))):
        log = tmp_path / f"log-{engine}"
        done = run_mlops("score", str(spark_scoring.batch), str(tmp_path / engine), "--engine",
                         engine, *extra, "--prediction-log", str(log), "--card", str(card),
                         "--json", env=spark_scoring.server.env)
        assert done.returncode == 0, done.stderr
        dataset = ds.dataset(str(log), format="parquet", ignore_prefixes=[".", "_"])
        assert all(schema_problem(f.physical_schema) is None for f in dataset.get_fragments())
        logs[engine] = dataset.to_table().to_pandas()
    scored = _read(tmp_path / "local")
    for engine, logged in logs.items():
        assert len(logged) == SPARK_ROWS, engine
        assert set(logged["source"]) == {f"score:{engine}"}
        assert set(logged["model_version"]) == {"1"}
        by_id = logged.assign(id=logged["id"].astype(int)).sort_values("id")
        assert by_id["id"].tolist() == scored["id"].tolist(), "each row once, with its ID"
        np.testing.assert_allclose([json_.loads(p) for p in by_id["prediction"]],
                                   scored["prediction"], rtol=1e-9)
    first = json_.loads(logs["local"].sort_values("id")["inputs"].iloc[0])
    assert set(first) == set(load_spec("diamonds").feature_names)
