# orderflow: `make run` starts the whole system, `make test` installs everything and tests it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install run test test-unit test-integration test-e2e lint format \
        kafka-up kafka-down kafka-status kafka-logs kafka-up-cluster kafka-down-cluster \
        sandbox-gateway clean

help:
	@echo "make run         start local Kafka (unless ORDERFLOW_KAFKA_BOOTSTRAP answers) + a worker on :6066"
	@echo "make test        install, lint, start a test broker, run every test tier, stop the broker"
	@echo "make lint        ruff, mypy, import contracts"
	@echo "make bench       orderflow and its baselines measured; table + bench/results/*.json (BENCH_ARGS='--quick --only http')"
	@echo "make chaos       orders under worker/broker/gateway faults, audited (CHAOS_ARGS='--orders 2000 --brokers 3 --faults full')"
	@echo "make kafka-up / kafka-down / kafka-status / kafka-logs   the local development broker"
	@echo "make kafka-up-cluster / kafka-down-cluster               a 3-node KRaft cluster on loopback"

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11+ is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev,tracing,bench]'
	@touch $(STAMP)

install: $(STAMP)

run: install  # a worker with the embedded sandbox gateway (scripts/run.sh asks for it)
	@ORDERFLOW_GATEWAY=$${ORDERFLOW_GATEWAY:-sandbox} scripts/run.sh

test: install lint
	$(PY) -m orderflow kafka fetch >/dev/null
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: install
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

kafka-up: install
	$(PY) -m orderflow kafka up
kafka-down: install
	$(PY) -m orderflow kafka down
kafka-status: install
	$(PY) -m orderflow kafka status
kafka-logs: install
	$(PY) -m orderflow kafka logs
kafka-up-cluster: install
	$(PY) -m orderflow kafka up --nodes 3
kafka-down-cluster: install
	$(PY) -m orderflow kafka down --nodes 3

.PHONY: chaos
CHAOS_ARGS ?=
chaos: install
	$(PY) -m orderflow kafka fetch >/dev/null
	$(PY) -m tests.chaos $(CHAOS_ARGS)

.PHONY: bench
BENCH_ARGS ?=
bench: install  # its own broker, sandbox and workers on ports 21092.. (BENCH_ARGS='--quick --only http')
	$(PY) -m orderflow kafka fetch >/dev/null
	$(PY) -m bench $(BENCH_ARGS)

sandbox-gateway: install
	$(PY) -m orderflow sandbox-gateway --port 8099

clean: kafka-down
	rm -rf .run
