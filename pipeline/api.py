"""The project's Python API for data scientists: one import, the same functions as `mlops`.

    from pipeline import api

    project = api.load()                      # the card, its data split, the registry
    result = api.train(project, "xgboost")    # a built-in name
    result = api.train(project, "my_models:extra_trees")        # your factory
    result = api.train(project, ExtraTreesRegressor(n_estimators=300))  # an estimator
    result = api.train(project, my_pipeline, fitted=True)      # fitted in the notebook
    api.runs(project)                           # the leaderboard, as `mlops runs`
    verdict = api.gate(project, result.run_id)  # the pull request's gate, on the test rows
    api.propose(project, result.run_id)         # the run into model_card.yaml, if it passes

Every way of training goes through `pipeline.jobs.training.train_and_register`, what
`mlops train` and the training DAG run: the estimator is held to the loading allowlist
before anything is fitted (every refused type named at once, no run created), fitted
with the card's features on the training rows, evaluated on the validation rows, its
twin compiled when a converter exists, and logged as one MLflow run. The gate and the
proposal are the ones the pull request uses. Like the CLI, this is an edge: `load`
points MLflow's fluent API at the card's tracking server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.gitops.card import ModelCard, load_card, prepare_data, write_candidate_run_id
from pipeline.gitops.leaderboard import RunRow
from pipeline.gitops.verdict import Verdict
from pipeline.settings import Settings, load_settings
from pipeline.stages.data import PreparedData
from pipeline.stages.estimators import BUILT_IN
from pipeline.stages.train import TrainResult

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

__all__ = ["Project", "RunRow", "Verdict", "estimators", "gate", "load", "production",
           "propose", "runs", "train"]


@dataclass
class Project:
    """A card, the settings it runs with, and its data split once (train, validation,
    and the sealed test rows only the gate scores)."""

    card_path: Path
    card: ModelCard
    settings: Settings
    data: PreparedData = field(repr=False)

    @property
    def task(self) -> str:
        return str(self.data.spec.task)


def load(card: str | Path | None = None) -> Project:
    """The card (default: `MLOPS_CARD`, else model_card.yaml) with its data prepared, and
    MLflow pointed at its tracking server (checked reachable: one line if not)."""
    import mlflow

    from pipeline.gitops import registry

    settings = load_settings()
    path = Path(card) if card is not None else settings.mlops_card
    loaded = load_card(path)
    registry.check_reachable(settings.mlflow_tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return Project(card_path=path, card=loaded, settings=settings,
                   data=prepare_data(loaded, root=path.resolve().parent))


def estimators(task: str = "regression") -> list[str]:
    """The built-in estimator names for a task."""
    return sorted(BUILT_IN["classification" if task == "classification" else "regression"])


def train(project: Project, estimator: Any, *, params: dict[str, Any] | None = None,
          name: str | None = None, fitted: bool = False, root: str | Path | None = None
          ) -> TrainResult:
    """Train and log one run: `estimator` is a built-in name, `MODULE:FACTORY` (importable
    from `root`, the card's folder by default), or an estimator object; with `fitted`,
    a model already fitted on the raw feature columns, evaluated and logged as it is.
    `name` is what the run calls the estimator (default: the name, or the class)."""
    from pipeline.jobs.training import train_and_register

    done = train_and_register(project.card, project.settings, estimator=estimator,
                              estimator_name=name, params=params, fitted=fitted,
                              root=Path(root) if root else project.card_path.resolve().parent,
                              data=project.data)
    return done.result


def gate(project: Project, run_id: str) -> Verdict:
    """The pull request's gate for `run_id` against Production (the sealed test rows,
    paired bootstrap, the card's policy): its verdict."""
    from pipeline.gitops import registry
    from pipeline.gitops.evaluation import run_gate

    proposal = project.card.model_copy(update={"model": project.card.model.model_copy(
        update={"candidate_run_id": run_id})})
    client = registry.client(project.settings.mlflow_tracking_uri)
    outcome = run_gate(proposal, mlflow_client=client,
                       tracking_uri=project.settings.mlflow_tracking_uri,
                       data_root=project.card_path.resolve().parent,
                       serving_url=project.settings.mlops_serving_url)
    return outcome.verdict


def runs(project: Project, limit: int = 10) -> list[RunRow]:
    """The leaderboard `mlops runs` prints: the best finished runs of the experiment on
    the card's dataset, by the primary metric on the validation rows, best first."""
    from pipeline.gitops import registry
    from pipeline.gitops.leaderboard import best_runs

    client = registry.client(project.settings.mlflow_tracking_uri)
    return best_runs(client, project.card, experiment=project.settings.mlops_experiment,
                     dataset=project.data.spec.name, limit=limit)


def production(project: Project) -> ModelVersion | None:
    """The registry's Production version of the card's model (None before the first)."""
    from pipeline.gitops import registry

    client = registry.client(project.settings.mlflow_tracking_uri)
    return registry.production_version(client, project.card.model.name)


def propose(project: Project, run_id: str, verdict: Verdict | None = None, *,
            to: str | Path | None = None) -> Path | None:
    """Write `run_id` as the candidate when the gate passes (computed here unless given):
    into the card itself, or, with `to`, into a copy of the card there (comments and
    layout kept; beside the card, its relative data paths still hold), so an experiment
    need not touch the card the pull request carries. The file written, or None when the
    gate did not pass."""
    verdict = verdict if verdict is not None else gate(project, run_id)
    if not verdict.passed or verdict.candidate_run_id != run_id:
        return None
    target = Path(to) if to is not None else project.card_path
    write_candidate_run_id(target, run_id, source=project.card_path)
    if target.resolve() == project.card_path.resolve():
        project.card = load_card(project.card_path)
    return target
