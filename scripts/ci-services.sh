#!/usr/bin/env bash
# Install and start what the test suite needs beyond Python, idempotently (root, Debian):
#   MariaDB (the MySQL protocol, as on RDS MySQL): installed here, started by the fixtures;
#   a Docker daemon (scripts/dockerd.sh start) and the Dockerfiles' base image
#   (scripts/base-image.sh: pulled, or a stand-in built from Debian packages);
#   Java 17 for Spark in local mode (openjdk-17-jre-headless; Spark's jars come with pyspark).
# The S3 protocol server (rclone) comes from PyPI with .venv. `make test` and `make
# services` call this; a second call finds everything in place and returns in a second.
# Usage: scripts/ci-services.sh [--check]   (--check: print what is missing, change nothing)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

missing() {
  local what=()
  [[ -x /usr/sbin/mariadbd ]] || what+=("MariaDB")
  command -v java >/dev/null 2>&1 || what+=("Java (for Spark)")
  "$here/dockerd.sh" status >/dev/null 2>&1 || what+=("a Docker daemon")
  (( ${#what[@]} )) && { local IFS=,; echo "${what[*]}" | sed 's/,/ and /g'; }
  return 0
}

if [[ "${1:-}" == --check ]]; then
  missing
  exit 0
fi
if [[ $(id -u) -ne 0 ]] && [[ -n "$(missing)" ]] && command -v sudo >/dev/null 2>&1 \
   && sudo -n true 2>/dev/null; then
  # GitHub's runners: a user with password-less sudo.
  exec sudo -n --preserve-env=DEBIAN_FRONTEND,MLOPS_DOCKER_HOME "$0" "$@"
fi

# ensure NAME CHECK PACKAGE...: install Debian packages unless CHECK already succeeds.
ensure() {
  local name=$1 check=$2
  shift 2
  if eval "$check" >/dev/null 2>&1; then
    echo "$name already installed"
  elif [[ $(id -u) -ne 0 ]]; then
    echo "error: $name is missing and installing it needs root (apt-get install -y $*)" >&2
    exit 2
  else
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # A package's post-install may start the distribution's service; we never rely on it.
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    echo "$name installed"
  fi
}

ensure MariaDB "test -x /usr/sbin/mariadbd" mariadb-server mariadb-client
ensure Java "command -v java" openjdk-17-jre-headless

"$here/dockerd.sh" start
"$here/base-image.sh" python:3.11-slim
