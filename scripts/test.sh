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
# The suite in parallel streams that share nothing but the machine, each with its own
# pytest folder: the main suite on SQLite (and every test that takes no backend); its
# MariaDB-backend tests (`-k mysql`, when that backend is selected) with the trust tests;
# and a side stream:
# the DAG tests (their own environment), the cloud tracking image's (mostly a Docker
# build), then a few long tests moved out of the main suite (`SIDE_TESTS`, on every
# backend) so the three streams end at about the same time. Much of each is waiting on
# servers, so two cores serve three streams well. The first stream prints as it runs;
# the others' output follows it.
SIDE_TESTS=(tests/notebooks tests/serving/test_memory.py tests/serving/test_schemathesis.py
            tests/integration/test_score.py
            tests/serving/test_image.py)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
main=("$venv/bin/python" -m pytest --ignore=tests/tracking_image --ignore=tests/dags)
for path in "${SIDE_TESTS[@]}"; do main+=("--ignore=$path"); done
backends=${MLOPS_TEST_BACKENDS:-sqlite,mysql}
(
  rc=0
  MLOPS_MAIN_VENV="$(cd "$venv" && pwd)" run_pytest "$airflow_venv/bin/python" -m pytest \
    tests/dags --basetemp="$work/dags" "$@" || rc=$?
  run_pytest "$venv/bin/python" -m pytest tests/tracking_image --basetemp="$work/image" "$@" \
    || rc=$?
  run_pytest "$venv/bin/python" -m pytest "${SIDE_TESTS[@]}" \
    --basetemp="$work/moved" "$@" || rc=$?
  exit "$rc"
) >"$work/side.log" 2>&1 &
side=$!
mysql=
# The trust tests (long, on both backends) go with the MariaDB stream, which is otherwise
# the shortest since most end-to-end loops run on the first backend only.
if [[ ,$backends, == *,mysql,* ]]; then
  run_pytest "${main[@]}" -k "mysql or test_trust" --basetemp="$work/mysql" "$@" \
    >"$work/mysql.log" 2>&1 &
  mysql=$!
fi
main_rc=0
run_pytest "${main[@]}" ${mysql:+-k "not mysql and not test_trust"} --basetemp="$work/main" "$@" \
  || main_rc=$?
mysql_rc=0
if [[ -n $mysql ]]; then
  wait "$mysql" || mysql_rc=$?
  echo "== the MariaDB-backend tests, run alongside:"
  cat "$work/mysql.log"
fi
side_rc=0
wait "$side" || side_rc=$?
echo "== the DAG tests (.venv-airflow), the tracking image's tests and ${SIDE_TESTS[*]}, run alongside:"
cat "$work/side.log"
for rc in "$main_rc" "$mysql_rc" "$side_rc"; do
  if [[ $rc -ne 0 ]]; then exit "$rc"; fi
done
