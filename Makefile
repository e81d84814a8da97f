# GuessLyfe chain backend. `make help` lists the targets.
SHELL := /bin/bash
PY := .venv/bin/python
CONFIG ?= config/local.toml
export GL_CONFIG := $(CONFIG)
PYTEST_ARGS ?= -n 2 --dist loadgroup
CHAINS ?= 1

.PHONY: help install services run test lint types contracts deploy simulate migrate bench fuzz screenshots stop clean

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install: ## install what is missing (.venv, npm tools, redis); idempotent
	@scripts/bootstrap.sh

services: install ## start PostgreSQL, Redis and anvil (1 s blocks)
	@scripts/services.sh start

run: install ## the whole local system: chain, db, redis, deploy, traffic, indexer, keeper, API + feed (CHAINS=2: two chains)
	@$(PY) -m scripts.run --config $(CONFIG) --chains $(CHAINS)

test: install ## the whole suite, as CI runs it
	@scripts/services.sh start pg redis
	@$(PY) -m pytest $(PYTEST_ARGS)

lint: install ## ruff + mypy --strict on the packages
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check core indexer keeper api tests bench scripts
	@$(PY) -m mypy

types: install ## mypy --strict only
	@$(PY) -m mypy

contracts: install ## recompile contracts/ into abi/ and artifacts/
	@node scripts/compile.js

deploy: install ## deploy to the configured chain and write deployments/<chain_id>.json
	@$(PY) -m scripts.deploy --config $(CONFIG)

simulate: install ## wallets trading against the deployed contracts (Ctrl-C stops)
	@$(PY) -m scripts.simulate --config $(CONFIG)

migrate: install ## apply sql/ migrations to the configured database
	@$(PY) -m indexer migrate --config $(CONFIG)

bench: install ## benchmarks (figures go to docs/benchmarks.md)
	@scripts/services.sh start pg redis
	@$(PY) -m bench.all

fuzz: install ## long property and fault runs (GL_FUZZ=1: 20,000 contract sequences, 20 crash/fault seeds, 30 provider-fault seeds)
	@scripts/services.sh start pg redis
	@GL_FUZZ=1 $(PY) -m pytest $(PYTEST_ARGS) tests/contracts/test_invariants.py tests/indexer/test_property.py tests/indexer/test_crash.py tests/indexer/test_faults.py

screenshots: install ## the reference page in Chromium against a live local stack → docs/screenshots/*.png
	@scripts/services.sh start pg redis
	@GL_SCREENSHOT_DIR=docs/screenshots $(PY) -m pytest -p no:cacheprovider -q tests/e2e/test_web.py

stop: ## stop everything `make run`/`make services` started
	@-[ -f .data/run/stack.pid ] && kill $$(cat .data/run/stack.pid) 2>/dev/null; true
	@scripts/services.sh stop

clean: stop ## stop and delete local state (.data)
	@rm -rf .data
