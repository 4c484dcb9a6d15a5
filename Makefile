# Flowdeploy: `make run` starts the studio, `make test` runs every test. Only Python 3.11+ is needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
APP_STAMP := $(VENV)/.installed-app
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint format install install-test chromium runtime clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Flowdeploy needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(APP_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(APP_STAMP)

install: $(APP_STAMP)

install-test: $(TEST_STAMP)

## run: install, migrate, start Redis if needed, Celery worker and beat, the studio; load the samples.
run: $(APP_STAMP)
	$(BIN)/python scripts/run.py

## test: lint, then the whole suite: unit, integration (Redis, Celery, flow runtime) and browser tests.
test: $(TEST_STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(TEST_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## chromium: the browser tests drive Debian's chromium; install it when it is missing.
chromium:
	@sh scripts/ensure_chromium.sh

## soak: ten minutes (SOAK_SECONDS) of steady load on a real deployment; fails if a process grows (docs/reliability.md).
.PHONY: soak
soak: $(APP_STAMP)
	$(BIN)/python benchmarks/soak.py

## runtime: build the flow runtime virtualenv ahead of time (make run does it too).
runtime: $(APP_STAMP)
	$(BIN)/python manage.py build_runtime

clean:
	rm -rf var/test .pytest_cache
