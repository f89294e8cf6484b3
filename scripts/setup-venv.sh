#!/usr/bin/env bash
# Create the virtual environment and install the pinned dependencies into it.
# Usage: scripts/setup-venv.sh PYTHON VENV
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: $python is not Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv ..."
  "$python" -m venv "$venv"
fi
echo "installing pinned dependencies into $venv (the first time takes a few minutes) ..."
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# (the grep drops pip's notes about package folders configured on some machines but absent)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r requirements-dev.txt -c constraints.txt 2> >(grep -v "^WARNING: Location" >&2)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
echo "$venv is ready"
