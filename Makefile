# convbench: `make run` runs the experiments, `make test` runs the tests.
# Both first create or refresh .venv from uv.lock with the machine's Python 3.11.

PROFILE ?= quick
# WAIT=1: if another `make run` holds this checkout, wait for it instead of stopping.
WAIT ?=
# Only these datasets / variants (space-separated names): make run DATASET=mnist VARIANT="mlp cnn"
DATASET ?=
VARIANT ?=
# RETRY=1: try again the downloads found unavailable before, even if nothing changed.
RETRY ?=
# The local servers of `make ui` (127.0.0.1 only) and the pool a `make worker` joins.
MLFLOW_PORT ?= 5000
PREFECT_PORT ?= 4200
# The servers' store: sqlite (files in the project) or postgres (a PostgreSQL 16 cluster in
# .services/postgres/, on 127.0.0.1:PG_PORT, as docker/compose.yaml runs them).
DB ?= sqlite
PG_PORT ?= 5433
POOL ?= convbench-gpu
GPU_WORKERS ?= 0
NAME ?= $(shell hostname)
SERVICES = $(VENV)/bin/convbench services
PORTS = --mlflow-port $(MLFLOW_PORT) --prefect-port $(PREFECT_PORT)
STORE = --db $(DB) --postgres-port $(PG_PORT)
PYTHON ?= python3.11
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
# Keep Prefect's database (flow-run history for `prefect server start`) in the project.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
# Compile .pyc at install: with PYTHONDONTWRITEBYTECODE set, every stage would otherwise
# recompile TensorFlow from source (20 s instead of 6 s per process here).
export UV_COMPILE_BYTECODE := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
# No phoning home from the local Prefect API (and no error lines when offline).
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# The temporary local API can take over 20 s (its default limit) to start on 2 busy cores.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
# Stage commands say `python`: the locked environment comes first on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help env run test test-fast bench lint repro ui ui-stop deploy worker

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

env: $(VENV)/.synced ## create or refresh .venv from uv.lock

# Synced again only when the lock or the project's metadata changed: `uv sync` itself
# takes about 2 s here (it re-checks every bytecode file), a no-op `make run` 1/5 of its budget.
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked
	@touch $@

run: env ## run the experiments through the Prefect flow (PROFILE=quick|full|ci, DATASET=…, VARIANT=…, WAIT=1, RETRY=1)
	$(VENV)/bin/python -m flows.experiment --profile $(PROFILE) $(if $(filter 1 yes true,$(WAIT)),--wait) \
		$(foreach d,$(DATASET),--dataset $(d)) $(foreach v,$(VARIANT),--variant $(v)) \
		$(if $(filter 1 yes true,$(RETRY)),--retry-unavailable)

test: env ## run the whole test suite, CI's command (two workers: the end-to-end tests mostly wait)
	$(VENV)/bin/python -m pytest -n 2 --dist worksteal

test-fast: env ## the inner loop: every test but the end-to-end ones (-m "not slow")
	$(VENV)/bin/python -m pytest -n 2 --dist worksteal -m "not slow"

bench: env ## input-pipeline and VGG16 benchmarks → bench/RESULTS.md (needs the mirror)
	$(VENV)/bin/python -m bench.input_pipeline

lint: env ## ruff, and hadolint on the Dockerfiles
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint docker/Dockerfile.cpu docker/Dockerfile.gpu docker/Dockerfile.mlflow

ui: env ## start the MLflow and Prefect servers and a worker (127.0.0.1; DB=postgres: on PostgreSQL)
	$(SERVICES) $(PORTS) $(STORE) up --gpu-workers $(GPU_WORKERS)

ui-stop: ## stop what `make ui` started (PostgreSQL's data stay for the next `make ui`)
	$(SERVICES) $(PORTS) down

deploy: env ## create the work pools and automations, deploy flows/prefect.yaml to the `make ui` server
	$(SERVICES) $(PORTS) deploy

worker: env ## join a work pool from this machine: make worker POOL=convbench-gpu PREFECT_API_URL=…
	@test -n "$$PREFECT_API_URL" || { echo "set PREFECT_API_URL (and MLFLOW_TRACKING_URI)"; exit 2; }
	CONVBENCH_RUNNER=$(NAME) PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30 CONVBENCH_TRACKING_PATIENCE=120 \
		$(VENV)/bin/prefect worker start --pool $(POOL) --type process \
		--name $(NAME) --limit 1

repro: env ## plain `dvc repro` of params.yaml, no Prefect; the run lock as make run (WAIT=1)
	$(VENV)/bin/python -m convbench.ops.runlock $(if $(filter 1 yes true,$(WAIT)),--wait) \
		-- $(VENV)/bin/dvc repro
