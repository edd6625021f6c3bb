# The two commands a new user types are `make demo` and `make test`; each
# creates .venv on first use and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_CORE := $(VENV)/.core-installed
STAMP_TEST := $(VENV)/.test-installed
STAMP_BENCH := $(VENV)/.bench-installed
STAMP_DOCS := $(VENV)/.docs-installed

.PHONY: demo test test-slow lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP_CORE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[demo]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(STAMP_BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

$(STAMP_DOCS): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[docs]'
	touch $@

demo: $(STAMP_CORE)
	$(BIN)/python examples/demo.py

lint: $(STAMP_TEST)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy --strict src

test: lint
	@bash .ci/ensure-redis || echo "redis-server unavailable: the Redis remote tests will skip"
	$(BIN)/pytest -m "not slow" --cov --cov-report=term -q

test-slow: $(STAMP_TEST)
	@bash .ci/ensure-redis || echo "redis-server unavailable: the Redis remote tests will skip"
	$(BIN)/pytest -m slow -q

bench: $(STAMP_BENCH)
	$(BIN)/python -m benchmarks.run

docs: $(STAMP_DOCS)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
