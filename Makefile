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

test: setup check-artifacts test-contracts test-python

check-artifacts:
	@node scripts/compile_contracts.js --check

artifacts:
	node scripts/compile_contracts.js

test-contracts:
	cd contracts && forge test

test-python:
	python -m pytest -m "not gpu" $(PYTEST_ARGS)
