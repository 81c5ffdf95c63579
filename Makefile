# Two commands: `make run` (the whole system, locally) and `make test` (every test).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FAULTS_EXAMPLES ?= 100
CHAOS_SECONDS ?= 600
CHAOS_SEED ?=

.PHONY: run test test-deps test-admin test-catalog test-e2e test-node test-faults-quick faults chaos bench lint setup clean-venv

# Run pytest; exit code 5 (no test collected) is an error here, and says so.
define pytest
	@echo "+ pytest $(1)"; $(BIN)/pytest $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: 'pytest $(1)' collected no tests"; fi; exit $$rc
endef

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

.env:
	cp .env.example .env
	@echo "created .env from .env.example (edit it to change ports, URLs and secrets)"

## run: admin web :8000, catalog web :8001, relay, catalog worker, Flower :5555 (Ctrl-C stops all)
run: $(STAMP) .env
	$(BIN)/python scripts/bootstrap.py
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/honcho start -f Procfile

## test: installs what the tests need (Chromium, npm packages), lint, one pytest session per
## Django project, the end-to-end session (with the Node.js clients' tests), quick faults
test: $(STAMP) test-deps
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory test-admin test-catalog test-e2e test-faults-quick

test-admin: $(STAMP)
	$(call pytest,tests/admin --ds=admin_project.settings.test)

test-catalog: $(STAMP)
	$(call pytest,tests/catalog --ds=catalog_project.settings.test)

test-e2e: $(STAMP) test-deps
	$(call pytest,tests/e2e -p no:django)

## test-deps: Debian's chromium + chromium-driver and clients/node's packages, when missing
test-deps:
	@bash scripts/test_deps.sh

## test-node: only the Node.js clients' tests (node --test), on the e2e stack
test-node: $(STAMP) test-deps
	$(call pytest,tests/e2e/test_node_clients.py -p no:django)

test-faults-quick: $(STAMP)
	$(call pytest,tests/faults -p no:django -m quick)

## faults: every fault-injection scenario, then the table (scenario, sent, applied, lost, ...),
## and the long runs of the generative tests (malformed messages, any outbox row, hostile HTTP)
faults: $(STAMP)
	$(call pytest,tests/faults -p no:django)
	GENERATIVE_EXAMPLES=$(FAULTS_EXAMPLES) $(BIN)/pytest tests/catalog/test_poison.py \
	  --ds=catalog_project.settings.test -k any_malformed
	GENERATIVE_EXAMPLES=$(FAULTS_EXAMPLES) $(BIN)/pytest tests/admin/test_relay_limits.py \
	  --ds=admin_project.settings.test -k any_outbox_row
	GENERATIVE_EXAMPLES=$$(( $(FAULTS_EXAMPLES) * 10 )) $(BIN)/pytest \
	  tests/admin/test_hostile_generative.py --ds=admin_project.settings.test
	GENERATIVE_EXAMPLES=$$(( $(FAULTS_EXAMPLES) * 10 )) $(BIN)/pytest \
	  tests/catalog/test_hostile_generative.py --ds=catalog_project.settings.test

## chaos: random faults (seeded; the seed is printed) under HTTP writes for CHAOS_SECONDS (600),
## then one checker's verdict; CHAOS_SEED=N repeats a run; JSON in tests/artifacts/chaos.json
chaos: $(STAMP)
	$(BIN)/python -m harness.chaos --seconds $(CHAOS_SECONDS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

## bench: every benchmark in one run; table, bench/results/<timestamp>.json and .png
bench: $(STAMP)
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
