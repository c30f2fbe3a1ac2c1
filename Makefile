# One source of truth for the commands a developer and CI run.
SHELL := bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint format demo bench clean

## setup: create .venv from requirements.txt (re-run when it changes)
setup: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

## test: the whole suite, as CI runs it (Hypothesis "ci" profile: derandomized, every example); starts its own sinks
test: setup
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest

## test-fast: the edit-test loop, under a minute: no test marked slow, a tenth of the Hypothesis examples, stop at the first failure
test-fast: setup
	HYPOTHESIS_PROFILE=dev $(PY) -m pytest -m "not slow" -x -q

## lint: ruff lint and format check
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## format: apply ruff's formatting and safe fixes
format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

## demo: start the sink and import the bundled sample
demo: setup
	@bin/setup | cat
	@$(PY) -m movymporter --csv examples/films.csv --url http://localhost:$${SINK_PORT:-9009}/movies; status=$$?; \
	  echo "importer exit status: $$status (1 = some rows were rejected: the sample has real-world defects on purpose)"; \
	  [[ $$status -le 1 ]]

## bench: measure throughput and memory -> bench/RESULTS.md, bench/results.png
bench: setup
	$(PY) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(PY) bench/run.py

## clean: stop the sink and remove its runtime files
clean:
	bin/clean
