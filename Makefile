# The two commands a new user types are `make demo` and `make test`; each
# creates .venv on first use and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every development install takes its versions from the lock, so a run today
# and a run next month test the same packages; `make lock` refreshes it.
LOCK := constraints/dev.txt
PIP_INSTALL := $(BIN)/pip install -q -c $(LOCK)
STAMP_CORE := $(VENV)/.core-installed
STAMP_TEST := $(VENV)/.test-installed
STAMP_BENCH := $(VENV)/.bench-installed
STAMP_DOCS := $(VENV)/.docs-installed

.PHONY: demo test test-slow test-deps lint bench docs lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The stamps depend on the lock too: a refreshed lock reinstalls.
$(STAMP_CORE): pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_INSTALL) -e '.[demo]'
	touch $@

$(STAMP_TEST): pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_INSTALL) -e '.[test]'
	touch $@

$(STAMP_BENCH): pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_INSTALL) -e '.[test,bench]'
	touch $@

$(STAMP_DOCS): pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_INSTALL) -e '.[docs]'
	touch $@

demo: $(STAMP_CORE)
	$(BIN)/python examples/demo.py

lint: $(STAMP_TEST)
	$(BIN)/ruff check src tests benchmarks examples .ci
	$(BIN)/ruff format --check src tests benchmarks examples .ci
	$(BIN)/mypy --strict src

test: lint
	@bash .ci/ensure-redis || echo "redis-server unavailable: the Redis remote tests will skip"
	$(BIN)/pytest -m "not slow" --cov --cov-report=term -q

test-slow: $(STAMP_TEST)
	@bash .ci/ensure-redis || echo "redis-server unavailable: the Redis remote tests will skip"
	$(BIN)/pytest -m slow -q

# The suite with the runtime dependencies at their declared floors and at the
# newest releases on PyPI (.venv-lowest, .venv-newest), and the integration
# suites with the frameworks at their floors (.venv-integrations); see .ci/test-deps.
test-deps:
	PYTHON=$(PYTHON) bash .ci/test-deps

bench: $(STAMP_BENCH)
	$(BIN)/python -m benchmarks.run

docs: $(STAMP_DOCS)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# Refresh $(LOCK) from a fresh venv at the newest versions pyproject.toml
# allows; then run `make test` and `make test-deps` before committing it.
lock:
	PYTHON=$(PYTHON) bash .ci/lock

clean:
	rm -rf $(VENV) .venv-lowest .venv-newest .pytest_cache .mypy_cache .ruff_cache .coverage
