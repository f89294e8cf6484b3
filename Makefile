# The one entry point for people and for workflows. `make help` lists every target.
# Each recipe calls the `mlops` CLI (or a script in scripts/); no logic lives here.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MLOPS := $(VENV)/bin/mlops
STAMP := $(VENV)/.installed
export MLFLOW_TRACKING_URI ?= http://127.0.0.1:$(or $(MLFLOW_PORT),5000)
ESTIMATOR ?= hist_gradient_boosting
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
up: $(STAMP) ## start the local MLflow server (SQLite, artifacts in .mlops/) at 127.0.0.1:5000
	@$(MLOPS) stack up

.PHONY: down
down: $(STAMP) ## stop everything `make up`, `make demo` and `make serve-bg` started
	@$(MLOPS) stack down

# --- the model loop --------------------------------------------------------------

.PHONY: train
train: $(STAMP) ## train and log one run (ESTIMATOR=name, PARAMS="--param k=v ...")
	@$(MLOPS) train --estimator $(ESTIMATOR) $(PARAMS)

.PHONY: status
status: $(STAMP) ## show the registered model, its Production version and metrics
	@$(MLOPS) status

.PHONY: demo
demo: $(STAMP) ## run the whole loop locally and leave the stack running (`make down` stops it)
	@scripts/demo.sh

# --- quality -----------------------------------------------------------------------

.PHONY: test
test: $(STAMP) ## run the whole test suite (creates .venv if missing)
	@$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## run the fast unit tests of the stages only
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff on everything, mypy (strict) on the packages
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy
