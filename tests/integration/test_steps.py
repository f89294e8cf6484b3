"""The training DAG's steps in the main environment: real MLflow server, real S3 protocol."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipeline.errors import ConfigError, NegativeVerdict
from pipeline.gitops import registry
from pipeline.gitops.card import load_card
from pipeline.jobs import training as steps
from pipeline.localstack.mysql import rclone_binary
from pipeline.localstack.process import ManagedProcess
from pipeline.stages.batch_files import InputColumn, discard, publish, staging_dir
from pipeline.stages.data import prepare
from pipeline.stages.datasets import load_spec
from pipeline.stages.score_batch import dated_output, score_files
from tests.conftest import TrackingServer
from tests.utils import REPO, free_port

pytestmark = pytest.mark.integration


def test_work_dir_names_are_safe_folder_names(tmp_path: Path) -> None:
    run_key = "manual__2026-11-27T17:58:59.501757+00:00"
    assert steps.work_dir_for(str(tmp_path), run_key) == \
        f"{tmp_path}/manual__2026-11-27T17_58_59.501757_00_00"
    assert steps.work_dir_for("s3://bucket/work/", "../..") == "s3://bucket/work/run"


def test_steps_hand_over_through_files_and_a_weak_model_stops_at_the_floors(
        tracking_env: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_EXPERIMENT", "steps-test")
    card = tmp_path / "model_card.yaml"
    card.write_text((REPO / "model_card.yaml").read_text().replace(
        "name: diamond-price", f"name: steps-{uuid.uuid4().hex[:8]}"))
    work = str(tmp_path / "run")
    with pytest.raises(ConfigError, match="no prepared data"):
        steps.features_step(card_path=card, work_dir=work)

    prepared = steps.prepare_step(card_path=card, work_dir=work)
    reloaded = steps.load_prepared(load_card(card), work)
    direct = prepare(load_spec("diamonds"))
    pd.testing.assert_frame_equal(reloaded.train, direct.train)
    pd.testing.assert_frame_equal(reloaded.validation, direct.validation)
    pd.testing.assert_frame_equal(reloaded.test, direct.test)
    assert prepared["data_hash"] == direct.data_hash == reloaded.data_hash

    features = steps.features_step(card_path=card, work_dir=work)
    assert features["features_in"] == 9
    assert features["features_out"] > 9  # one-hot columns

    weak = steps.train_step(card_path=card, work_dir=work, estimator="dummy", params={})
    with pytest.raises(NegativeVerdict,
                       match=r"r2 is .* on validation, the card's floor is at least 0\.9"):
        steps.evaluate_step(card_path=card, work_dir=work, run_id=weak["run_id"])

    good = steps.train_step(card_path=card, work_dir=work, estimator="hist_gradient_boosting",
                            params={"max_iter": 20})
    checked = steps.evaluate_step(card_path=card, work_dir=work, run_id=good["run_id"])
    assert checked["metrics"] == pytest.approx(good["metrics"])
    registered = steps.register_step(card_path=card, run_id=good["run_id"], registered_by="test")
    client = MlflowClient(tracking_env.uri)
    version = client.get_model_version(registered["name"], registered["version"])
    assert version.run_id == good["run_id"]
    assert version.tags["registered_by"] == "test"
    assert registry.production_version(client, registered["name"]) is None, \
        "registering never makes a version Production"
    assert steps.cleanup_step(work_dir=work) == {"work_dir": str(work), "removed": True}
    assert not (tmp_path / "run").exists()


def test_the_train_step_takes_a_factory_spelled_as_for_mlops_train(
        tracking_env: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DAG's `estimator` param `my_models:extra_trees`, from the repository root (the
    card's folder): the same run as `mlops train --estimator my_models:extra_trees`."""
    monkeypatch.setenv("MLOPS_EXPERIMENT", "steps-factory")
    card = tmp_path / "model_card.yaml"
    card.write_text((REPO / "model_card.yaml").read_text().replace(
        "name: diamond-price", f"name: steps-{uuid.uuid4().hex[:8]}"))
    (tmp_path / "my_models.py").write_text(
        "from sklearn.ensemble import ExtraTreesRegressor\n\n\n"
        "def extra_trees():\n    return ExtraTreesRegressor(n_estimators=5, random_state=0)\n")
    work = str(tmp_path / "run")
    steps.prepare_step(card_path=card, work_dir=work)
    trained = steps.train_step(card_path=card, work_dir=work, estimator="my_models:extra_trees",
                               params={"min_samples_leaf": 3})
    run = MlflowClient(tracking_env.uri).get_run(trained["run_id"])
    assert run.data.params["estimator"] == "my_models:extra_trees"
    assert run.data.params["estimator.min_samples_leaf"] == "3"
    assert run.data.tags["twin"] == "onnx"
    with pytest.raises(ConfigError, match="module my_models has no attribute nothing"):
        steps.train_step(card_path=card, work_dir=work, estimator="my_models:nothing",
                         params={})


@pytest.fixture
def s3_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real S3 protocol server (`rclone serve s3`) on loopback with one bucket."""
    root = tmp_path / "s3"
    (root / "work").mkdir(parents=True)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ManagedProcess(name="s3", home=tmp_path, health_url=endpoint,
                            probe=lambda: _listening(port))
    server.start([rclone_binary(), "serve", "s3", "--addr", f"127.0.0.1:{port}", str(root)],
                 env={"RCLONE_AUTH_KEY": '"steps-key,steps-secret"'}, wait_seconds=30)
    for key, value in {"AWS_ACCESS_KEY_ID": "steps-key", "AWS_SECRET_ACCESS_KEY": "steps-secret",
                       "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                       # rclone's ranged reads carry no whole-object checksum to validate
                       "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
                       "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"}.items():
        monkeypatch.setenv(key, value)
    # fsspec keeps one S3 filesystem per argument set: one made for another test's server
    # would still point there.
    fsspec.get_filesystem_class("s3").clear_instance_cache()
    try:
        yield "s3://work"
    finally:
        server.stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_work_dir_and_batches_can_live_on_s3(s3_env: str, tmp_path: Path) -> None:
    """MWAA workers share no disk: the hand-over and the scores go through S3."""
    card = REPO / "model_card.yaml"
    work = steps.work_dir_for(f"{s3_env}/training", "scheduled__2026-11-27T00:00:00+00:00")
    prepared = steps.prepare_step(card_path=card, work_dir=work)
    assert steps.features_step(card_path=card, work_dir=work)["features_in"] == 9
    reloaded = steps.load_prepared(load_card(card), work)
    assert len(reloaded.train) == prepared["rows_train"]
    assert (tmp_path / "s3" / "work" / "training" / "scheduled__2026-11-27T00_00_00_00_00"
            / "train.parquet").is_file()
    assert steps.cleanup_step(work_dir=work)["removed"] is True
    assert not (tmp_path / "s3" / "work" / "training" /
                "scheduled__2026-11-27T00_00_00_00_00").exists()

    batch = pd.DataFrame({"id": [1, 2], "carat": [0.3, 2.8]})
    batch.to_parquet(tmp_path / "batch.parquet")
    location = dated_output(f"{s3_env}/scores", dt.datetime(2026, 11, 27, tzinfo=dt.UTC))

    def predict(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"prediction": frame["carat"] * 1000, "model_name": "m",
                             "model_version": "1", "model_run_id": "r"}, index=frame.index)

    result = score_files(source=str(tmp_path / "batch.parquet"), output=location,
                         predict=predict, columns=[InputColumn("carat", "double")],
                         engine="local")
    assert result.rows == 2
    scores = pd.read_parquet(location)
    assert scores["prediction"].tolist() == [300.0, 2800.0]


def test_spark_staging_on_s3_is_published_whole_or_discarded(s3_env: str, tmp_path: Path) -> None:
    """Executors on a cluster share no disk with the driver: they write their parts to a
    hidden prefix beside the target, and publishing copies them into place with
    `_SUCCESS` last; a failed job's prefix is removed and the published scores stay."""
    output = f"{s3_env}/scores/logical_date=20261127/scores"
    staging = staging_dir(output, shared=True)
    assert staging.startswith(f"{s3_env}/scores/logical_date=20261127/.scores.staging-")
    fs, target = fsspec.core.url_to_fs(output)
    parts = [pd.DataFrame({"id": [i, i + 10], "prediction": [i * 1.5, i * 2.5]})
             for i in range(3)]
    for i, part in enumerate(parts):  # as Spark's executors write them, and its marker
        fs.pipe_file(f"{_key(staging)}/part-{i:05d}.parquet", part.to_parquet())
    fs.pipe_file(f"{_key(staging)}/_SUCCESS", b"")
    assert not fs.exists(target), "nothing where readers look before publishing"

    publish(staging, output)
    assert sorted(Path(p).name for p in fs.find(target)) == [
        "_SUCCESS", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(output).sort_values("id").reset_index(drop=True),
        pd.concat(parts).sort_values("id").reset_index(drop=True))
    assert fs.find(_key(staging)) == []

    failed = staging_dir(output, shared=True)
    fs.pipe_file(f"{_key(failed)}/part-00000.parquet", parts[0].to_parquet())
    discard(failed)
    assert fs.find(_key(failed)) == []
    assert len(pd.read_parquet(output)) == 6, "a failed job leaves the published scores alone"


def _key(url: str) -> str:
    """bucket/key of an s3:// URL, as fsspec's S3 filesystem names it."""
    return str(fsspec.core.url_to_fs(url)[1])
