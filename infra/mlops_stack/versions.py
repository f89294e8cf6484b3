"""What the stack deploys, held to what the tests run: one place for each version.

- **Airflow on MWAA** is the `apache-airflow` pin of `dags/requirements.txt`, the version the
  DAG tests' environment (`.venv-airflow`) installs: the stack reads that line, so the two
  cannot differ. MWAA offers a few versions only, each on one Python (`MWAA_AIRFLOW`); the
  pin must be one of them, and the DAG environment is made on that Python
  (`scripts/setup-airflow-venv.sh` asks this module which).
- **Spark on EMR Serverless** is the release's (`EMR_RELEASES`). The jobs run in an image
  built from that release's own base image (`infra/spark_image/Dockerfile`), with the DAG
  environment's Python and its pins (`dags/constraints.txt`), whose pyspark is the release's
  Spark: the DAG tests run the jobs' command line on that Python and that pyspark.

Kept free of Pulumi so the setup script and the DAG tests' environment can read it.
Run as a script: `python versions.py airflow|airflow-python|emr-release|spark`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAG_REQUIREMENTS = REPO / "dags" / "requirements.txt"
DAG_CONSTRAINTS = REPO / "dags" / "constraints.txt"
SPARK_IMAGE_DOCKERFILE = REPO / "infra" / "spark_image" / "Dockerfile"

MWAA_AIRFLOW = {"3.0.6": "3.12", "3.2.1": "3.12", "3.3.1": "3.12"}
"""The Airflow 3 versions MWAA offers, and the Python each runs on: AWS's MWAA images
(aws/amazon-mwaa-docker-images, `images/airflow/<version>`, `PYTHON_VERSION` of each
Dockerfile: 3.12.10 for 3.0.6, 3.12.13 for 3.3.1; read 2026-12-08 at its commit of
2026-08-20). MWAA installs `requirements.txt` under Airflow's constraints for the version
and that Python."""

EMR_RELEASES = {"emr-7.9.0": "3.5.5", "emr-spark-8.0.0": "4.0.2", "emr-spark-8.1.0": "4.1.1"}
"""EMR Serverless release label -> its Apache Spark (AWS's EMR Serverless release pages:
Spark 3.5.5 in 7.9.0; "AWS runtime for Apache Spark" 4.0.2-amzn-0 in emr-spark-8.0.0 and
4.1.1-amzn-0 in emr-spark-8.1.0, the first long-term-support release, which checks that a
custom image was built from its own base image and supports Python 3.12)."""

EMR_RELEASE = "emr-spark-8.1.0"
"""The release of the stack's Spark application."""


def pinned(text: str, package: str) -> str:
    """The version `package==X` pins in a requirements or constraints file's text."""
    pattern = re.compile(rf"^{re.escape(package)}==([^\s;#]+)", re.IGNORECASE | re.MULTILINE)
    found = pattern.findall(text)
    if len(found) != 1:
        raise ValueError(f"expected one {package}== pin, found {len(found)}")
    return str(found[0])


def airflow_version() -> str:
    """The Airflow MWAA runs: the DAG environment's pin, if MWAA offers it."""
    version = pinned(DAG_REQUIREMENTS.read_text(), "apache-airflow")
    if version not in MWAA_AIRFLOW:
        raise ValueError(f"dags/requirements.txt pins apache-airflow=={version}, which MWAA "
                         f"does not offer (it offers {', '.join(sorted(MWAA_AIRFLOW))})")
    return version


def airflow_python() -> str:
    """The Python MWAA runs that Airflow on, and so the DAG environment's."""
    return MWAA_AIRFLOW[airflow_version()]


def emr_base_image(release: str = EMR_RELEASE) -> str:
    """The release's base image on ECR Public, which a custom image must start from."""
    return f"public.ecr.aws/emr-serverless/spark/{release}:latest"


if __name__ == "__main__":
    answers = {"airflow": airflow_version, "airflow-python": airflow_python,
               "emr-release": lambda: EMR_RELEASE, "spark": lambda: EMR_RELEASES[EMR_RELEASE]}
    if len(sys.argv) != 2 or sys.argv[1] not in answers:
        print(f"usage: versions.py {'|'.join(answers)}", file=sys.stderr)
        sys.exit(2)
    print(answers[sys.argv[1]]())
