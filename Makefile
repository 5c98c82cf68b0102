# Sportello: `make up` runs the system, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYPROJECTS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml)

.PHONY: install test unit lint contracts up bench clean

install: $(STAMP)

$(STAMP): constraints.txt requirements-dev.txt $(PYPROJECTS)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 needed"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt setuptools wheel
	$(BIN)/python -m pip install -q --no-build-isolation -c constraints.txt -r requirements-dev.txt
	touch $(STAMP)

## make test: every test, unit and end to end, against real RabbitMQ and MongoDB (or the emulator)
test: install
	bash deploy/local/ensure-chromium.sh
	bash deploy/local/ensure-package.sh kubectl kubectl
	bash deploy/local/ensure-package.sh promtool prometheus
	$(BIN)/python -m pytest

## make unit: the tests that need no broker or database
unit: install
	$(BIN)/python -m pytest -m "not e2e" libs services

lint: install
	$(BIN)/ruff check .
	$(BIN)/bandit -q -c pyproject.toml -r libs services tools
	$(BIN)/mypy libs/contracts/sportello_contracts libs/runtime/sportello_runtime services/intake/sportello_intake services/routing/sportello_routing services/sla/sportello_sla services/gateway/sportello_gateway services/knowledge/sportello_knowledge services/analytics/sportello_analytics tools/mongo_emulator/sportello_mongo_emulator tools/mailcatcher/sportello_mailcatcher
	@# Test and bench code too, each folder on its own: services share test module names.
	for code in conftest.py tests bench libs/*/tests services/*/tests tools/*/tests; do \
		$(BIN)/mypy $$code || exit 1; \
	done

contracts: install
	$(BIN)/python -m sportello_contracts.schema docs/events

up: install
	bash deploy/local/up.sh

bench: install
	$(BIN)/python bench/intake_bench.py
	$(BIN)/python bench/mail_bench.py
	$(BIN)/python bench/bus_bench.py
	$(BIN)/python bench/emulator_bench.py
	$(BIN)/python bench/clock_bench.py
	$(BIN)/python bench/system_bench.py
	$(BIN)/python bench/queue_bench.py
	$(BIN)/python bench/gateway_bench.py
	$(BIN)/python bench/console_bench.py
	$(BIN)/python bench/portal_bench.py
	$(BIN)/python bench/knowledge_bench.py
	$(BIN)/python bench/analytics_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .run
