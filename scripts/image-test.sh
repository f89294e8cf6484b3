#!/usr/bin/env bash
# The PR's "build and curl" check: run the serving image with the card's candidate and
# curl /predict, /invocations and /model with the model's own input example.
# Usage: scripts/image-test.sh [TAG]   (after scripts/image.sh; `make image-test` does both)
#
# With IMAGE_TEST_TRACKING_URI (pr.yml: the registry, read-only credentials) the container
# serves MODEL_URI=runs:/<candidate_run_id>/model from the card (MLOPS_CARD, default
# model_card.yaml): the model the pull request proposes. Without it, a throwaway MLflow
# server (SQLite, temporary folder) on a free loopback port gets a cheap run, proposed in
# a copy of the card, and the same path serves it: it needs nothing but Docker.
# MODEL_URI or MODEL_NAME, when set, override the candidate; MLflow credentials pass
# through. The container uses the host's network and listens on 127.0.0.1 only.
set -euo pipefail
image=${1:-${IMAGE:-mlops-serving:local}}
venv=${VENV:-.venv}
mlops="$venv/bin/mlops"
docker_cli() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi; }
free_port() {
  "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work=$(mktemp -d)
container="mlops-serving-test-$$"
cleanup() {
  docker_cli rm --force "$container" >/dev/null 2>&1 || true
  if [ -f "$work/mlops/mlflow.pid" ]; then MLOPS_HOME="$work/mlops" "$mlops" stack down >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

card=${MLOPS_CARD:-model_card.yaml}
if [ -n "${IMAGE_TEST_TRACKING_URI:-}" ]; then
  tracking=$IMAGE_TEST_TRACKING_URI
else
  mlflow_port=$(free_port)
  tracking="http://127.0.0.1:$mlflow_port"
  echo "starting a throwaway MLflow server at $tracking and proposing a cheap candidate ..."
  MLOPS_HOME="$work/mlops" MLFLOW_PORT=$mlflow_port "$mlops" stack up >/dev/null
  run_id=$(MLFLOW_TRACKING_URI=$tracking "$mlops" train --estimator ridge --card "$card" 2>"$work/train.log") \
    || { cat "$work/train.log" >&2; exit 1; }
  cp "$card" "$work/card.yaml"
  card="$work/card.yaml"
  "$mlops" propose "$run_id" --card "$card" >/dev/null
fi
model_env=()
if [ -n "${MODEL_URI:-}" ]; then
  model_env=(--env MODEL_URI)
elif [ -n "${MODEL_NAME:-}" ]; then
  model_env=(--env MODEL_NAME)
else
  candidate=$("$venv/bin/python" -c 'import sys; from pathlib import Path; from pipeline.gitops.card import load_card
from pipeline.errors import ConfigError
try: print(load_card(Path(sys.argv[1])).model.candidate_run_id or "")
except ConfigError as err: print(f"error: {err}", file=sys.stderr); sys.exit(2)' "$card")
  if [ -z "$candidate" ]; then
    echo "error: $card: model.candidate_run_id is empty, so there is no candidate to serve (mlops propose RUN_ID)" >&2
    exit 2
  fi
  echo "serving the card's candidate: runs:/$candidate/model"
  model_env=(--env "MODEL_URI=runs:/$candidate/model")
fi

port=$(free_port)
url="http://127.0.0.1:$port"
docker_cli run --detach --name "$container" --network host \
  --env "MLFLOW_TRACKING_URI=$tracking" --env MLFLOW_TRACKING_USERNAME \
  --env MLFLOW_TRACKING_PASSWORD --env MLFLOW_S3_ENDPOINT_URL \
  --env SERVING_HOST=127.0.0.1 --env "SERVING_PORT=$port" "${model_env[@]}" \
  "$image" >/dev/null
echo "container $container from $image on $url; waiting for a model ..."
for _ in $(seq 1 180); do
  if curl --silent --fail "$url/ready" >/dev/null 2>&1; then break; fi
  if [ "$(docker_cli inspect --format '{{.State.Running}}' "$container")" != true ]; then
    docker_cli logs "$container" 2>&1 | tail -n 20 >&2
    echo "error: the container exited" >&2
    exit 1
  fi
  sleep 1
done
if ! curl --silent --fail "$url/ready" >/dev/null; then
  docker_cli logs "$container" 2>&1 | tail -n 20 >&2
  echo "error: no model loaded after 180 s: $(curl --silent "$url/model")" >&2
  exit 1
fi

# The request bodies are the model's own input example, as the OpenAPI page shows it.
curl --silent --fail "$url/openapi.json" >"$work/openapi.json"
example() {
  "$venv/bin/python" -c 'import json, sys; spec = json.load(open(sys.argv[1]))
print(json.dumps(spec["paths"][sys.argv[2]]["post"]["requestBody"]["content"]["application/json"]["example"]))' \
    "$work/openapi.json" "$1"
}
example /predict >"$work/predict.json"
example /invocations >"$work/invocations.json"

check() {  # check NAME EXPECTED-SUBSTRING CURL-ARGS...
  local name=$1 expected=$2 answer
  shift 2
  answer=$(curl --silent --show-error --fail-with-body "$@")
  case "$answer" in
    *"$expected"*) echo "ok   $name: ${answer:0:160}" ;;
    *) echo "FAIL $name: ${answer:0:300}" >&2; exit 1 ;;
  esac
}
check "POST /predict" '"predictions":[' -X POST -H 'Content-Type: application/json' \
  --data-binary "@$work/predict.json" "$url/predict"
check "POST /invocations" '{"predictions":[' -X POST -H 'Content-Type: application/json' \
  --data-binary "@$work/invocations.json" "$url/invocations"
check "GET /model" '"loaded_at":"' "$url/model"
status=$(curl --silent --output /dev/null --write-out '%{http_code}' -X POST \
  -H 'Content-Type: application/json' --data '{"records": []}' "$url/predict")
if [ "$status" != 422 ]; then echo "FAIL an empty batch got $status, not 422" >&2; exit 1; fi
echo "ok   an empty batch is 422"
echo "image $image answers /predict, /invocations and /model"
