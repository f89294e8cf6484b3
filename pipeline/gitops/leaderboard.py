"""The best runs of the experiment on the card's data, by the validation metric.

`mlops runs` answers "which of my runs should I propose?": the runs of the training
experiment trained on the card's dataset (the run's `dataset` tag), ranked by the
card's primary metric on the validation rows (`val_<metric>`, in its direction). The
sealed test rows play no part: ranking runs by them would be selecting on the gate's
own rows. Which run is Production, and which the card proposes, is marked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipeline.gitops import registry
from pipeline.gitops.card import ModelCard
from pipeline.stages.evaluate import VALIDATION_PREFIX

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

RUN_NAME_TAG = "mlflow.runName"


@dataclass(frozen=True)
class RunRow:
    """One run on the leaderboard."""

    rank: int
    run_id: str
    name: str
    estimator: str
    value: float
    metrics: dict[str, float]
    started_at: str
    data_hash: str
    production: bool
    candidate: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def best_runs(mlflow_client: MlflowClient, card: ModelCard, *, experiment: str, dataset: str,
              limit: int = 10) -> list[RunRow]:
    """The `limit` best finished runs of `experiment` on `dataset`, best first."""
    import datetime as dt

    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return []
    metric = f"{VALIDATION_PREFIX}{card.promotion.metric}"
    order = "DESC" if card.promotion.greater_is_better else "ASC"
    runs = mlflow_client.search_runs(
        [found.experiment_id],
        filter_string=f"attributes.status = 'FINISHED' and tags.dataset = '{_quoted(dataset)}'",
        order_by=[f"metrics.`{metric}` {order}", "attributes.start_time DESC"],
        max_results=limit)
    production = registry.production_version(mlflow_client, card.model.name)
    production_run = production.run_id if production is not None else None
    rows: list[RunRow] = []
    for run in runs:
        metrics = run.data.metrics
        if metric not in metrics:
            continue
        tags = run.data.tags
        rows.append(RunRow(
            rank=len(rows) + 1, run_id=run.info.run_id,
            name=tags.get(RUN_NAME_TAG, run.info.run_name or ""),
            estimator=tags.get("estimator", ""), value=float(metrics[metric]),
            metrics={k: float(v) for k, v in sorted(metrics.items())
                     if k.startswith(VALIDATION_PREFIX)},
            started_at=dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC)
            .isoformat(timespec="seconds"),
            data_hash=tags.get("data_hash", ""),
            production=run.info.run_id == production_run,
            candidate=run.info.run_id == card.model.candidate_run_id))
    return rows


def _quoted(value: str) -> str:
    """A value inside MLflow's single-quoted search string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
