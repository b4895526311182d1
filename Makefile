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
# Extra `python -m bench` arguments, e.g. "--out /tmp/bench".
BENCH_ARGS ?=

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
tools: ## Install test tools: Prometheus/promtool (Debian), Helm 4 as helm and Helm 3 as helm3 (.tools/bin).
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

##@ Benchmarks

.PHONY: bench
bench: venv tools ## Benchmark suite (about 13 minutes): writes bench/results/latest.{json,md}.
	$(BIN)/python -m bench $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: venv tools ## The benchmark suite with short load points (about 6 minutes).
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

# The git revision `make bench-rev` compares the working tree with.
BASE ?= HEAD~1

.PHONY: bench-rev
bench-rev: venv tools ## /predict and V2 infer throughput of the working tree against revision BASE, in turn.
	$(BIN)/python -m bench.revisions $(BASE)

.PHONY: bench-explain
bench-explain: venv tools ## What /explain costs per demo model against /predict, first use, memory, image size.
	$(BIN)/python -m bench.explain

.PHONY: bench-shadow
bench-shadow: venv tools ## What mirroring 10 % and 100 % of requests to a canary costs the stable pod.
	$(BIN)/python -m bench.shadow

.PHONY: bench-estimators
bench-estimators: venv tools ## Single-row latency per estimator family, in-process and served.
	$(BIN)/python -m bench.estimators

##@ Development

.PHONY: test
# lint is a prerequisite after setup: ruff and mypy fail in seconds, before the long pytest run.
test: setup lint ## Lint (ruff, mypy), then the whole test suite (everything but e2e, which needs a cluster).
	$(BIN)/python -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Only the fast unit tests.
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

.PHONY: lint
lint: venv ## ruff check, ruff format --check and mypy (part of `make test`).
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

##@ Kubernetes

HELM ?= helm
# Helm 3: the chart tests and helm-lint check the chart with both majors.
HELM3 ?= helm3
KUBECTL ?= kubectl
KIND ?= kind
MINIKUBE ?= minikube
# Models baked into the image (comma-separated tags; default: bentofile.yaml's, whose Keras
# model brings TensorFlow). MODELS=breast-cancer,diabetes gives a lean sklearn-only image.
MODELS ?=
# Extra `modelport build --image` arguments, e.g. "--backend buildah" or "--no-pull".
IMAGE_ARGS ?=
# The base image the bento's Dockerfile builds FROM, for the registry-free stand-in.
BASE_IMAGE ?= docker.io/library/python:3.11-slim
METRICS_SERVER_VERSION ?= v0.7.2
PROM_OPERATOR_VERSION ?= v0.93.0
PROM_OPERATOR_CRDS := https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/$(PROM_OPERATOR_VERSION)/example/prometheus-operator-crd
# The e2e suite's two images, a model version apart (`make e2e-images`, own model store).
E2E_IMG ?= $(firstword $(subst :, ,$(IMG))):e2e
E2E_IMG_NEXT ?= $(firstword $(subst :, ,$(IMG))):e2e-next
E2E_HOME ?= $(CURDIR)/.tools/e2e-bentoml
E2E_MODEL ?= breast-cancer
# Helm 4 applies server-side: take back what kubectl rollouts changed (docs/deploy.md).
HELM_APPLY_FLAGS = $(shell PATH="$(PATH)" $(HELM) version --template '{{.Version}}' 2>/dev/null | grep -q '^v4' && echo --force-conflicts)
# Where images are loaded from: the Docker daemon when it answers, else podman's storage.
IMAGE_TOOL ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
# Extra `helm upgrade --install` arguments, e.g. "-f my-values.yaml".
HELM_ARGS ?=

.PHONY: manifests
manifests: ## Regenerate k8s/base and k8s/monitoring from the chart.
	bash hack/gen-manifests.sh k8s

.PHONY: helm-lint
helm-lint: ## helm lint --strict with every ci/*-values.yaml scenario, with Helm 4 and Helm 3.
	for helm in $(HELM) $(HELM3); do for f in $(CHART)/ci/*-values.yaml; do \
	  $$helm lint --strict $(CHART) -f "$$f"; done; done

.PHONY: test-chart
test-chart: venv ## Chart, manifest and Prometheus rule tests (helm, promtool; no cluster).
	$(BIN)/python -m pytest -m chart tests/chart $(PYTEST_ARGS)

.PHONY: cluster-addons
cluster-addons: ## Prometheus Operator CRDs into the current kube context (for the ServiceMonitor).
	for crd in servicemonitors podmonitors prometheusrules; do \
	  $(KUBECTL) apply --server-side -f $(PROM_OPERATOR_CRDS)/monitoring.coreos.com_$$crd.yaml; \
	done

.PHONY: kind-up
kind-up: ## Create the kind cluster with metrics-server and the Prometheus Operator CRDs.
	$(KIND) get clusters | grep -qx '$(KIND_CLUSTER)' || \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --config k8s/kind/cluster.yaml --wait 180s
	$(KUBECTL) config use-context kind-$(KIND_CLUSTER)
	$(KUBECTL) apply -f https://github.com/kubernetes-sigs/metrics-server/releases/download/$(METRICS_SERVER_VERSION)/components.yaml
	@# kind's kubelets serve self-signed certificates: metrics-server must not verify them.
	$(KUBECTL) -n kube-system get deployment metrics-server -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q kubelet-insecure-tls || \
	  $(KUBECTL) -n kube-system patch deployment metrics-server --type=json \
	    -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
	$(MAKE) cluster-addons
	$(KUBECTL) -n kube-system rollout status deployment/metrics-server --timeout=180s

.PHONY: image
image: venv ## Build the bento and its image modelport:<bento version>, also tagged IMG (docker, podman or buildah).
	$(BIN)/modelport build --image $(if $(MODELS),--models $(MODELS)) --image-tag $(IMG) $(IMAGE_ARGS)

.PHONY: base-image
base-image: ## Build a stand-in for BASE_IMAGE from Debian packages into containers-storage (root; no registry).
	bash hack/build-base-image.sh $(BASE_IMAGE)

.PHONY: image-offline
image-offline: base-image ## `make image` without a registry (as CI does): against the stand-in base, never pulling.
	$(MAKE) image IMAGE_ARGS="--no-pull $(IMAGE_ARGS)"

.PHONY: test-image
test-image: venv ## Build the sklearn-only image from scratch and run it as the chart would (root, podman).
	$(BIN)/python -m pytest -m image tests/image $(PYTEST_ARGS)

.PHONY: e2e-images
e2e-images: venv ## The e2e suite's images: E2E_MODEL trained twice into E2E_HOME, one image per version.
	rm -rf $(E2E_HOME)
	BENTOML_HOME=$(E2E_HOME) $(BIN)/modelport train $(E2E_MODEL)
	BENTOML_HOME=$(E2E_HOME) $(BIN)/modelport build --image --models $(E2E_MODEL) --image-tag $(E2E_IMG) $(IMAGE_ARGS)
	BENTOML_HOME=$(E2E_HOME) $(BIN)/modelport train $(E2E_MODEL) --force --promote
	BENTOML_HOME=$(E2E_HOME) $(BIN)/modelport build --image --models $(E2E_MODEL) --image-tag $(E2E_IMG_NEXT) $(IMAGE_ARGS)
	BENTOML_HOME=$(E2E_HOME) $(BIN)/python -c "import bentoml; print('\n'.join(m.tag.version for m in sorted(bentoml.models.list('$(E2E_MODEL)'), key=lambda m: m.info.creation_time)))" > $(E2E_HOME)/versions
	@echo "e2e images: $(E2E_IMG) and $(E2E_IMG_NEXT), model versions: $$(tr '\n' ' ' < $(E2E_HOME)/versions)"

# docker: `kind load docker-image`; podman alone: `podman save` + `kind load image-archive`.
.PHONY: kind-load
kind-load: ## Load IMG, and the e2e images when built, into the kind nodes (Docker or podman).
	for img in $(IMG) $$(test -f $(E2E_HOME)/versions && echo $(E2E_IMG) $(E2E_IMG_NEXT)); do \
	  if [ "$(IMAGE_TOOL)" = docker ]; then $(KIND) load docker-image "$$img" --name $(KIND_CLUSTER); \
	  else archive=$$(mktemp --suffix .tar) && podman save --format docker-archive -o "$$archive" "$$img" && \
	    $(KIND) load image-archive "$$archive" --name $(KIND_CLUSTER); rc=$$?; rm -f "$$archive"; [ $$rc -eq 0 ]; fi; \
	done

.PHONY: deploy
deploy: ## helm upgrade --install the chart with IMG into NAMESPACE, waiting for the rollout.
	$(HELM) upgrade --install $(RELEASE) $(CHART) --namespace $(NAMESPACE) --create-namespace \
	  --set image.repository=$(firstword $(subst :, ,$(IMG))) --set image.tag=$(lastword $(subst :, ,$(IMG))) \
	  --set image.pullPolicy=IfNotPresent $(HELM_APPLY_FLAGS) --wait --timeout 10m $(HELM_ARGS)
	$(KUBECTL) -n $(NAMESPACE) rollout history deployment/$(RELEASE)
	$(HELM) test $(RELEASE) --namespace $(NAMESPACE) --logs

.PHONY: undeploy
undeploy: ## helm uninstall the release.
	$(HELM) uninstall $(RELEASE) --namespace $(NAMESPACE) --wait

.PHONY: e2e
e2e: venv ## End-to-end suite on the current kube context (needs e2e-images loaded; ~10 min).
	@test -f $(E2E_HOME)/versions || { echo "e2e: run \`make e2e-images\` and load them first" >&2; exit 2; }
	MODELPORT_E2E_IMAGE=$(E2E_IMG) MODELPORT_E2E_IMAGE_NEXT=$(E2E_IMG_NEXT) MODELPORT_E2E_MODEL=$(E2E_MODEL) \
	  MODELPORT_E2E_MODEL_VERSION=$$(sed -n 1p $(E2E_HOME)/versions) \
	  MODELPORT_E2E_MODEL_VERSION_NEXT=$$(sed -n 2p $(E2E_HOME)/versions) \
	  $(BIN)/python -m pytest -m e2e tests/chart/test_chart_e2e.py tests/chart/test_chart_e2e_canary.py $(PYTEST_ARGS)

.PHONY: kind-down
kind-down: ## Delete the kind cluster.
	$(KIND) delete cluster --name $(KIND_CLUSTER)

.PHONY: minikube-up
minikube-up: ## Start minikube (3 nodes) with metrics-server and the Prometheus Operator CRDs.
	$(MINIKUBE) status -p $(MINIKUBE_PROFILE) >/dev/null 2>&1 || \
	  $(MINIKUBE) start -p $(MINIKUBE_PROFILE) --nodes 3 --addons metrics-server
	$(KUBECTL) config use-context $(MINIKUBE_PROFILE)
	$(MAKE) cluster-addons

.PHONY: minikube-load
minikube-load: ## Load IMG, and the e2e images when built, into minikube (from a podman archive without Docker).
	for img in $(IMG) $$(test -f $(E2E_HOME)/versions && echo $(E2E_IMG) $(E2E_IMG_NEXT)); do \
	  if [ "$(IMAGE_TOOL)" = docker ]; then $(MINIKUBE) -p $(MINIKUBE_PROFILE) image load "$$img"; \
	  else archive=$$(mktemp --suffix .tar) && podman save --format docker-archive -o "$$archive" "$$img" && \
	    $(MINIKUBE) -p $(MINIKUBE_PROFILE) image load "$$archive"; rc=$$?; rm -f "$$archive"; [ $$rc -eq 0 ]; fi; \
	done

.PHONY: minikube-deploy
minikube-deploy: ## deploy, on the minikube context.
	$(KUBECTL) config use-context $(MINIKUBE_PROFILE)
	$(MAKE) deploy

.PHONY: minikube-e2e
minikube-e2e: ## e2e, on the minikube context.
	$(KUBECTL) config use-context $(MINIKUBE_PROFILE)
	$(MAKE) e2e

.PHONY: minikube-down
minikube-down: ## Delete the minikube profile.
	$(MINIKUBE) delete -p $(MINIKUBE_PROFILE)
