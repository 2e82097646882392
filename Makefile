# `make test` is the one test command: README.md names it and .ci/run runs it.
# It works in the project's venv, .venv (made here if missing): a stock Debian or Ubuntu
# Python refuses `pip install` outside a venv (PEP 668). `make test PYTHON=python3` uses
# another interpreter as it is.
VENV := .venv
PYTHON ?= $(VENV)/bin/python
# pytest-xdist with four workers: most of a test's time goes on waiting for the processes
# it starts and for the server, so on two cores four workers beat two. Tests that change
# the whole PostgreSQL cluster take turns (cluster_wide, tests/conftest.py).
# pytest's exit 5 (no test ran) fails make, and so CI.
PYTEST_ARGS ?= -n 4

.PHONY: test install lint
$(VENV)/bin/python:
	python3 -m venv $(VENV)

install: $(if $(filter $(VENV)/bin/python,$(PYTHON)),$(VENV)/bin/python)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'

lint:
	$(PYTHON) -m ruff check cryomigrate tests
	$(PYTHON) -m mypy cryomigrate

test: install lint
	$(PYTHON) -m pytest $(PYTEST_ARGS)
