"""The DAG tests run on what the stack deploys: MWAA's Airflow and Python, the EMR
release's Spark (the other side: tests/infra/test_versions.py)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.utils import REPO


def _versions() -> ModuleType:
    """infra/mlops_stack/versions.py, which needs neither Pulumi nor the stack."""
    spec = importlib.util.spec_from_file_location(
        "stack_versions", REPO / "infra" / "mlops_stack" / "versions.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_this_environment_is_the_airflow_and_python_mwaa_runs() -> None:
    import airflow

    versions = _versions()
    assert airflow.__version__ == versions.airflow_version()
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" == versions.airflow_python()


def test_this_environment_has_the_spark_of_the_emr_release() -> None:
    import pyspark

    versions = _versions()
    assert pyspark.__version__ == versions.EMR_RELEASES[versions.EMR_RELEASE]
