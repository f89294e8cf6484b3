#!/usr/bin/env bash
# `make test`: make sure the services are there, then the whole suite.
# As root (CI, a fresh Debian machine) it installs and starts MariaDB, dockerd and the base
# image (scripts/ci-services.sh, idempotent). Otherwise it says in one line what is missing
# and runs the embedded-default suite (MLOPS_TEST_BACKENDS=sqlite; Docker tests skip);
# with MLOPS_REQUIRE_ALL=1 (set by .ci/run) a missing service is an error instead.
# Usage: scripts/test.sh VENV AIRFLOW_VENV [PYTEST_ARGS...]
set -euo pipefail
venv=$1 airflow_venv=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)

if [[ $(id -u) -eq 0 ]]; then
  "$here/ci-services.sh"
fi
gap=$("$here/ci-services.sh" --check)
if [[ -n "$gap" ]]; then
  if [[ "${MLOPS_REQUIRE_ALL:-}" == 1 ]]; then
    echo "error: make test: missing here: $gap; MLOPS_REQUIRE_ALL=1 forbids leaving tests out (sudo make services)" >&2
    exit 2
  fi
  echo "make test: missing here: $gap (sudo make services installs and starts them); running the embedded-default suite, MLOPS_TEST_BACKENDS=sqlite" >&2
  export MLOPS_TEST_BACKENDS=sqlite
fi

run_pytest() {
  local rc=0
  "$@" || rc=$?
  if [[ $rc -eq 5 ]]; then
    echo "error: pytest collected no tests: the suite is misconfigured" >&2
    exit 1
  fi
  return "$rc"
}
# Two suites side by side, as they share nothing but the machine: the main one, and
# the DAG tests (their own environment) followed by the cloud tracking image's (mostly a
# Docker build). The second one's output follows the first's.
side_log=$(mktemp)
trap 'rm -f "$side_log"' EXIT
(
  rc=0
  MLOPS_MAIN_VENV="$(cd "$venv" && pwd)" run_pytest "$airflow_venv/bin/python" -m pytest tests/dags "$@" || rc=$?
  run_pytest "$venv/bin/python" -m pytest tests/tracking_image "$@" || rc=$?
  exit "$rc"
) >"$side_log" 2>&1 &
side=$!
main_rc=0
run_pytest "$venv/bin/python" -m pytest --ignore=tests/tracking_image --ignore=tests/dags "$@" || main_rc=$?
side_rc=0
wait "$side" || side_rc=$?
echo "== the DAG tests (.venv-airflow) and the tracking image's tests, run alongside:"
cat "$side_log"
if [[ $main_rc -ne 0 ]]; then exit "$main_rc"; fi
exit "$side_rc"
