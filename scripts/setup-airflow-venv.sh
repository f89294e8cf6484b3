#!/usr/bin/env bash
# Create the Airflow virtual environment and install its pinned dependencies into it.
# Airflow lives apart from .venv because it pins fastapi lower than the serving API needs.
# Usage: scripts/setup-airflow-venv.sh PYTHON VENV
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv-airflow}

"$(dirname "$0")/setup-venv.sh" "$python" "$venv" dags/requirements.txt dags/constraints.txt
# The pipeline package is installed with --no-deps: it declares the serving stack
# (mlflow server, fastapi, ...) that this environment deliberately leaves out.
problems=$("$venv/bin/python" -m pip check 2>&1 | grep -v -e '^mlops-gitops ' \
  -e '^No broken requirements' || true)
if [ -n "$problems" ]; then
  echo "$problems" >&2
  exit 1
fi
