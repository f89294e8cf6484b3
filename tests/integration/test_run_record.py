"""Every run can be read on its own: its name, its data, what mattered, its errors; and
`mlops runs` ranks the runs on the card's data by the validation metric."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import TrackingServer
from tests.utils import run_mlops
from tests.utils.cards import write_card

pytestmark = pytest.mark.integration


def test_a_run_names_its_estimator_data_importance_and_errors(
        tracking_server: TrackingServer, tmp_path: Path) -> None:
    experiment = f"it-record-{uuid.uuid4().hex[:8]}"
    model = f"it-record-{uuid.uuid4().hex[:8]}"
    card = write_card(tmp_path, model)
    env = {**tracking_server.env, "MLOPS_EXPERIMENT": experiment}

    def train(estimator: str) -> dict:  # type: ignore[type-arg]
        done = run_mlops("train", "--estimator", estimator, "--json", "--card", str(card),
                         env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    ridge, dummy = train("ridge"), train("dummy")
    client = MlflowClient(tracking_server.uri)
    run = client.get_run(ridge["run_id"])
    assert run.info.run_name == f"ridge-{ridge['run_id'][:8]}"

    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation"}  # never the sealed test rows
    assert inputs["training"].digest == run.data.tags["train_rows_hash"]
    assert inputs["validation"].digest == run.data.tags["validation_rows_hash"]
    assert {d.name for d in inputs.values()} == {"diamonds"}
    assert "builtin" in inputs["training"].source

    text = client.download_artifacts(run.info.run_id, "importance/permutation_importance.csv",
                                     str(tmp_path))
    table = list(csv.DictReader(io.StringIO(Path(text).read_text())))
    assert {r["feature"] for r in table} == {"carat", "cut", "color", "clarity", "depth",
                                             "table", "x", "y", "z"}
    values = [float(r["importance_mean"]) for r in table]
    assert values == sorted(values, reverse=True)
    assert values[0] > 0  # shuffling the top feature makes the price prediction worse
    assert table[0]["metric"] == "rmse"
    plots = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/predicted_vs_actual.png"}

    listed = run_mlops("runs", "--json", "--card", str(card), env=env)
    assert listed.returncode == 0, listed.stderr
    board = json.loads(listed.stdout)
    assert (board["metric"], board["dataset"]) == ("val_rmse", "diamonds")
    assert [r["run_id"] for r in board["runs"]] == [ridge["run_id"], dummy["run_id"]]
    assert board["runs"][0]["value"] == pytest.approx(ridge["metrics"]["val_rmse"])
    assert board["runs"][1]["name"] == f"dummy-{dummy['run_id'][:8]}"

    shown = run_mlops("runs", "--card", str(card), env=env)
    assert shown.returncode == 0, shown.stderr
    lines = [ln for ln in shown.stdout.splitlines() if ridge["run_id"] in ln
             or dummy["run_id"] in ln]
    assert len(lines) == 2
    assert ridge["run_id"] in lines[0]  # best first
