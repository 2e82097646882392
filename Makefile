# `make test` is the one test command: README.md names it and .ci/run runs it.
PYTHON ?= python3

.PHONY: test install lint
install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'

lint:
	$(PYTHON) -m ruff check cryomigrate tests
	$(PYTHON) -m mypy cryomigrate

test: install lint
	$(PYTHON) -m pytest
