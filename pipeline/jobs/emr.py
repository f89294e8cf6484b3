"""EMR Serverless jobs of the DAGs: an `mlops` command line, run where the data is.

Both DAGs' `emr-serverless` engines submit the same entry point (`dags/emr/mlops_entry.py`,
which calls `mlops`) with a command line built here or beside the stage it runs
(`scoring.spark_job_arguments`, `training.train_job_arguments`), under a job role of
their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def job_driver(*, entry_point: str, arguments: Sequence[str],
               spark_parameters: str) -> dict[str, object]:
    """EMR Serverless's `jobDriver`: the entry point (which calls `mlops`) with the command
    line, and the Spark settings that bring the packed environment along."""
    submit: dict[str, object] = {"entryPoint": entry_point,
                                 "entryPointArguments": list(arguments)}
    if spark_parameters.strip():
        submit["sparkSubmitParameters"] = spark_parameters.strip()
    return {"sparkSubmit": submit}


def require_params(params: Mapping[str, Any], settings: Mapping[str, str]) -> None:
    """Each empty param named in one line, with the Airflow setting that fills it, before
    anything is submitted (`settings`: param name -> AIRFLOW__MLOPS__ suffix)."""
    for key, setting in settings.items():
        if not str(params.get(key, "")).strip():
            raise ValueError(f"engine emr-serverless: param {key} is empty (set it, or "
                             f"AIRFLOW__MLOPS__{setting} in the Airflow environment)")
