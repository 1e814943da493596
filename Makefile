# The two commands a newcomer needs (each does all set-up first, idempotently):
#   make demo   - the end-to-end demo on embedded defaults
#   make test   - every test: Solidity (forge), Python (pytest), generated-artifact drift
SHELL := /bin/bash
export PATH := $(CURDIR)/.bin:$(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup demo test test-contracts test-python check-artifacts artifacts gas slither bench

setup:
	@scripts/setup.sh

demo: setup
	crowdtrain demo

test: setup check-artifacts test-contracts slither test-python

check-artifacts:
	@node scripts/compile_contracts.js --check

artifacts:
	node scripts/compile_contracts.js

# forge fmt check, every forge test (unit, fuzz, invariant), then the gas snapshot check
test-contracts:
	cd contracts && forge fmt --check && forge test && forge snapshot --check $(GAS_SNAPSHOT_FILTER)

# gas snapshot of the unit tests (fuzz/invariant gas averages vary run to run, so they are left
# out); regenerate with: cd contracts && forge snapshot --no-match-test '(fuzz|invariant)'
GAS_SNAPSHOT_FILTER := --no-match-test '(fuzz|invariant)'
gas:
	cd contracts && forge snapshot --check $(GAS_SNAPSHOT_FILTER)

# static analysis; fails on High/Medium findings not triaged in scripts/slither-triage.json
slither:
	scripts/slither.sh

test-python:
	python -m pytest -m "not gpu" $(PYTEST_ARGS)

bench-training: setup
	python bench/train_quality.py && python bench/train_overhead.py && python bench/train_verify.py
