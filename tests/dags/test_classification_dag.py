"""Classification through both DAGs: the built-in rand_health example, trained by the
training DAG, served, and scored by the inference DAG with each class's probability.

The card is `examples/rand_health/model_card.yaml` under a model name of its own. The
inference DAG's api engine asks the server for probabilities (the card's dataset is a
classification), and its rows equal `/predict?probabilities=true` for the same rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from pipeline.gitops import registry
from pipeline.serving_client import to_records
from pipeline.stages.batch_files import InputColumn
from pipeline.stages.batch_model import model_inputs
from pipeline.stages.datasets import load_spec
from pipeline.stages.score_batch import dated_output
from tests.conftest import TrackingServer
from tests.dags.conftest import ServingApi, load_dag, start_serving
from tests.utils import REPO
from tests.utils.cards import unique_name
from tests.utils.registry import move_production

pytestmark = pytest.mark.integration

DATE = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
ROWS = 120


@pytest.fixture(scope="module")
def health_card(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    name = unique_name("dag-health")
    text = (REPO / "examples/rand_health/model_card.yaml").read_text().replace(
        "name: self-rated-health", f"name: {name}")
    path = tmp_path_factory.mktemp("health") / "model_card.yaml"
    path.write_text(text)
    return path, name


@pytest.fixture(scope="module")
def health_serving(health_card: tuple[Path, str], tracking_server: TrackingServer,
                   tmp_path_factory: pytest.TempPathFactory,
                   airflow_home: Path) -> Iterator[ServingApi]:
    """The training DAG's classifier made Production, and the serving API on it."""
    card, name = health_card
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**tracking_server.env,
                           "MLOPS_EXPERIMENT": f"dags-{uuid.uuid4().hex[:8]}"}.items():
            patch.setenv(key, value)
        run = load_dag("training_dag", "training_dag").test(logical_date=DATE, run_conf={
            "card": str(card), "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 20}, "work_root": str(tmp_path_factory.mktemp("work")),
            "engine": "local"})  # dag.test keeps a param an earlier run of the DAG set
        assert str(run.state) == "success"
        (version,) = MlflowClient(tracking_server.uri).search_model_versions(f"name='{name}'")
        # The manifest's download resolves mlflow-artifacts: URIs by the environment's server.
        move_production(registry.client(tracking_server.uri), name, version.version,
                        tracking_uri=tracking_server.uri)
    api = start_serving(home=tmp_path_factory.mktemp("serving"), env=tracking_server.env,
                        model_name=name)
    try:
        yield api
    finally:
        api.process.stop()


def test_inference_dag_writes_a_classifiers_labels_and_probabilities(
        health_serving: ServingApi, health_card: tuple[Path, str], tmp_path: Path,
        airflow_home: Path) -> None:
    card, name = health_card
    spec = load_spec("rand_health")
    assert spec.load_builtin is not None
    frame = spec.load_builtin().iloc[:ROWS].copy()
    frame.insert(0, "row_id", [f"person-{i:04d}" for i in range(len(frame))])
    batch = tmp_path / "batch.csv"
    frame.to_csv(batch, index=False)

    run = load_dag("inference_dag", "inference_dag").test(logical_date=DATE, run_conf={
        "input": str(batch), "output_dir": str(tmp_path / "out"),
        "serving_url": health_serving.url, "card": str(card), "chunk_size": 50,
        "attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 10, "engine": "api"})
    assert str(run.state) == "success"
    scores = pd.read_parquet(dated_output(str(tmp_path / "out"), DATE))
    assert scores["row_id"].tolist() == frame["row_id"].tolist()

    columns = [InputColumn(c.name, "double" if c.kind == "numeric" else "string")
               for c in spec.features]
    records = to_records(model_inputs(frame, columns))  # as training typed them
    answer = requests.post(f"{health_serving.url}/predict", params={"probabilities": "true"},
                           json={"records": records}, timeout=60).json()
    assert scores["prediction"].tolist() == answer["predictions"]
    probabilities = [f"probability_{label}" for label in answer["classes"]]
    assert [c for c in scores.columns if c.startswith("probability_")] == probabilities
    np.testing.assert_allclose(scores[probabilities].to_numpy(),
                               np.asarray(answer["probabilities"]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores[probabilities].sum(axis=1), 1.0, atol=1e-6)
    assert set(scores["model_name"]) == {name}
