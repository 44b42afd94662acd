# Course commands. `make demo` and `make test` create .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
# nbgrader runs helper executables (alembic) and kernels from the environment.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo test release bench clean-grading

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $(STAMP)

## Regenerate release/ from source/ with nbgrader generate_assignment.
release: setup
	$(PY) -m utils.instructor.release

## The main job: release, sample submissions, autograde, feedback, export, score table.
demo: setup
	$(PY) -m utils.instructor.demo

## Every test: checkers, notebooks (nbval), release sync, nbgrader end to end.
test: setup
	$(PY) -m pytest

## Benchmarks (timings are printed, never asserted).
bench: setup
	$(PY) -m utils.instructor.bench

clean-grading:
	rm -rf submitted autograded/* feedback gradebook.db export grades.csv
