# Model Canary Operator: the two commands a new user runs are `make demo` and
# `make test`. Both install whatever is missing first: the Python venv, Debian's
# Prometheus and nginx (when running as root), and the pinned Kubernetes test
# binaries built from the Go module proxy (cached under ~/.cache/modelcanary).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
CLUSTER_DIR ?= .cluster
PYTEST_ARGS ?=
# `make test` runs test files on this many workers, each with a control plane
# and a Prometheus of its own (whole files per worker: a file's tests share
# fixtures and run in order). Two fit the 2-core CI machine: the suite took
# 38:50 on one, 23:56 on two.
TEST_WORKERS ?= 2
APT_PACKAGES := prometheus nginx

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# ---- installing what is missing ---------------------------------------------

$(VENV_STAMP): pyproject.toml
	@if ! $(PYTHON) -m venv --help >/dev/null 2>&1 || ! $(PYTHON) -c 'import ensurepip' 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv; \
	  else echo "python3-venv is missing: apt-get install python3-venv" >&2; exit 1; fi; fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(VENV_STAMP) ## the Python virtualenv with runtime, test and dev dependencies

.PHONY: system-deps
system-deps: ## Prometheus and nginx from Debian (installed only when root and missing)
	@missing=""; for pkg in $(APT_PACKAGES); do \
	  PATH="$$PATH:/usr/sbin" command -v $$pkg >/dev/null || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing:$$missing; install them with apt-get as root" >&2; exit 1; fi; \
	  echo "installing$$missing from Debian"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

.PHONY: toolchain
toolchain: ## kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok, helm (cached)
	e2e/toolchain/build.sh all

.PHONY: deps
deps: venv system-deps toolchain

# ---- generated files --------------------------------------------------------

.PHONY: crds
crds: venv ## regenerate crds/ and the chart's crds/ from the pydantic models
	$(PY) -m modelcanary.api.crd crds charts/modelcanary/crds

.PHONY: docs
docs: venv ## regenerate docs/api-reference.md from the models
	$(PY) -m modelcanary.api.reference docs/api-reference.md

# ---- checks -----------------------------------------------------------------

.PHONY: lint
lint: venv ## ruff, formatting, mypy and the import-linter layer contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: format
format: venv ## rewrite the code in the project's style
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: unit
unit: venv ## pure tests: no processes, no network
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

.PHONY: integration
integration: deps ## fast tier: real etcd + kube-apiserver, real Prometheus
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

.PHONY: e2e
e2e: deps ## full tier: adds controller-manager, scheduler and kwok nodes
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

.PHONY: test
test: deps lint ## install what is missing, then lint and run every test
	$(PY) -m pytest --numprocesses=$(TEST_WORKERS) --dist=loadfile $(PYTEST_ARGS)

# ---- running the operator ---------------------------------------------------

.PHONY: run
run: venv ## run the operator against the current kubeconfig (KUBECONFIG or ~/.kube/config)
	$(PY) -m modelcanary run $(RUN_ARGS)

# ---- benchmarks (timing goals live here, not in tests) -----------------------

.PHONY: bench-decide
bench-decide: venv ## decide() for 1,000 ModelDeployments: time per pass and memory
	$(PY) -m bench.decide_throughput

.PHONY: bench-judge
bench-judge: venv ## the sequential judge vs thresholds, Flagger, Argo, Kayenta on simulated canaries
	$(PY) -m bench.judge_simulation $(BENCH_ARGS)

.PHONY: bench-drill
bench-drill: deps ## live rollback drills: time to restore and back, over 10 runs
	$(PY) -m bench.drill_restore --runs $(or $(RUNS),10)

.PHONY: bench-rollback
bench-rollback: deps ## bad candidate (20% errors) to nginx back on stable: sequential vs threshold judge (10 runs each)
	$(PY) -m bench.rollback_time --runs $(or $(RUNS),10)

.PHONY: bench-chaos
bench-chaos: deps ## 20 canaries (good and bad) while the operator, Prometheus and kube-apiserver fail at random
	$(PY) -m bench.chaos --canaries $(or $(CANARIES),20) --seed $(or $(SEED),20261127)

.PHONY: bench-warm
bench-warm: deps ## rollback right after a promotion: warm previous revision (scaleDownDelay) vs cold, 10 runs each
	$(PY) -m bench.warm_restore --runs $(or $(RUNS),10)

.PHONY: bench-metrics
bench-metrics: venv ## the operator's /metrics at N = 1,000 and 10,000: page size, render time, memory; COMPARE=REV measures REV in the same run
	$(PY) -m bench.metrics_page $(if $(COMPARE),--compare $(COMPARE)) $(BENCH_ARGS)

.PHONY: bench-scale
bench-scale: deps argo-rollouts ## the scale report (docs/scale.md): our operator and Argo Rollouts with N (1000) objects each, one cluster, one table; BENCH_ARGS=--rest 60 for a shorter rest window
	$(PY) -m bench.scale_report --objects $(or $(N),1000) $(BENCH_ARGS)

.PHONY: argo-rollouts
argo-rollouts: ## Argo Rollouts' controller v1.10.2 and CRDs from the Go module proxy, for the scale bench only (cached)
	e2e/toolchain/build.sh argo-rollouts

.PHONY: bench-argo-smoke
bench-argo-smoke: deps argo-rollouts ## the scale report's Argo Rollouts side alone, N (10) Rollouts, short windows
	$(PY) -m bench.scale_report --controllers argo --objects $(or $(N),10) --namespaces 2 --rest 30 --settle 10 --reactions 1 --kcm-qps 0

# ---- a local cluster for people ---------------------------------------------

.PHONY: cluster-up
cluster-up: deps ## a full-tier cluster and Prometheus left running; prints the kubeconfig
	$(PY) -m e2e.harness up --dir $(CLUSTER_DIR) --tier full --prometheus --gateway-api

.PHONY: cluster-down
cluster-down: ## stop the cluster started by cluster-up or demo
	@if [ -x $(PY) ]; then $(PY) -m e2e.harness down --dir $(CLUSTER_DIR); \
	else echo "no venv, so no cluster was started from here"; fi

.PHONY: demo
demo: deps ## the canary story on a local cluster: promotion, automatic rollback, a drill (DEMO_FAST=1: short)
	$(PY) -m e2e.demo --dir $(CLUSTER_DIR) $(if $(filter-out 0,$(DEMO_FAST)),--fast)

.PHONY: demo-down
demo-down: cluster-down ## stop what make demo started

.PHONY: clean
clean: cluster-down ## remove the venv and caches (the toolchain cache in ~/.cache stays)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find operator -name '*.egg-info' -type d -prune -exec rm -rf {} +
