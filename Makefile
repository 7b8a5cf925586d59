# One place for the commands the README, developers and CI use.
#   make demo    install and start the demo (ERP simulator + OPC UA server, SQLite, demo data)
#   make check   install and run everything CI runs: lint, format check, types, tests with coverage
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
COVERAGE_FLOOR ?= 91

# The core (domain, store, adapters) is held to its own line-coverage floor, not hidden in the total.
CORE_COVERAGE_FLOOR ?= 93
CORE_SOURCES := qualitybridge/domain/*,qualitybridge/store/*,adapters/*

.PHONY: install demo check lint typecheck test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installed once per change of pyproject.toml, not once per target.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/qualitybridge demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow the package-dir mapping (server/ -> qualitybridge.server), so it checks a tree of links
# that has the installed package's shape. Its cache lives outside the clone: mypy re-checks a module whose path or
# mtime differ only if its content hash differs too, so a clean clone (same relative paths) re-checks only what
# changed since the last run on this machine instead of everything (docs/performance.md, the test suite).
MYPY_CACHE_DIR ?= $(HOME)/.cache/qualitybridge/mypy

typecheck: install
	rm -rf build/typecheck && mkdir -p build/typecheck/qualitybridge
	for entry in qualitybridge/*; do ln -s ../../../$$entry build/typecheck/qualitybridge/; done
	ln -s ../../../server build/typecheck/qualitybridge/server
	ln -s ../../../adapters build/typecheck/qualitybridge/adapters
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml --cache-dir '$(MYPY_CACHE_DIR)' -p qualitybridge

# Four pytest-xdist workers on the two cores of the reference machine (TEST_WORKERS=0 runs in this process): the
# suite's servers are forked from a process that has done their imports (tests/fork_server.py), and each worker
# still waits for about half of its time (restarts, ERP rounds, backoffs, the flood's steps), so more workers than
# cores fill those waits: two -> three workers took a clean clone's pytest 279 -> 230 s; three -> four, on a
# slower machine, 296 -> 256 s with the workers busy 57 -> 46 % each (docs/performance.md). loadfile keeps each
# test module (its PostgreSQL half apart, tests/conftest.py) in one worker, so its deployments are started once;
# tests/conftest.py orders these units longest first. pytest-cov combines the workers' data and that of the server
# processes they start (coverage's subprocess patch).
TEST_WORKERS ?= 4

# PYTHONDONTWRITEBYTECODE is cleared for the run: the pytest-xdist controller then compiles the checkout and rewrites
# the test modules' asserts once, before the workers start, instead of every worker and every server process doing it
# (tests/bytecode_ahead.py: a clean clone's start 41-44 -> 31 s of wall, 78 -> 51 CPU-s under coverage).
test: install
	rm -f .coverage .coverage.*
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		--cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)
	@echo "core (domain, store, adapters) line coverage, floor $(CORE_COVERAGE_FLOOR) %:"
	$(BIN)/coverage report --include='$(CORE_SOURCES)' --fail-under=$(CORE_COVERAGE_FLOOR) --skip-covered

# Lint and types beside the tests: on a clean clone mypy fills its cache (about 16 s of CPU) while the first
# deployments start; each target still fails the check on its own.
check:
	$(MAKE) --no-print-directory -j3 lint typecheck test

clean:
	rm -rf build .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache
	find qualitybridge server adapters tests -name __pycache__ -prune -exec rm -rf {} +
