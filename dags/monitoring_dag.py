"""Monitoring on a schedule: the last window of served traffic against the training
reference; on drift or decay, retraining that comes back as a pull request.

`monitor` runs what `mlops monitor` runs (`pipeline.monitoring.monitor`) over the
`window_hours` before the run's data interval ends (before now for a manual run), for
the card's Production version,
and leaves the HTML report, the JSON summary and the Prometheus gauges under
`monitor_dir/<run>/`. An empty or unreadable window fails the task (what `mlops monitor`
answers with exit 2). On an alarm, `retrain` triggers `mlops_training` with
`open_pull_request` on and the summary as the PR's reason: the training DAG registers a
candidate (never Production) and opens the pull request that sets the card's
`candidate_run_id`. The gate and the reviewers decide, as for any other candidate.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from _defaults import CARD, MONITOR_DIR, MONITORING_SCHEDULE, PREDICTION_LOG
from _tracking_login import use_tracking_login
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task

from pipeline.gitops import registry
from pipeline.gitops.card import load_card
from pipeline.settings import load_settings
from pipeline.stages import DEFAULT_ESTIMATOR

log = logging.getLogger(__name__)


@dag(
    dag_id="mlops_monitoring",
    schedule=MONITORING_SCHEDULE,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "monitoring"],
    render_template_as_native_obj=True,  # the retraining's params stay an object
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=5),
                  "pre_execute": use_tracking_login},  # Airflow's own MLflow login
    params={
        "card": Param(CARD, type="string", description="path of model_card.yaml"),
        "log": Param(PREDICTION_LOG, type="string",
                     description="the prediction log: folder or s3:// prefix"),
        "window_hours": Param(24, type="number", minimum=0.01,
                              description="hours of traffic before the data interval's end"),
        "monitor_dir": Param(MONITOR_DIR, type="string",
                             description="where each run's report, summary and gauges go"),
        "estimator": Param(DEFAULT_ESTIMATOR, type="string",
                           description="what the retraining fits"),
        "params": Param({}, type="object", description="its hyperparameters"),
    },
    doc_md=__doc__,
)
def mlops_monitoring() -> None:
    @task(retries=0)
    def monitor() -> dict[str, Any]:
        """The window's drift (and decay, when labels exist): the JSON summary by XCom."""
        from pipeline.monitoring.monitor import monitor as run_monitor
        from pipeline.monitoring.outputs import write_gauges, write_html, write_json
        from pipeline.monitoring.window import Window

        context = get_current_context()
        params = context["params"]
        end = _window_end(context.get("data_interval_start"), context.get("data_interval_end"))
        window = Window(start=end - dt.timedelta(hours=float(params["window_hours"])), end=end)
        card = load_card(Path(params["card"]))
        result = run_monitor(registry.client(load_settings().mlflow_tracking_uri), card,
                             log=params["log"], window=window)
        folder = Path(params["monitor_dir"]) / _safe(context["run_id"])
        write_json(result, folder / "summary.json")
        write_html(result, folder / "report.html")
        write_gauges(result, folder / "monitor.prom")
        log.info("%s", result.verdict())
        return result.to_json()

    @task.short_circuit
    def alarmed(summary: dict[str, Any]) -> bool:
        """Retrain only on drift or decay."""
        return bool(summary["alarm"])

    summary = monitor()
    retrain = TriggerDagRunOperator(
        task_id="retrain", trigger_dag_id="mlops_training",
        conf={"card": "{{ params.card }}", "estimator": "{{ params.estimator }}",
              "params": "{{ params.params }}", "open_pull_request": True,
              "monitor_summary": summary},
        wait_for_completion=False)
    alarmed(summary) >> retrain


def _window_end(start: dt.datetime | None, end: dt.datetime | None) -> dt.datetime:
    """A scheduled run's window ends with its data interval; a manual run (an empty
    interval) looks back from now."""
    if start is not None and end is not None and end > start:
        return end
    return dt.datetime.now(dt.UTC)


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)


monitoring_dag = mlops_monitoring()
