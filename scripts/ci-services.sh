#!/usr/bin/env bash
# Install what the production-like test backend needs: MariaDB (the MySQL protocol, as
# on RDS MySQL). Idempotent: does nothing when mariadbd is already installed.
# Nothing is started here: the test fixture and `mlops stack up --backend mysql` start
# their own MariaDB, S3 protocol server and MLflow server under a private directory and
# stop exactly what they started. The S3 protocol server (rclone) comes from PyPI.
set -euo pipefail

if [[ -x /usr/sbin/mariadbd ]]; then
    echo "MariaDB already installed: $(/usr/sbin/mariadbd --version)"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "error: MariaDB is missing and installing it needs root (apt-get install -y mariadb-server)" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The package's post-install may start the distribution's service; we never rely on it.
apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
echo "MariaDB installed: $(/usr/sbin/mariadbd --version)"
