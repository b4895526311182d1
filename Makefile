# modelport — train, serve and deploy machine-learning models on Kubernetes.
# Run `make help` for the list of targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS_BIN := $(CURDIR)/.tools/bin
export PATH := $(CURDIR)/$(BIN):$(TOOLS_BIN):$(PATH)

# Image for the service; the tag defaults to the bento version `modelport build` prints.
IMG ?= modelport:latest
KIND_CLUSTER ?= modelport
MINIKUBE_PROFILE ?= modelport
NAMESPACE ?= modelport
RELEASE ?= modelport
CHART := helm/modelport
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k drift"`.
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Setup

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: modelport needs Python 3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[tensorflow,dev]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create the virtual environment and install modelport with all extras.

.PHONY: tools
tools: ## Install test tools: Prometheus/promtool (Debian) and helm (into .tools/bin when absent).
	bash hack/install-system-deps.sh
	bash hack/install-helm.sh $(TOOLS_BIN)

.PHONY: setup
setup: venv tools ## Everything the demo and the tests need.

##@ Main job

.PHONY: demo
demo: venv ## Train the demo models and serve them locally, printing a sample prediction.
	$(BIN)/modelport demo

.PHONY: train
train: venv ## Train the three built-in recipes.
	$(BIN)/modelport train breast-cancer
	$(BIN)/modelport train diabetes
	$(BIN)/modelport train breast-cancer-keras

.PHONY: serve
serve: venv ## Serve the models in the local store on port 3000.
	$(BIN)/modelport serve

.PHONY: build
build: venv ## Build the bento (prints its tag).
	$(BIN)/modelport build

##@ Development

.PHONY: test
test: setup ## Run the whole test suite (everything but e2e, which needs a cluster).
	$(BIN)/python -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Only the fast unit tests.
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

.PHONY: lint
lint: venv ## ruff and mypy.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: fmt
fmt: venv ## Format the code with ruff.
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: clean
clean: ## Remove the virtual environment, tools and caches.
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache reports
