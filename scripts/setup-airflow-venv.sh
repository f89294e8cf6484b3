#!/usr/bin/env bash
# Create the Airflow virtual environment and install its pinned dependencies into it.
# Airflow lives apart from .venv because it pins fastapi lower than the serving API needs.
# It is made on the Python MWAA runs the pinned Airflow on (infra/mlops_stack/versions.py):
# PYTHON if it is that version, else pythonX.Y on the PATH, else a pyenv installation of it.
# Usage: scripts/setup-airflow-venv.sh PYTHON VENV
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv-airflow}

want=$("$python" "$(dirname "$0")/../infra/mlops_stack/versions.py" airflow-python)
is_wanted() {
  "$1" -c "import sys; sys.exit(f'{sys.version_info[0]}.{sys.version_info[1]}' != '$want')" \
    2>/dev/null
}
found=""
for candidate in "$python" "python$want" "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/"$want".*/bin/"python$want"; do
  if is_wanted "$candidate"; then found=$candidate; break; fi
done
if [ -z "$found" ]; then
  echo "error: MWAA runs the pinned Airflow on Python $want, and no python$want was found" \
       "(set PYTHON=/path/to/python$want)" >&2
  exit 2
fi
# An environment made on another Python is made again.
if [ -x "$venv/bin/python" ] && ! is_wanted "$venv/bin/python"; then
  echo "$venv is not on Python $want: making it again"
  rm -rf "$venv"
fi
python=$found

"$(dirname "$0")/setup-venv.sh" "$python" "$venv" dags/requirements.txt dags/constraints.txt
# The pipeline package is installed with --no-deps: it declares the serving stack
# (mlflow server, fastapi, ...) that this environment deliberately leaves out.
problems=$("$venv/bin/python" -m pip check 2>&1 | grep -v -e '^mlops-gitops ' \
  -e '^No broken requirements' || true)
if [ -n "$problems" ]; then
  echo "$problems" >&2
  exit 1
fi
