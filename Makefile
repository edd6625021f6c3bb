# The two commands a new user types are `make demo` and `make test`; each
# creates .venv on first use and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_CORE := $(VENV)/.core-installed
STAMP_TEST := $(VENV)/.test-installed
STAMP_BENCH := $(VENV)/.bench-installed

.PHONY: demo test test-slow lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP_CORE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(STAMP_BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

demo: $(STAMP_CORE)
	$(BIN)/python examples/demo.py

lint: $(STAMP_TEST)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy --strict src

test: lint
	$(BIN)/pytest -m "not slow" --cov --cov-report=term -q

test-slow: $(STAMP_TEST)
	$(BIN)/pytest -m slow -q

bench: $(STAMP_BENCH)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
