# Every target sets itself up: a fresh clone needs only Python 3.11 and make.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Tools that only read the code live in their own environment: their dependencies (import-linter
# brings rich, which structlog then imports and uses for tracebacks) must not change how rslp runs
# or how long its processes take to start, here or against the worker image, which has none of them.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
# `make lint` checks the package's layering and that no package's modules import in a circle
# ([tool.importlinter] in pyproject.toml).
IMPORT_LINTER := import-linter==2.17
export WANDB_MODE := disabled
# `make emulator` serves here; another: `make emulator EMULATOR_PORT=8086`.
EMULATOR_PORT ?= 8085

# The suite in 4 processes (pytest-xdist), each with its own emulators on free ports; most of
# its time is spent waiting on leases and workers, not on the CPU. A module's tests that share
# a module-scoped fixture stay together (tests/conftest.py), everything else spreads out.
PYTEST := $(PY) -m pytest -q -p no:cacheprovider -n 4

.PHONY: install test check lint demo bench emulator clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(TOOLS_STAMP): Makefile
	test -x $(TOOLS)/bin/python || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q '$(IMPORT_LINTER)'
	touch $(TOOLS_STAMP)

# The suite starts hundreds of Python processes (workers, task processes, CLIs). Where
# PYTHONDONTWRITEBYTECODE is set, each would compile every rslp module it imports from source;
# compiling once here is what an installed package has (pip compiles at install).
test: $(STAMP)
	$(PY) -m compileall -q rslp bench tasks
	$(PYTEST) --durations=20 tests

# The quick loop: lint, then the unit tests that take no more than a few seconds each.
check: lint
	$(PYTEST) -m "not slow" tests/unit

lint: $(STAMP) $(TOOLS_STAMP)
	$(VENV)/bin/ruff check rslp tests bench tasks
	$(VENV)/bin/ruff format --check rslp tests bench tasks
	$(VENV)/bin/mypy rslp
	PYTHONPATH=$(CURDIR) $(TOOLS)/bin/lint-imports
	$(VENV)/bin/hadolint worker.Dockerfile
	$(VENV)/bin/shellcheck scripts/*.sh

demo: $(STAMP)
	$(VENV)/bin/rslp demo

bench: $(STAMP)
	$(PY) -m bench.run_all

emulator: $(STAMP)
	$(PY) -m rslp.testing.emulator $(EMULATOR_PORT)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
