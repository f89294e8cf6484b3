"""The training DAG's steps: the card's data through the stages, checked and registered.

Each step takes paths and IDs and returns a small JSON-ready dict, for a scheduler
whose tasks run in separate processes (`pipeline.stages.handover` moves the data):

    prepare  → train.parquet, validation.parquet, test.parquet, prepared.json in a work
               dir of the DAG run
    features → fits the feature transformer on the training rows, features.json
    train    → fits, evaluates on validation and logs one MLflow run; returns its run ID
    evaluate → loads the *logged* model back from MLflow, re-scores the validation rows,
               checks the card's floors there (an early warning: the gate applies them
               to the sealed test rows, which no step here scores); a miss stops the DAG
    register → a new version of the card's model, never Production: production is
               reached only through the pull request gate and `mlops promote`

The steps call the same stage functions as `mlops train`, so a run logged by the DAG
is indistinguishable from one logged by hand. The caller (the DAG task) points MLflow
at the tracking server; these functions never change MLflow's global state.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from modelio import ModelRefused
from modelio.source import of_run
from pipeline.errors import NegativeVerdict, RegistryError
from pipeline.gitops import registry
from pipeline.gitops.card import ModelCard, load_card, prepare_data
from pipeline.gitops.gate import FloorCheck, check_floors
from pipeline.settings import load_settings
from pipeline.stages import MODEL_ARTIFACT
from pipeline.stages.data import PreparedData
from pipeline.stages.datasets import load_spec
from pipeline.stages.evaluate import evaluate, on_validation
from pipeline.stages.handover import (
    cleanup_step,
    read_prepared,
    work_dir_for,
    write_feature_summary,
    write_prepared,
)
from pipeline.stages.train import make_estimator, train

__all__ = ["cleanup_step", "evaluate_step", "features_step", "load_prepared", "prepare_step",
           "register_step", "tag_registered_by", "train_job_arguments", "train_step",
           "work_dir_for"]

REGISTERED_BY_TAG = "registered_by"


def prepare_step(*, card_path: Path, work_dir: str) -> dict[str, Any]:
    """Load, validate, cleanse and split the card's data; write the three sets to `work_dir`."""
    return write_prepared(prepare_data(load_card(card_path)), work_dir)


def load_prepared(card: ModelCard, work_dir: str) -> PreparedData:
    """The prepared data of the card's dataset, as `prepare_step` wrote it."""
    return read_prepared(load_spec(card.data.dataset), work_dir)


def features_step(*, card_path: Path, work_dir: str) -> dict[str, Any]:
    """Fit the feature transformer on the training rows (fails early on bad data)."""
    return write_feature_summary(load_prepared(load_card(card_path), work_dir), work_dir)


def train_step(*, card_path: Path, work_dir: str, estimator: str,
               params: dict[str, Any]) -> dict[str, Any]:
    """Fit, evaluate on the validation rows and log one MLflow run; return its ID and metrics."""
    card = load_card(card_path)
    data = load_prepared(card, work_dir)
    built = make_estimator(data.spec.task, estimator, dict(params))
    settings = load_settings()
    registry.check_reachable(settings.mlflow_tracking_uri)
    result = train(data=data, estimator=built, estimator_name=estimator, params=dict(params),
                   experiment=settings.mlops_experiment,
                   twin_tolerance=card.model.twin_tolerance)
    return {"run_id": result.run_id, "metrics": result.metrics}


def evaluate_step(*, card_path: Path, work_dir: str, run_id: str,
                  tolerance: float = 1e-6) -> dict[str, Any]:
    """Re-score the logged model on the validation rows and check the card's floors there.

    Loading the model back from the tracking server (as data, by the same rules as the
    server: `modelio`) proves the artifact is usable, and comparing with the metrics
    logged at training time proves it is the model that was evaluated.
    """
    card = load_card(card_path)
    data = load_prepared(card, work_dir)
    tracking_uri = load_settings().mlflow_tracking_uri
    client = registry.client(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="mlops-evaluate-") as tmp:
        opened = registry.fetch_model(client, of_run(run_id, name=card.model.name,
                                                     path=MODEL_ARTIFACT),
                                      Path(tmp), tracking_uri=tracking_uri)
        try:
            model = opened.estimator()
        except ModelRefused as err:
            raise RegistryError(f"run {run_id}: model refused: {err}") from err
    scores = evaluate(model, data.x_validation, data.y_validation, task=data.spec.task)
    metrics = on_validation(scores)
    logged = mlflow.get_run(run_id).data.metrics
    for name, value in metrics.items():
        if name in logged and not math.isclose(value, logged[name], rel_tol=tolerance,
                                               abs_tol=tolerance):
            raise NegativeVerdict(f"run {run_id}: {name} re-computed as {value:.6g} but logged as "
                                  f"{logged[name]:.6g}; the logged model is not the one evaluated")
    misses = [_floor_miss(floor) for floor in check_floors(card.promotion, scores)
              if not floor.ok]
    if misses:
        raise NegativeVerdict(f"run {run_id}: " + "; ".join(misses))
    return {"run_id": run_id, "metrics": metrics}


def _floor_miss(floor: FloorCheck) -> str:
    if floor.value is None:
        return f"{floor.metric} has a floor but was not computed"
    side = "at least" if floor.greater_is_better else "at most"
    return (f"{floor.metric} is {floor.value:.4g} on validation, the card's floor is {side} "
            f"{floor.bound:g}")


def register_step(*, card_path: Path, run_id: str, registered_by: str) -> dict[str, Any]:
    """Register the run's model as a new version (or reuse its version); never Production."""
    card = load_card(card_path)
    client = registry.client(load_settings().mlflow_tracking_uri)
    version = registry.register_run(client, card.model.name, run_id)
    tag_registered_by(client, card.model.name, version.version, registered_by)
    return {"name": card.model.name, "version": str(version.version), "run_id": run_id}


def tag_registered_by(client: MlflowClient, name: str, version: str,
                      registered_by: str) -> None:
    """Who registered the version (a DAG run, a job): the audit trail before any gate."""
    client.set_model_version_tag(name, version, REGISTERED_BY_TAG, registered_by)


def train_job_arguments(*, card: str, estimator: str, params: Mapping[str, Any],
                        registered_by: str) -> list[str]:
    """The `mlops train` command line a remote job (EMR Serverless) runs: the same stages
    and three sets as this DAG's tasks, one logged run, a version registered and tagged
    `registered_by`, never Production."""
    arguments = ["train", "--estimator", estimator]
    for key, value in params.items():
        arguments += ["--param", f"{key}={json.dumps(value)}"]  # JSON scalars are YAML
    return [*arguments, "--register", "--registered-by", registered_by, "--card", card,
            "--json"]
