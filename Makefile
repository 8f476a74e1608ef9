# Every target sets itself up: a fresh clone needs only Python 3.11 and make.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
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

test: $(STAMP)
	$(PYTEST) --durations=20 tests

# The quick loop: lint, then the unit tests that take no more than a few seconds each.
check: lint
	$(PYTEST) -m "not slow" tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check rslp tests bench tasks
	$(VENV)/bin/ruff format --check rslp tests bench tasks
	$(VENV)/bin/mypy rslp
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint worker.Dockerfile
	$(VENV)/bin/shellcheck scripts/*.sh

demo: $(STAMP)
	$(VENV)/bin/rslp demo

bench: $(STAMP)
	$(PY) -m bench.run_all

emulator: $(STAMP)
	$(PY) -m rslp.testing.emulator $(EMULATOR_PORT)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
