# Sagas in Practice: the two commands are `make lab` (learn) and `make test` (check everything).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sagakit-installed
LAB_PORT ?= 8888
# Jupyter refuses to run as root (containers, CI) unless told so explicitly.
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup lab test lint typecheck pytest notebooks server-start server-stop doctor clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[course,test]"
	touch $(STAMP)

## setup: create .venv and install sagakit with the course and test dependencies
setup: $(STAMP)

## lab: set up, start the Temporal dev server, open JupyterLab on the notebooks (loopback, token on)
lab: setup
	$(BIN)/python -m sagakit server start
	$(BIN)/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser --notebook-dir=notebooks $(LAB_ROOT)

## test: lint, type-check, then pytest (sagakit tests and every notebook under nbval)
test: setup lint typecheck pytest

lint: setup
	$(BIN)/ruff check sagakit tests tools
	$(BIN)/ruff format --check sagakit tests tools

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest

## notebooks: re-execute every notebook in place, the way nbval runs them
notebooks: setup
	$(BIN)/python tools/execute_notebooks.py

server-start: setup
	$(BIN)/python -m sagakit server start

server-stop: setup
	$(BIN)/python -m sagakit server stop

doctor: setup
	$(BIN)/python -m sagakit doctor

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
