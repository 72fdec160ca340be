# CIC data seeding tools. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

BACKEND ?= eth
N ?= 100
DATADIR ?= out
SEED_ARGS ?=
GIFT_THRESHOLD ?= 100
IMPORT_ARGS ?=
# sovereign accounts have no custodial key and never dialled USSD
VERIFY_ARGS_eth := --exclude local_key
VERIFY_ARGS_cic_eth := --retry-for 60
VERIFY_ARGS_cic_ussd := --retry-for 60
VENV := .venv
PY := $(VENV)/bin/python
CONTRACTS := .cache/contracts/.fetched

.PHONY: help setup test test-unit seed create record-height import-users import-balance \
        import-meta verify devnet-up devnet-down devnet-status bench bench-create clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --silent
	touch $@

$(CONTRACTS): $(VENV)/.installed cic_seed/artifacts.py
	$(PY) -m cic_seed.artifacts fetch

setup: $(VENV)/.installed node_modules/.installed $(CONTRACTS) ## venv, anvil and contract artifacts (idempotent)

test: setup ## all tests: unit, then integration against a real devnet on free ports
	$(PY) -m pytest -m "not bench" $(PYTEST_ARGS)

test-unit: setup ## tests that need no services
	$(PY) -m pytest -m "not integration and not bench" $(PYTEST_ARGS)

devnet-up: setup ## start the local devnet (anvil + CIC contracts; custodial services for BACKEND)
	$(PY) -m devnet up --backend $(BACKEND)

devnet-down: ## stop what devnet-up started
	@if [ -x $(PY) ]; then $(PY) -m devnet down; fi

devnet-status: ## show the running devnet
	$(PY) -m devnet status

create: setup ## step 1: generate N users into DATADIR
	$(PY) scripts/create_import_users.py --dir $(DATADIR) --gift-threshold $(GIFT_THRESHOLD) $(SEED_ARGS) $(N)

seed: setup ## the whole job on BACKEND: devnet if nothing is configured, then every step below, then verify
	$(PY) -m devnet auto-up --backend $(BACKEND)
	@$(MAKE) --no-print-directory create SEED_ARGS="--keep-existing $(SEED_ARGS)"
	@$(MAKE) --no-print-directory record-height import-users import-balance import-meta verify
	@echo "seed: BACKEND=$(BACKEND) N=$(N) DATADIR=$(DATADIR): every verify check passed"

record-height: setup ## step 2: note the block height imports start from (kept on re-runs)
	$(PY) scripts/record_height.py $(DATADIR)

import-users: setup ## step 3: register the users through BACKEND
	$(PY) $(BACKEND)/import_users.py $(IMPORT_ARGS) $(DATADIR)

import-balance: setup ## step 3: pay the opening balances (exits when everyone is paid)
	$(PY) $(BACKEND)/import_balance.py $(DATADIR)

import-meta: setup ## step 4: person records, tags and (not for cic_ussd) phone pointers to cic-meta
	$(PY) cic_meta/import_meta.py $(DATADIR)
	$(if $(filter cic_ussd,$(BACKEND)),,$(PY) cic_meta/import_meta_phone.py $(DATADIR))

verify: setup ## step 5: check every user in the network
	$(PY) scripts/verify.py $(VERIFY_ARGS_$(BACKEND)) $(DATADIR)

bench-create: setup ## benchmark user generation (100,000 users)
	$(PY) -m pytest -m bench tests/bench/test_bench_create.py -s $(PYTEST_ARGS)

bench: setup ## benchmark the import path of BACKEND on the devnet
	$(PY) -m pytest -m bench tests -s -k "$(BACKEND)" $(PYTEST_ARGS)

clean: devnet-down ## remove generated data and caches (not the venv)
	rm -rf $(DATADIR) .cache .pytest_cache
