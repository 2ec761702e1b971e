# Every target builds .venv at the repository root by itself when it is missing, and
# re-installs when pyproject.toml is newer than the stamp left by the last install.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECKED := src tests examples bench

.PHONY: run cluster test lint bench servers .venv

.venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

run: .venv
	$(BIN)/wes bank serve

# Three bank nodes on 127.0.0.1:8081-8083 as one cluster over a local NATS server.
cluster: .venv
	$(BIN)/python examples/bank_cluster.py

lint: .venv
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy

# The tests start private Redis and PostgreSQL servers; this installs them when missing.
servers:
	.ci/install-servers

test: lint servers
	$(BIN)/pytest -q tests

bench: .venv servers
	$(BIN)/python bench/run.py
