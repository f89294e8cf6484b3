#!/usr/bin/env bash
# Turn `pip freeze` output (stdin) into constraints.txt (stdout): plain pins, no URLs.
set -euo pipefail
echo "# Every package of the test environment at the version it was tested with."
echo "# Regenerate with: make constraints"
grep -E '^[A-Za-z0-9_.-]+==' | grep -v -i '^mlops-gitops=='
