#!/usr/bin/env bash
# Create the Airflow virtual environment and install its pinned dependencies into it.
# Airflow lives apart from .venv because it pins fastapi lower than the serving API needs.
# Usage: scripts/setup-airflow-venv.sh PYTHON VENV
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv-airflow}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: $python is not Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv ..."
  "$python" -m venv "$venv"
fi
echo "installing Airflow and the DAGs' dependencies into $venv (the first time takes about a minute) ..."
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r dags/requirements.txt -c dags/constraints.txt
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
# The pipeline package is installed with --no-deps: it declares the serving stack
# (mlflow server, fastapi, ...) that this environment deliberately leaves out.
problems=$("$venv/bin/python" -m pip check 2>&1 | grep -v -e '^mlops-gitops ' \
  -e '^No broken requirements' || true)
if [ -n "$problems" ]; then
  echo "$problems" >&2
  exit 1
fi
echo "$venv is ready"
