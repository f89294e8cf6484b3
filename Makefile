# The one entry point for people and for workflows. `make help` lists every target.
# Each recipe calls the `mlops` CLI (or a script in scripts/); no logic lives here.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MLOPS := $(VENV)/bin/mlops
STAMP := $(VENV)/.installed
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
export MLFLOW_TRACKING_URI ?= http://127.0.0.1:$(or $(MLFLOW_PORT),5000)
ESTIMATOR ?= hist_gradient_boosting
DATASET ?=
PYTEST_ARGS ?=

.PHONY: help
help: ## list every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- environment -------------------------------------------------------------

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt constraints.txt infra/requirements.txt
	@scripts/setup-venv.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

.PHONY: setup
setup: $(STAMP) ## create .venv and install pinned dependencies (quick when nothing changed)

.PHONY: constraints
constraints: $(STAMP) ## re-pin constraints.txt from the current .venv
	@$(PY) -m pip freeze --exclude-editable | scripts/write-constraints.sh > constraints.txt

# --- local stack ---------------------------------------------------------------

.PHONY: up
up: $(STAMP) ## start the local MLflow server at 127.0.0.1:5000 (BACKEND=sqlite|mysql, docs/backends.md)
	@$(MLOPS) stack up --backend $(BACKEND)

.PHONY: down
down: $(STAMP) ## stop everything `make up`, `make demo` and `make serve-bg` started
	@$(MLOPS) stack down

# --- backends ------------------------------------------------------------------
# BACKEND=sqlite: SQLite and an artifact folder in .mlops/ (the default, no login).
# BACKEND=mysql: MariaDB, an S3 protocol server and MLflow with basic auth, all in
# .mlops/mysql/; `source .mlops/mysql/client.env` gives the CLI the admin login.
BACKEND ?= sqlite

.PHONY: services
services: ## install and start what the tests need (MariaDB, dockerd, base image; idempotent, root)
	@scripts/ci-services.sh

# --- the model loop --------------------------------------------------------------

.PHONY: train
train: $(STAMP) ## train and log one run (ESTIMATOR=name, PARAMS="--param k=v ...")
	@$(MLOPS) train --estimator $(ESTIMATOR) $(PARAMS)

.PHONY: notebook
notebook: $(STAMP) ## open the experiment notebook in JupyterLab (starts the local MLflow server first)
	@$(MLOPS) stack up --backend $(BACKEND)
	@$(VENV)/bin/jupyter lab notebooks/experiment.ipynb $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: status
status: $(STAMP) ## show the registered model, its Production version and metrics
	@$(MLOPS) status

.PHONY: demo
demo: $(STAMP) ## run the whole loop locally, stack left running (DATASET=rand_health: classification)
	@DATASET="$(DATASET)" scripts/demo.sh

# --- quality -----------------------------------------------------------------------

.PHONY: test
test: $(STAMP) $(AIRFLOW_STAMP) ## the whole suite; as root first installs/starts MariaDB, dockerd, base image
	@scripts/test.sh "$(VENV)" "$(AIRFLOW_VENV)" $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: $(STAMP) ## the inner loop: every test that needs no server, Docker, JVM or Airflow (-m unit)
	@$(PY) -m pytest -m unit -q $(PYTEST_ARGS)

.PHONY: test-part
test-part: $(STAMP) ## one part of the suite, as the PR workflow's jobs run it (MLOPS_TEST_PART=unit|integration|e2e|airflow)
	@scripts/test-part.sh "$(VENV)" "$(AIRFLOW_VENV)" $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## run the fast unit tests of the stages only
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff on everything, mypy (strict) on the packages
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

## --- infra ---------------------------------------------------------------------
# The cloud stack (docs/infra.md). STACK and COMMAND come from the command line or the
# environment, e.g. `make infra-preview STACK=prod`; the infra workflow sets them.

.PHONY: infra-setup
infra-setup: ## install only the Pulumi SDKs into .venv (what the infra workflow needs)
	@infra/install.sh "$(PYTHON)" "$(VENV)"

.PHONY: infra-test
infra-test: $(STAMP) ## test the Pulumi program under mocks, its security rules and the policy pack
	@$(PY) -m pytest tests/infra $(PYTEST_ARGS)

.PHONY: infra-lint
infra-lint: $(STAMP) ## lint infra.yml (zizmor, actionlint, schema) and the tracking Dockerfile
	@$(VENV)/bin/zizmor --offline .github/workflows/infra.yml
	@$(VENV)/bin/actionlint .github/workflows/infra.yml
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/infra.yml
	@$(VENV)/bin/hadolint infra/tracking_image/Dockerfile

.PHONY: infra-preview
infra-preview: ## pulumi preview of STACK with the policy pack (needs the Pulumi CLI)
	@$(PY) infra/pulumi_command.py --command preview

.PHONY: infra-run
infra-run: ## run pulumi COMMAND (preview|up|refresh|destroy) on STACK, non-interactively
	@$(PY) infra/pulumi_command.py

# --- gate and promotion ---------------------------------------------------------
# The gate on a pull request, the promotion on main, and the checks around them
# (docs: pipeline/gitops/gate.py, pipeline/gitops/promote.py). The workflows call these targets.

CARD ?= model_card.yaml
GATE_DIR ?= .mlops/gate
WORKFLOWS := .github/workflows/pr.yml .github/workflows/promote.yml .github/workflows/registry-check.yml \
	.github/workflows/rollback.yml .github/workflows/dags.yml .github/workflows/gate.yml \
	.github/workflows/gate-request.yml .github/workflows/serving-image.yml
# ROLLBACK_TO (rollback.yml's input) is never pasted into a recipe: `mlops rollback`
# reads it from the environment and accepts only a version number.
export ROLLBACK_TO

.PHONY: gate
gate: $(STAMP) ## gate the card's candidate vs Production, read-only (report, verdict, plot, slices in GATE_DIR)
	@$(MLOPS) gate --card $(CARD) --report $(GATE_DIR)/report.md --json $(GATE_DIR)/verdict.json \
		--plot $(GATE_DIR)/plot.png --slices $(GATE_DIR)/slices.json

.PHONY: gate-comment
gate-comment: $(STAMP) ## post or update the one sticky PR comment with the gate report
	@$(MLOPS) pr-comment --report $(GATE_DIR)/report.md

.PHONY: gate-request
gate-request: ## a pull request asks for the gate (gate-request.yml); gate.yml answers it
	@echo "the gate runs in gate.yml, with main's code, once this workflow completes"

.PHONY: gate-pr
gate-pr: $(STAMP) ## gate.yml: gate the event's pull request with this code, post the signed verdict
	@$(MLOPS) gate-pr --card $(CARD) --out $(GATE_DIR)

.PHONY: verdict-key
verdict-key: $(STAMP) ## make the key pair that signs the gate workflow's verdicts (docs/gate.md)
	@$(MLOPS) verdict-key

.PHONY: promote
promote: $(STAMP) ## re-compute the gate and, on a pass, make the candidate Production (compare-and-set)
	@$(MLOPS) promote --card $(CARD)

.PHONY: rollback
rollback: $(STAMP) ## break glass: move Production back to previous-production (or ROLLBACK_TO=version)
	@$(MLOPS) rollback --card $(CARD)

.PHONY: monitor
monitor: $(STAMP) ## drift of the last 24 h of served traffic vs the training reference (MONITOR_ARGS="--from T --to T --report r.html ...")
	@$(MLOPS) monitor $(MONITOR_ARGS)

.PHONY: registry-check
registry-check: $(STAMP) ## exit 1 when the registry's Production is not the run the card names
	@$(MLOPS) registry-check --card $(CARD)

.PHONY: audit
audit: $(STAMP) ## known vulnerabilities in every pin of constraints.txt (pip-audit; needs the advisory database online)
	@$(VENV)/bin/pip-audit --strict --disable-pip --no-deps --progress-spinner off -r constraints.txt

.PHONY: workflow-lint
workflow-lint: $(STAMP) ## lint pr.yml, promote.yml, registry-check.yml and the other workflows (zizmor, actionlint, schema)
	@$(VENV)/bin/zizmor --offline --min-severity medium $(WORKFLOWS)
	@$(VENV)/bin/zizmor --offline --persona auditor $(WORKFLOWS)
	@$(VENV)/bin/actionlint $(WORKFLOWS)
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)

.PHONY: test-gate
test-gate: $(STAMP) ## the gate's tests: statistics, card, decision, PR comment, workflows
	@$(PY) -m pytest tests/unit/test_stats*.py tests/unit/test_card.py tests/unit/test_gate*.py tests/workflows $(PYTEST_ARGS)

.PHONY: bench-gate
bench-gate: $(STAMP) ## time the gate's compute (evaluation and bootstrap) on the demo data
	@$(PY) benchmarks/gate/run.py

.PHONY: bench-monitor
bench-monitor: $(STAMP) ## the monitor's family-wise false-alarm rate on windows drawn from the reference, and its power on shifts
	@$(PY) -m benchmarks.monitor.false_alarms

.PHONY: bench-prediction-log
bench-prediction-log: $(STAMP) ## the prediction log's cost: request-path time per record() and the writer's rows/s
	@$(PY) -m benchmarks.monitor.writer

.PHONY: bench-gate-sim
bench-gate-sim: $(STAMP) ## false promotion and power of the gate vs the anchors' point rules, by simulation
	@$(PY) -m benchmarks.gate_simulation.run

# --- orchestration ----------------------------------------------------------------
# Airflow DAGs (dags/, docs/orchestration.md) in their own environment: Airflow pins
# fastapi lower than the serving API needs, so it cannot share .venv.

$(AIRFLOW_STAMP): pyproject.toml dags/requirements.txt dags/constraints.txt
	@scripts/setup-airflow-venv.sh "$(PYTHON)" "$(AIRFLOW_VENV)"
	@touch $(AIRFLOW_STAMP)

.PHONY: dags-venv
dags-venv: $(AIRFLOW_STAMP) ## create .venv-airflow with Airflow and the pipeline (quick when unchanged)

.PHONY: dags-sync
dags-sync: ## upload dags/ to s3://$$AIRFLOW_DAGS_BUCKET/dags/ (the dags workflow; AWS CLI, the dags role)
	@test -n "$$AIRFLOW_DAGS_BUCKET" || { echo "error: AIRFLOW_DAGS_BUCKET is not set (the stack's airflowDagsBucket output)" >&2; exit 2; }
	@aws s3 sync dags/ "s3://$$AIRFLOW_DAGS_BUCKET/dags/" --delete --only-show-errors \
	  --exclude "*__pycache__/*" --exclude "*.pyc" --exclude "requirements.txt" --exclude "constraints.txt"

.PHONY: dags-test
dags-test: $(STAMP) $(AIRFLOW_STAMP) ## run both DAGs with dag.test() against real MLflow and serving processes
	@MLOPS_MAIN_VENV="$(abspath $(VENV))" $(AIRFLOW_VENV)/bin/python -m pytest tests/dags $(PYTEST_ARGS)

# --- serving ----------------------------------------------------------------------
# The serving API (serving/, docs/serving.md): foreground, background, image, benchmark.

SERVING_HOST ?= 127.0.0.1
SERVING_PORT ?= 8000
IMAGE ?= mlops-serving:local

.PHONY: serve
serve: $(STAMP) ## serve the Production model at 127.0.0.1:8000 in the foreground (Ctrl+C stops)
	@$(MLOPS) serve --host $(SERVING_HOST) --port $(SERVING_PORT)

.PHONY: serve-bg
serve-bg: $(STAMP) ## start the serving API in the background (PID file in .mlops/) and wait for a model
	@$(MLOPS) serve --background --host $(SERVING_HOST) --port $(SERVING_PORT)

.PHONY: image
image: ## build the serving image (IMAGE=name:tag; needs Docker: scripts/dockerd.sh start)
	@scripts/image.sh $(IMAGE)

.PHONY: serving-image-push
serving-image-push: ## build the serving image, push it to SERVING_REPOSITORY_URL (ECR) and print its digest
	@scripts/push-serving-image.sh

.PHONY: tracking-image-test
tracking-image-test: $(STAMP) ## build the cloud MLflow image and run it as the ECS task would (needs Docker)
	@$(PY) -m pytest tests/tracking_image $(PYTEST_ARGS)

.PHONY: image-test
image-test: $(STAMP) image ## run the image against a tracking server and curl /predict, /invocations, /model
	@scripts/image-test.sh $(IMAGE)

.PHONY: bench-serving
bench-serving: $(STAMP) ## this server (onnx twin and sklearn) vs `mlflow models serve`, per estimator: req/s, p50, p99, ratio, cold start, memory
	@$(PY) benchmarks/serving/run.py

.PHONY: bench-serving-limits
bench-serving-limits: $(STAMP) ## three concurrent 16 MB bodies of each input format: statuses, seconds, the server's peak memory
	@$(PY) benchmarks/serving/limits.py

# --- benchmarks -------------------------------------------------------------------

.PHONY: bench-score
bench-score: $(STAMP) ## mlops score on the local, spark and api engines: rows/s and peak memory
	@$(PY) benchmarks/score/run.py

.PHONY: bench-cli
bench-cli: $(STAMP) ## `mlops --help` and `mlops status` start-up, warm: the median of repeated runs (goal: 1 s)
	@$(PY) benchmarks/cli/startup.py

.PHONY: bench
bench: bench-gate bench-gate-sim bench-serving bench-serving-limits bench-score bench-monitor bench-prediction-log bench-cli ## every benchmark under benchmarks/ (ratios against peers measured in the same run)
