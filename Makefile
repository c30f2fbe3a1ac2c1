# One source of truth for the commands a developer and CI run.
SHELL := bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint format demo bench clean

## setup: create .venv from requirements.txt (re-run when it changes)
setup: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

## test: the whole suite; it starts its own sinks on free ports
test: setup
	$(PY) -m pytest

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
