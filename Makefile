# rotbook: two commands for a newcomer (see README.md).
#   make report   set up .venv and build the whole report on the smoke profile (offline, CPU)
#   make test     run the test suite
SHELL := /bin/bash
VENV ?= .venv
PROFILE ?= smoke
# Raw data: ROTBOOK_DATA if set, else ../shared/data when it exists (offline machines), else ./data
# (torchvision downloads MNIST there on a networked machine).
export ROTBOOK_DATA ?= $(if $(wildcard ../shared/data/MNIST),$(abspath ../shared/data),$(CURDIR)/data)
export HF_HUB_OFFLINE ?= 1
export FIFTYONE_DO_NOT_TRACK ?= true

.PHONY: setup report book test lint clean
setup:
	@bash scripts/setup.sh

report: setup
	@$(VENV)/bin/rotbook run --profile $(PROFILE)

book: setup
	@$(VENV)/bin/rotbook book --profile $(PROFILE)

test: setup
	@$(VENV)/bin/python -m pytest -q

lint: setup
	@$(VENV)/bin/ruff check rotcore tests benchmarks notebooks

clean:
	rm -rf book/_build _build .pytest_cache
