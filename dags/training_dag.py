"""Training on a schedule: prepare → features → train → evaluate → register.

Each task calls one step of `pipeline.stages.handover`, the same stage functions `mlops train`
uses. Data moves between tasks through parquet files in a work dir of the DAG run;
XCom carries only small JSON (paths, the MLflow run ID, metrics). The new version
is registered but never made Production: that only happens through the pull request
gate (`mlops gate`) and the merge (`mlops promote`).

Hyperparameters are DAG params (estimator and its parameters), so a run can be
triggered with `{"estimator": "random_forest", "params": {"n_estimators": 200}}`, or
with a data scientist's own factory, spelled as for `mlops train`:
`{"estimator": "my_models:extra_trees"}` (a module at the repository root).

With `engine: emr-serverless` (the cloud) the training runs where the data is: the
Amazon provider's operator submits `mlops train --register` to the stack's EMR
Serverless application under the training job role (which reads the batch bucket's
`training/` prefix and nothing else of it), and waits for the job. The job runs the
same stages, logs the same run and registers the version, tagged with this DAG run,
never Production. The early floor check on validation is then the gate's alone.

With `open_pull_request` (what the monitoring DAG's retraining asks), the registered
version comes back as a pull request that sets the card's `candidate_run_id`, with the
monitor's summary as its reason (`pipeline.gitops.pull_request`): the gate and the
reviewers decide, as for a person's PR.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from _defaults import (
    CARD,
    EMR_TRAIN_JOB_ROLE_ARN,
    EMR_TRAIN_LOGIN_SECRET_ARN,
    REPO,
    TRAINING_SCHEDULE,
    WORK_ROOT,
    github_repository,
)
from _emr import emr_params, job_driver, submit_job
from _tracking_login import use_tracking_login
from airflow.sdk import Param, Variable, dag, get_current_context, task

from pipeline.gitops.pull_request import propose_from_env
from pipeline.jobs import emr
from pipeline.jobs import training as steps
from pipeline.stages import DEFAULT_ESTIMATOR

EMR_SETTINGS = {"emr_application_id": "EMR_APPLICATION_ID",
                "emr_train_job_role_arn": "EMR_TRAIN_JOB_ROLE_ARN",
                "emr_entry_point": "EMR_ENTRY_POINT"}
"""The emr-serverless engine's params that must not be empty, and their Airflow settings."""


def _registered_by(run_id: str) -> str:
    return f"airflow mlops_training {run_id}"


def _work_dir() -> str:
    context = get_current_context()
    return steps.work_dir_for(context["params"]["work_root"], context["run_id"])


@dag(
    dag_id="mlops_training",
    schedule=TRAINING_SCHEDULE,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "training"],
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=2),
                  "pre_execute": use_tracking_login},  # Airflow's own MLflow login
    params={
        "card": Param(CARD, type="string", description="path of model_card.yaml"),
        "estimator": Param(DEFAULT_ESTIMATOR, type="string",
                           description="a built-in name (dummy, ridge or logistic, "
                                       "hist_gradient_boosting, random_forest, xgboost, "
                                       "lightgbm) or MODULE:FACTORY, a function importable "
                                       "from the repository root that returns an unfitted "
                                       "estimator (as `mlops train --estimator`)"),
        "params": Param({}, type="object", description="estimator hyperparameters"),
        "work_root": Param(WORK_ROOT, type="string",
                           description="folder or s3:// prefix for the data handed between "
                                       "tasks (shared storage when workers differ)"),
        "engine": Param("local", type="string", enum=["local", "emr-serverless"],
                        description="local: the stages as tasks of this DAG; emr-serverless: "
                                    "`mlops train` as a job on the stack's EMR Serverless "
                                    "application, where the data is"),
        **emr_params(role_param="emr_train_job_role_arn", role_default=EMR_TRAIN_JOB_ROLE_ARN,
                     role_description="the training job's role",
                     login_param="emr_train_login_secret_arn",
                     login_default=EMR_TRAIN_LOGIN_SECRET_ARN),
        "open_pull_request": Param(False, type="boolean",
                                   description="open a pull request that makes the registered "
                                               "version the card's candidate (the monitoring "
                                               "DAG's retraining sets this)"),
        "monitor_summary": Param({}, type="object",
                                 description="why: the monitor's JSON summary, for the PR body"),
    },
    doc_md=__doc__,
)
def mlops_training() -> None:
    @task.branch
    def choose_engine() -> str:
        """emr-serverless submits one job; local runs the stages as this DAG's tasks."""
        engine = get_current_context()["params"]["engine"]
        return "emr_train_driver" if engine == "emr-serverless" else "prepare"

    @task(retries=0)
    def emr_train_driver() -> dict[str, object]:
        """The job: `mlops train --register` with this run's estimator and parameters."""
        context = get_current_context()
        params = context["params"]
        emr.require_params(params, EMR_SETTINGS)
        arguments = steps.train_job_arguments(card=params["emr_card"],
                                              estimator=params["estimator"],
                                              params=params["params"],
                                              registered_by=_registered_by(context["run_id"]))
        return job_driver(params, arguments=arguments, login_param="emr_train_login_secret_arn")

    @task
    def prepare() -> dict[str, Any]:
        params = get_current_context()["params"]
        return steps.prepare_step(card_path=Path(params["card"]), work_dir=_work_dir())

    @task
    def features(prepared: dict[str, Any]) -> dict[str, Any]:
        params = get_current_context()["params"]
        return steps.features_step(card_path=Path(params["card"]),
                                   work_dir=prepared["work_dir"])

    @task
    def train(prepared: dict[str, Any]) -> str:
        params = get_current_context()["params"]
        result = steps.train_step(card_path=Path(params["card"]),
                                  work_dir=prepared["work_dir"],
                                  estimator=params["estimator"], params=params["params"],
                                  root=REPO)
        return str(result["run_id"])

    @task
    def evaluate(prepared: dict[str, Any], mlflow_run_id: str) -> dict[str, Any]:
        params = get_current_context()["params"]
        return steps.evaluate_step(card_path=Path(params["card"]),
                                   work_dir=prepared["work_dir"], run_id=mlflow_run_id)

    @task
    def register(evaluated: dict[str, Any]) -> dict[str, Any]:
        context = get_current_context()
        return steps.register_step(card_path=Path(context["params"]["card"]),
                                   run_id=evaluated["run_id"],
                                   registered_by=_registered_by(context["run_id"]))

    @task.short_circuit
    def wants_pull_request() -> bool:
        return bool(get_current_context()["params"]["open_pull_request"])

    @task(retries=2)
    def open_pull_request(registered: dict[str, Any]) -> dict[str, Any]:
        """Branch, bot commit of the card's candidate_run_id, pull request (GitHub's API).

        The token is the Airflow variable `mlops_github_token` (MWAA: the secret
        `<prefix>/airflow/variables/mlops_github_token`, which only its execution role
        reads), else GITHUB_TOKEN; the repository is GITHUB_REPOSITORY, or MWAA's
        `mlops.github_repository`.
        """
        context = get_current_context()
        pull = propose_from_env({**os.environ, "GITHUB_REPOSITORY": github_repository()},
                                run_id=registered["run_id"],
                                model_name=registered["name"], version=registered["version"],
                                summary=context["params"]["monitor_summary"] or None,
                                registered_by=_registered_by(context["run_id"]),
                                token=Variable.get("mlops_github_token", default=None))
        return {"number": pull.number, "url": pull.url, "branch": pull.branch,
                "created": pull.created}

    @task(trigger_rule="all_done", retries=0)
    def cleanup() -> dict[str, Any]:
        return steps.cleanup_step(work_dir=_work_dir())

    driver = emr_train_driver()
    submit_job(task_id="emr_train", role_param="emr_train_job_role_arn", driver=driver,
               name="mlops-train")
    prepared = prepare()
    choose_engine() >> [prepared, driver]
    run_id = train(prepared)
    features(prepared) >> run_id
    evaluated = evaluate(prepared, run_id)
    registered = register(evaluated)
    evaluated >> cleanup()
    registered >> wants_pull_request() >> open_pull_request(registered)


training_dag = mlops_training()
