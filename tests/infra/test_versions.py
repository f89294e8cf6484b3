"""The versions the stack deploys are the ones the tests run, read from one place each.

Airflow: MWAA's version is the `apache-airflow` pin of dags/requirements.txt (the DAG tests'
environment), which must be a version MWAA offers. Spark: the EMR application's release,
the pyspark the DAG environment pins (on which the DAG tests run the jobs' command line)
and the jobs' image (its base, its Python, its pins) agree. tests/dags checks the other
side: the environment the DAG tests run in has that Airflow, that Python and that pyspark.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlops_stack import orchestration, versions
from policy import rules

from tests.infra.conftest import ACCOUNT, REGION, Deployment, base_settings, deploy

SPARK_IMAGE = "5d41402"
DOCKERFILE = versions.SPARK_IMAGE_DOCKERFILE.read_text()
IMAGE_REQUIREMENTS = versions.SPARK_IMAGE_DOCKERFILE.parent / "requirements.txt"


@pytest.fixture(scope="module")
def image_stack() -> Deployment:
    return deploy(base_settings(orchestration=True, spark_image=SPARK_IMAGE))


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith("#"):
            pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    return pins


def _options(stack: Deployment) -> dict[str, str]:
    (airflow,) = stack.of_type(rules.MWAA_ENVIRONMENT)
    options = airflow.state["airflowConfigurationOptions"]
    return dict(options.get("value", options))  # the provider marks the options secret


# --- Airflow -------------------------------------------------------------------------------


def test_mwaa_runs_the_airflow_the_dags_are_tested_on(batch_stack: Deployment) -> None:
    (airflow,) = batch_stack.of_type(rules.MWAA_ENVIRONMENT)
    pin = versions.pinned(versions.DAG_REQUIREMENTS.read_text(), "apache-airflow")
    assert airflow.state["airflowVersion"] == pin == orchestration.AIRFLOW_VERSION
    assert pin in versions.MWAA_AIRFLOW


def test_a_pin_mwaa_does_not_offer_stops_the_program(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("apache-airflow==3.3.2\nmlflow-skinny==3.17.2\n")
    monkeypatch.setattr(versions, "DAG_REQUIREMENTS", requirements)
    with pytest.raises(ValueError, match=r"apache-airflow==3\.3\.2, which MWAA does not offer"):
        versions.airflow_version()


def test_the_dag_environment_is_made_on_the_python_mwaa_runs() -> None:
    """scripts/setup-airflow-venv.sh asks this, and tests/dags checks the interpreter."""
    script = Path(versions.REPO / "scripts" / "setup-airflow-venv.sh").read_text()
    assert 'infra/mlops_stack/versions.py" airflow-python' in script
    asked = subprocess.run([sys.executable, str(Path(versions.__file__)), "airflow-python"],
                           capture_output=True, text=True, check=True)
    assert asked.stdout.strip() == versions.MWAA_AIRFLOW[orchestration.AIRFLOW_VERSION]


def test_mwaa_gets_the_pins_the_dag_tests_ran(batch_stack: Deployment) -> None:
    """Every line of MWAA's requirements is the DAG environment's pin of that package."""
    uploaded = batch_stack.named("aws:s3/bucketObjectv2:BucketObjectv2",
                                 "orchestration-requirements").state["content"]
    frozen = _pins(versions.DAG_CONSTRAINTS)
    lines = [line for line in uploaded.splitlines() if line.strip()]
    assert lines
    for line in lines:
        name, _, version = line.partition("==")
        assert frozen[re.sub(r"[-_.]+", "-", name.lower())] == version, line
    assert not any(line.lower().startswith("apache-airflow==") for line in lines)


# --- Spark ---------------------------------------------------------------------------------


def test_the_dag_environment_pins_the_spark_of_the_release(batch_stack: Deployment) -> None:
    (spark,) = batch_stack.of_type(rules.EMR_SERVERLESS_APPLICATION)
    assert spark.state["releaseLabel"] == versions.EMR_RELEASE
    spark_version = versions.EMR_RELEASES[versions.EMR_RELEASE]
    assert _pins(versions.DAG_CONSTRAINTS)["pyspark"] == spark_version
    assert versions.pinned(versions.DAG_REQUIREMENTS.read_text(), "pyspark") == spark_version


def test_the_jobs_image_is_built_from_the_release_with_the_dag_python_and_pins() -> None:
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.MULTILINE))
    assert args["EMR_RELEASE"] == versions.EMR_RELEASE
    assert f"python{versions.airflow_python()}" == args["PYTHON"]
    (base,) = re.findall(r"^FROM (\S+)$", DOCKERFILE, re.MULTILINE)
    assert base.replace("${EMR_RELEASE}", args["EMR_RELEASE"]) == versions.emr_base_image()
    assert "COPY dags/constraints.txt" in DOCKERFILE
    assert "-r requirements.txt -c constraints.txt" in DOCKERFILE
    assert f"PYSPARK_PYTHON={orchestration.JOB_PYTHON}" in DOCKERFILE
    names = [line.strip() for line in IMAGE_REQUIREMENTS.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    frozen = _pins(versions.DAG_CONSTRAINTS)
    assert names
    missing = [n for n in names if re.sub(r"[-_.]+", "-", n.lower()) not in frozen]
    assert missing == [], "every package of the image has a pin in dags/constraints.txt"
    assert "pyspark" not in names, "the jobs run the release's own Spark"


def test_the_application_runs_the_jobs_image_when_one_is_configured(
        batch_stack: Deployment, image_stack: Deployment) -> None:
    (plain,) = batch_stack.of_type(rules.EMR_SERVERLESS_APPLICATION)
    assert not plain.state.get("imageConfiguration")
    assert "spark.archives=" in _options(batch_stack)["mlops.emr_spark_parameters"]

    (spark,) = image_stack.of_type(rules.EMR_SERVERLESS_APPLICATION)
    repository = image_stack.named("aws:ecr/repository:Repository", "orchestration-spark-repo")
    assert spark.state["imageConfiguration"]["imageUri"] == (
        f"{repository.state['repositoryUrl']}:{SPARK_IMAGE}")
    assert repository.state["imageTagMutability"] == "IMMUTABLE"
    parameters = _options(image_stack)["mlops.emr_spark_parameters"]
    assert "spark.archives" not in parameters
    assert f"PYSPARK_PYTHON={orchestration.JOB_PYTHON}" in parameters
    assert image_stack.outputs["sparkRepositoryUrl"] == repository.state["repositoryUrl"]


def test_only_emr_serverless_of_this_account_pulls_the_jobs_image(image_stack: Deployment
                                                                  ) -> None:
    policy = json.loads(image_stack.named("aws:ecr/repositoryPolicy:RepositoryPolicy",
                                          "orchestration-spark-repo-policy").state["policy"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "emr-serverless.amazonaws.com"}
    assert sorted(statement["Action"]) == ["ecr:BatchGetImage", "ecr:DescribeImages",
                                           "ecr:GetDownloadUrlForLayer"]
    assert statement["Condition"] == {"StringLike": {
        "aws:SourceArn": f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/*"}}


def test_a_spark_image_must_be_pinned() -> None:
    from mlops_stack.settings import ConfigError, settings_from

    config = {"githubRepo": "acme/mlops", "stateBucket": "b", "allowPlainHttp": "true",
              "trackingImage": "abc1234", "servingImage": "abc1234", "sparkImage": "latest"}
    with pytest.raises(ConfigError, match="mlops:sparkImage must be an immutable tag"):
        settings_from(config.get, project="mlops", stack="t")
