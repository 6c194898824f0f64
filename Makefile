# Two commands set everything up: `make run` (start the service) and `make test` (the suite).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench clean

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install Ops-Core with its dev tools

run: $(STAMP) ## start Ops-Core on 127.0.0.1:8000 with in-memory storage
	$(BIN)/opscore serve

test: $(STAMP) ## run the whole test suite
	$(BIN)/pytest

lint: $(STAMP) ## ruff lint and format check, and mypy (with the pydantic plugin) on opscore/ and bench/
	$(BIN)/ruff check opscore tests examples bench
	$(BIN)/ruff format --check opscore tests examples bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix opscore tests examples bench
	$(BIN)/ruff format opscore tests examples bench

bench: $(STAMP) ## run the benchmarks in bench/ (see bench/README.md); needs wrk and redis-server
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
