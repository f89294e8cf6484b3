#!/usr/bin/env bash
# `make test-part`: one part of the suite, as the PR workflow's parallel jobs run it. The
# parts are marker expressions (the markers follow from what a test uses, tests/conftest.py)
# that together select every test once: `unit` needs nothing beyond its process, `e2e` is
# the whole loop, `integration` is the rest of the main environment (servers, Docker,
# Spark), `airflow` the DAG tests in their own environment.
# Usage: MLOPS_TEST_PART=PART scripts/test-part.sh VENV AIRFLOW_VENV [PYTEST_ARGS...]
#        scripts/test-part.sh --markers PART   (print the part's marker expression)
set -euo pipefail

markers() {
  case "$1" in
    unit) echo "unit" ;;
    e2e) echo "e2e" ;;
    integration) echo "not unit and not e2e" ;;
    airflow) echo "airflow" ;;
    *) return 1 ;;
  esac
}
if [[ ${1:-} == --markers ]]; then
  markers "${2:-}" || { echo "error: no test part ${2:-}" >&2; exit 2; }
  exit 0
fi

venv=$1 airflow_venv=$2
shift 2
part=${MLOPS_TEST_PART:-}
if ! expression=$(markers "$part"); then
  echo "error: MLOPS_TEST_PART=${part}: choose unit, integration, e2e or airflow" >&2
  exit 2
fi
if [[ $part == airflow ]]; then
  if [[ ! -x $airflow_venv/bin/python ]]; then
    echo "error: the airflow part runs in $airflow_venv: make dags-venv first" >&2
    exit 2
  fi
  MLOPS_MAIN_VENV="$(cd "$venv" && pwd)" exec "$airflow_venv/bin/python" -m pytest tests/dags \
    -m "$expression" "$@"
fi
exec "$venv/bin/python" -m pytest -m "$expression" "$@"
