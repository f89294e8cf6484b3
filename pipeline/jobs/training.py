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

`train_and_register` is the same job in one call, what `mlops train` runs: choose the
estimator (`--estimator NAME` or `MODULE:FACTORY`), prepare, fit and log
(`fit_and_log`, the train step's own function), then register (`register_version`, the
register step's own) or bootstrap Production. A run logged by the DAG is
indistinguishable from one logged by hand. The caller (the CLI, a DAG task) points
MLflow at the tracking server; these functions never change MLflow's global state.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from modelio import ModelRefused
from modelio.source import of_run
from pipeline import progress
from pipeline.errors import ConfigError, NegativeVerdict, RegistryError
from pipeline.gitops import registry
from pipeline.gitops.card import ModelCard, load_card, prepare_data
from pipeline.gitops.gate import FloorCheck, check_floors
from pipeline.settings import Settings, load_settings
from pipeline.stages import MODEL_ARTIFACT
from pipeline.stages.data import PreparedData
from pipeline.stages.datasets import load_spec
from pipeline.stages.estimators import check_estimator, check_loadable, with_params
from pipeline.stages.evaluate import evaluate, on_validation
from pipeline.stages.features import build_model
from pipeline.stages.handover import (
    cleanup_step,
    read_prepared,
    work_dir_for,
    write_feature_summary,
    write_prepared,
)
from pipeline.stages.train import TrainResult, make_estimator, train

__all__ = ["Trained", "cleanup_step", "evaluate_step", "features_step", "fit_and_log",
           "load_prepared", "prepare_step", "register_step", "register_version",
           "tag_registered_by", "train_and_register", "train_job_arguments", "train_step",
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
               params: dict[str, Any], root: Path | None = None) -> dict[str, Any]:
    """Fit, evaluate on the validation rows and log one MLflow run; return its ID and metrics.

    `estimator` is a built-in name or `MODULE:FACTORY`, importable from `root` (the
    repository root: where the card is, by default)."""
    card = load_card(card_path)
    spec = load_spec(card.data.dataset)
    built = make_estimator(spec.task, estimator, dict(params),
                           root=root or card_path.resolve().parent)
    settings = load_settings()
    registry.check_reachable(settings.mlflow_tracking_uri)
    result = fit_and_log(card, load_prepared(card, work_dir), built, estimator_name=estimator,
                         params=dict(params), settings=settings)
    return {"run_id": result.run_id, "metrics": result.metrics}


def fit_and_log(card: ModelCard, data: PreparedData, estimator: Any, *, estimator_name: str,
                params: dict[str, Any], settings: Settings, fitted: bool = False
                ) -> TrainResult:
    """The train step: fit (unless `fitted`), evaluate, compile the twin, log one run."""
    return train(data=data, estimator=estimator, estimator_name=estimator_name,
                 params=params, experiment=settings.mlops_experiment,
                 twin_tolerance=card.model.twin_tolerance, fitted=fitted)


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
    version = register_version(client, card, run_id, registered_by=registered_by)
    return {"name": card.model.name, "version": str(version.version), "run_id": run_id}


def register_version(client: MlflowClient, card: ModelCard, run_id: str, *,
                     registered_by: str | None) -> ModelVersion:
    """The register step: a new version of the card's model (or the run's existing one),
    tagged with who asked; never Production."""
    version = registry.register_run(client, card.model.name, run_id)
    if registered_by is not None:
        tag_registered_by(client, card.model.name, version.version, registered_by)
    return version


@dataclass(frozen=True)
class Trained:
    """What `train_and_register` did: the run, and the version when one was registered."""

    result: TrainResult
    data: PreparedData
    version: ModelVersion | None = None
    production: bool = False


def train_and_register(card: ModelCard, settings: Settings, *, estimator: Any,
                       estimator_name: str | None = None,
                       params: Mapping[str, Any] | None = None, register: bool = False,
                       promote: bool = False, registered_by: str | None = None,
                       root: Path | None = None, fitted: bool = False,
                       data: PreparedData | None = None,
                       say: Callable[[str], None] = lambda _line: None) -> Trained:
    """prepare → train → register, as one job: `mlops train`, the notebook and the API.

    `estimator` is a built-in name, `MODULE:FACTORY` (importable from `root`, the
    working directory by default), or an estimator object (unfitted, or with `fitted` a
    model fitted on the raw feature columns). Everything that can be refused is refused
    before the data is read and before any run exists: the estimator, its parameters,
    its types against the loading allowlist, and (`promote`) a registry that already has
    Production. With `register` the run becomes a new version (the DAG's register step);
    with `promote` too it becomes the first Production (`registry.bootstrap_production`,
    its twin derived from the verified model).
    """
    if promote and not register:
        raise ConfigError("--promote needs --register")
    if registered_by is not None and not register:
        raise ConfigError("--registered-by needs --register")
    params = dict(params or {})
    spec = load_spec(card.data.dataset)
    if isinstance(estimator, str):
        estimator_name = estimator_name or estimator
        built = make_estimator(spec.task, estimator, params, root=root)
    else:
        built = check_estimator(estimator, what="the fitted model is" if fitted
                                else "the estimator is")
        if not fitted:  # a copy: the notebook's own object stays as it was
            from sklearn.base import clone

            built = with_params(clone(built), params)
        estimator_name = estimator_name or type(estimator).__name__
    model_check = built if fitted else build_model(spec, built)
    check_loadable(model_check)  # before the data is read: a refused type costs nothing
    client = registry.client(settings.mlflow_tracking_uri)
    if promote:
        registry.refuse_if_production_exists(client, card.model.name)
    if data is None:
        with progress.stage("data: read, validate, cleanse, split"):
            data = prepare_data(card)
        say(f"data: {data.report.rows_in} rows read, {data.report.rows_out} kept after "
            f"cleansing, {len(data.train)} train / {len(data.validation)} validation / "
            f"{len(data.test)} test, sealed for the gate (hash {data.data_hash})")
    result = fit_and_log(card, data, built, estimator_name=estimator_name, params=params,
                         settings=settings, fitted=fitted)
    if not register:
        return Trained(result=result, data=data)
    if promote:
        from pipeline.stages.twin import derive

        version = registry.bootstrap_production(
            client, card.model.name, result.run_id, tracking_uri=settings.mlflow_tracking_uri,
            derive_twin=lambda model, example: derive(
                model, data, tolerance=card.model.twin_tolerance, example=example))
        if registered_by is not None:
            tag_registered_by(client, card.model.name, version.version, registered_by)
    else:
        version = register_version(client, card, result.run_id, registered_by=registered_by)
    return Trained(result=result, data=data, version=version, production=promote)


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
