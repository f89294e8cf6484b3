#!/usr/bin/env bash
# The PR's "build and curl" check: run the serving image against a tracking server and
# curl /predict, /invocations and /model.
# Usage: scripts/image-test.sh [TAG]   (after scripts/image.sh; `make image-test` does both)
#
# By default it starts a throwaway MLflow server (SQLite, temporary folder) on a free
# loopback port and bootstraps a cheap model in it, so it needs nothing but Docker.
# To test a real candidate instead, set IMAGE_TEST_TRACKING_URI (and MODEL_URI, e.g.
# runs:/<candidate run ID>/model, or MODEL_NAME); MLflow credentials pass through.
# The container uses the host's network and listens on 127.0.0.1 only.
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

if [ -n "${IMAGE_TEST_TRACKING_URI:-}" ]; then
  tracking=$IMAGE_TEST_TRACKING_URI
else
  mlflow_port=$(free_port)
  tracking="http://127.0.0.1:$mlflow_port"
  echo "starting a throwaway MLflow server at $tracking and training a cheap model ..."
  MLOPS_HOME="$work/mlops" MLFLOW_PORT=$mlflow_port "$mlops" stack up >/dev/null
  MLFLOW_TRACKING_URI=$tracking "$mlops" train --estimator ridge --register --promote >/dev/null 2>"$work/train.log" \
    || { cat "$work/train.log" >&2; exit 1; }
fi
model_env=()
if [ -n "${MODEL_URI:-}" ]; then
  model_env=(--env MODEL_URI)
else
  model_env=(--env "MODEL_NAME=${MODEL_NAME:-$("$venv/bin/python" -c 'from pipeline.gitops.card import load_card; from pathlib import Path; print(load_card(Path("model_card.yaml")).model.name)')}")
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
