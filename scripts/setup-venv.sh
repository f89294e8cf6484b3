#!/usr/bin/env bash
# Create a virtual environment and install pinned dependencies and this project into it.
# Usage: scripts/setup-venv.sh PYTHON VENV [REQUIREMENTS CONSTRAINTS]
# (defaults: requirements-dev.txt and constraints.txt, the main .venv)
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
requirements=${3:-requirements-dev.txt}
constraints=${4:-constraints.txt}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: $python is not Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv ..."
  "$python" -m venv "$venv"
fi
echo "installing $requirements into $venv (the first time takes a few minutes) ..."
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# (the grep drops pip's notes about package folders configured on some machines but absent)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$requirements" -c "$constraints" 2> >(grep -v "^WARNING: Location" >&2)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
echo "$venv is ready"
