# Course commands. `make demo` and `make test` create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
# nbgrader runs helper executables (alembic) and kernels from the environment.
export PATH := $(abspath $(VENV))/bin:$(PATH)

# Debian packages: bubblewrap sandboxes the grading kernels, PostgreSQL backs the
# many-grader gradebook test, Chromium runs the JupyterLab browser test.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages hub-setup hub hub-down demo test test-fast lint release bench mutation clean-grading

setup: system-packages $(STAMP)

system-packages:
	@missing=""; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The course with its grading and test groups: what an instructor and CI need
# (a student's environment is `pip install -e .`).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[grading,test]"
	$(PY) -m utils.instructor.lab configure >/dev/null   # plain `jupyter lab` here is the student's view
	@touch $(STAMP)

# The hub's proxy (configurable-http-proxy, npm), pinned by utils/instructor/hub/package-lock.json.
HUB_PROXY := utils/instructor/hub/node_modules/.bin/configurable-http-proxy
hub-setup: system-packages
	@test -x $(HUB_PROXY) || npm ci --prefix utils/instructor/hub --no-audit --no-fund --loglevel=error

## The course on a JupyterHub on 127.0.0.1:8000: Unix accounts (an instructor, two students, the grader),
## the exchange, the formgrader as a service. Ctrl-C stops it; `make hub-down` removes the accounts. As root.
hub: setup hub-setup
	$(PY) -m utils.instructor.hub up

hub-down: setup
	$(PY) -m utils.instructor.hub down

## Regenerate release/ from source/ with nbgrader generate_assignment.
release: setup
	$(PY) -m utils.instructor.release

## The main job: release, sample submissions, parallel grading (feedback, export), class report, score table.
demo: setup
	$(PY) -m utils.instructor.demo

## Every test: lint, checkers, notebooks (nbval), release sync, nbgrader end to end, browser.
test: setup hub-setup lint
	COURSE_REQUIRE_BROWSER=1 $(PY) -m pytest

## The inner loop (a minute or two): the layers' import rules, the contract over every exercise and the
## checker tests; no nbgrader, no sandbox, no browser, no notebooks.
FAST_TESTS := tests/test_layers.py tests/test_contract.py tests/test_registry.py tests/test_environment.py \
	tests/test_notebook_helpers.py $(wildcard tests/test_*_checks.py)
test-fast: setup lint
	$(PY) -m pytest -q $(FAST_TESTS)

lint: setup
	$(VENV)/bin/ruff check .

## Benchmarks (timings are printed, never asserted).
bench: setup
	$(PY) -m utils.instructor.bench

## Mutation testing of the checks (minutes; not part of `make test`): each exercise's kill rate; fails on a
## surviving mutant not recorded in utils/instructor/equivalent_mutants/, a check error or a stale record.
mutation: setup
	$(PY) -m utils.instructor.mutation --strict

clean-grading:
	rm -rf submitted autograded/* feedback gradebook.db export grades.csv
