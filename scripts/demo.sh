#!/usr/bin/env bash
# The whole loop on this machine, one `mlops` command at a time, as a person would type
# them. Everything runs on 127.0.0.1 and stays running for you to explore; `make down`
# stops it. The demo proposes its candidate in a copy of the card under .mlops/demo/,
# so the repository's model_card.yaml is left as it is. One dataset per stack: the
# background server serves one model (`make down` before switching DATASET).
set -euo pipefail

venv=${VENV:-.venv}
mlops="$venv/bin/mlops"
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-http://127.0.0.1:5000}
serving_url=${MLOPS_SERVING_URL:-http://127.0.0.1:8000}
# DATASET=rand_health runs the loop on a built-in example's card (examples/<name>/).
dataset=${DATASET:-}
source_card=model_card.yaml
demo_dir=.mlops/demo
if [ -n "$dataset" ]; then
  source_card="examples/$dataset/model_card.yaml"
  demo_dir=".mlops/demo/$dataset"
  if [ ! -f "$source_card" ]; then
    echo "error: DATASET=$dataset: no card $source_card (examples: $(ls examples | tr '\n' ' '))" >&2
    exit 2
  fi
fi
card="$demo_dir/model_card.yaml"
started=$(date +%s)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "1. Start the local MLflow server (SQLite backend, artifacts under .mlops/)"
show "$mlops" stack up

mkdir -p "$demo_dir"
cp "$source_card" "$card"

step "2. Bootstrap Production with a deliberately weak baseline"
if "$mlops" status --card "$card" --json | "$venv/bin/python" -c \
    'import json, sys; sys.exit(json.load(sys.stdin)["production"] is None)'; then
  show "$mlops" status --card "$card"
  show "$mlops" serve --background --card "$card"
  show "$mlops" predict --url "$serving_url" --card "$card"
  cat <<MSG

The loop already ran on this stack, so there is nothing new to promote. To watch it
again from the start: make down && rm -rf .mlops && make demo
(that deletes the local runs and registry). Still running for you to explore:
  MLflow UI       $MLFLOW_TRACKING_URI
  serving API     $serving_url/docs
MSG
  exit 0
fi
show "$mlops" train --estimator dummy --register --promote --card "$card"
show "$mlops" status --card "$card"

step "3. Serve the Production model"
show "$mlops" serve --background --card "$card"
show "$mlops" predict --url "$serving_url" --card "$card"

step "4. A data scientist trains a better candidate and proposes it"
run_id=$("$mlops" train --estimator hist_gradient_boosting --card "$card")
echo "candidate run: $run_id"
show "$mlops" propose "$run_id" --card "$card"

step "5. The pull request's gate: candidate vs Production on the same sealed test rows"
show "$mlops" gate --card "$card" --report "$demo_dir/gate-report.md" --json "$demo_dir/gate-verdict.json"

step "6. The merge promotes the candidate (compare-and-set, audit tags)"
show "$mlops" promote --card "$card" --verdict "$demo_dir/gate-verdict.json"
show "$mlops" status --card "$card"

step "7. The running server picks up the new Production version by itself"
show "$mlops" serve-wait --url "$serving_url" --run-id "$run_id"
show "$mlops" predict --url "$serving_url" --card "$card"

cat <<MSG

Done in $(( $(date +%s) - started )) s. Still running for you to explore:
  MLflow UI       $MLFLOW_TRACKING_URI
  serving API     $serving_url/docs   (OpenAPI; POST /predict, POST /invocations, GET /model)
  gate report     $demo_dir/gate-report.md
Stop everything with: make down
MSG
