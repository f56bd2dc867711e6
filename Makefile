# rotbook: two commands for a newcomer (see README.md).
#   make report   set up .venv and build the whole report on the smoke profile (offline, CPU)
#   make test     run the test suite
#   make site     build the published site from the committed executed notebooks (no execution); the
#                 GitHub Pages workflow runs exactly this
#   make browser-check   open every page of book/_build/html in headless Chromium (after report or site)
SHELL := /bin/bash
VENV ?= .venv
PROFILE ?= smoke
# Raw data: ROTBOOK_DATA if set, else rotcore.paths decides (../shared/data beside the checkout when it
# exists, else ./data), for make and the rotbook CLI alike.
export HF_HUB_OFFLINE ?= 1
export FIFTYONE_DO_NOT_TRACK ?= true

.PHONY: setup report book site browser-check wheel-check test lint clean
setup:
	@bash scripts/setup.sh

report: setup
	@$(VENV)/bin/rotbook run --profile $(PROFILE)

book: setup
	@$(VENV)/bin/rotbook book --profile $(PROFILE)

# The published site: the committed pages of the published profile, rendered without executing anything.
# -W: a warning fails the build (the plain `jupyter-book build book/` a reader types must stay clean).
site: setup
	@env -u ROTBOOK_BOOK_PROFILE $(VENV)/bin/jupyter-book build -W -n --keep-going book/

# Headless Chromium over every page of book/_build/html (installs Debian's chromium + chromium-driver).
browser-check: setup
	@bash scripts/browser_setup.sh
	@$(VENV)/bin/python -m rotcore.sitecheck book/_build/html

# The built wheel in a fresh venv, away from the checkout: one smoke notebook executed with papermill.
wheel-check: setup
	@bash scripts/wheel_check.sh

test: setup
	@$(VENV)/bin/python -m pytest -q

lint: setup
	@$(VENV)/bin/ruff check rotcore tests benchmarks notebooks

clean:
	rm -rf book/_build _build .pytest_cache
