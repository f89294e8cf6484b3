#!/usr/bin/env bash
# Install only what `pulumi` needs to run the program and the policy pack: the Pulumi SDKs
# pinned in infra/requirements.txt (and their dependencies at constraints.txt's pins), into
# the repository's virtual environment.
# Usage: infra/install.sh PYTHON VENV
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
here=$(cd "$(dirname "$0")" && pwd)

if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv ..."
  "$python" -m venv "$venv"
fi
echo "installing the Pulumi SDKs into $venv ..."
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" -c "$here/../constraints.txt"
echo "$venv has the Pulumi SDKs"
