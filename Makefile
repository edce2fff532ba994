# EcoWatt developer entry points. `make run` and `make test` do all set-up on a fresh machine:
# they install uv (pinned, into .tools/) if it is missing, then the locked environment.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
PYTHON ?= python3
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PY = $(UV) run --frozen python
PYTEST_ARGS ?=
# run-distributed: --no-simulator, --environment ENV, --city-seed N, --database NAME, --redis-db N
DISTRIBUTED_ARGS ?=

# Services refuse to start without ECOWATT_ENVIRONMENT (fail closed): each entry point says
# which one it is. A value already in the environment wins (e.g. production on a host).
run token: export ECOWATT_ENVIRONMENT ?= development
test pytest test-% bench-% simulate: export ECOWATT_ENVIRONMENT ?= test

.PHONY: help install run run-distributed test lint format typecheck pytest infra-up infra-down infra-status \
        contracts-docs bench-bus token clean-data

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.installed: uv.lock pyproject.toml $(UV)
	$(UV) sync --frozen --all-packages
	@touch $@

install: .venv/.installed ## Create .venv from the lock file

run: install web-if-possible ## Run the whole platform in one process (http://127.0.0.1:8000)
	$(PY) -m ecowatt_standalone

run-distributed: install infra-up ## Every service in its own process on infra-up's servers, auth as the gateway on :8000 (Ctrl-C stops all)
	$(PY) tools/distributed.py run $(DISTRIBUTED_ARGS)

infra-up: install ## Start (or reuse) Kafka, PostgreSQL and Redis for tests
	$(PY) tools/infra.py up

infra-down: install ## Stop the test infrastructure started by infra-up
	$(PY) tools/infra.py down

infra-status: install ## Show whether Kafka, PostgreSQL and Redis answer
	$(PY) tools/infra.py status

lint: install ## ruff (lint and format check)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: install ## Apply ruff's formatting and safe fixes
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

# One run over every package (libs, services, simulator, standalone): each is checked against
# the others' sources; the incremental cache (.mypy_cache) keeps re-runs quick.
TYPED_PACKAGES = $(wildcard libs/*/ecowatt_* services/*/ecowatt_* simulator/ecowatt_* standalone/ecowatt_*)

typecheck: install ## mypy --strict on every package (libs, services, simulator, standalone)
	$(UV) run --frozen mypy --strict $(TYPED_PACKAGES)

contracts-docs: install ## Regenerate docs/contracts.md from the event models
	$(PY) -m ecowatt_kernel.contracts.docs > docs/contracts.md

pytest: install ## Run pytest only (infrastructure must be up)
	$(UV) run --frozen pytest $(PYTEST_ARGS)

test: install infra-up deploy-tools lint typecheck web-test web chromium pytest ## Everything CI checks, against real Kafka/PostgreSQL/Redis

bench-bus: install infra-up ## Bus throughput: real Kafka broker and in-process backend
	$(PY) bench/bench_bus.py

token: install ## Print a development token (ROLE=admin DISTRICT=610112 ENTERPRISE=...)
	@$(PY) -m ecowatt_standalone.token $(if $(ROLE),--role $(ROLE)) \
		$(if $(DISTRICT),--district $(DISTRICT)) $(if $(ENTERPRISE),--enterprise $(ENTERPRISE))

clean-data: ## Delete standalone data (.data/)
	rm -rf .data

# Targets contributed by libraries and services (fuzz-hj212, bench-codec, bench-registry, …).
-include libs/hj212/hj212.mk simulator/simulator.mk deploy/deploy.mk $(wildcard services/*/service.mk) web/web.mk
