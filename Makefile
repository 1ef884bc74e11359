# Sagas in Practice: the two commands are `make lab` (learn) and `make test` (check everything).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sagakit-installed
# Exact versions of every dependency (`make lock` refreshes it); every install uses it.
LOCK   := constraints.txt
LAB_PORT ?= 8888
# Jupyter refuses to run as root (containers, CI) unless told so explicitly.
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
# The Python that makes the venv, found before the venv's own bin folder goes first on PATH.
SYSTEM_PYTHON := $(shell command -v $(PYTHON) 2>/dev/null || echo $(PYTHON))
export PATH := $(abspath $(BIN)):$(PATH)
# Keep Python's bytecode cache on, even where the environment turns it off: Temporal's workflow
# sandbox imports a workflow's modules afresh for every run, and without a __pycache__ each of
# those imports compiles the source again (a quarter more CPU for the tests, measured).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup lock lab test lint typecheck pytest notebooks editions navigation site chaos bench server-start server-stop doctor clean

# pip installs the locked uv, and uv installs the rest: the same pins, three times faster than
# pip (it downloads and compiles in parallel). uv reads UV_INDEX_URL where pip reads
# PIP_INDEX_URL, and trusts the system's certificates (as pip here does), so a proxy's own
# authority is accepted.
# The venv starts without pip (putting pip there takes ensurepip 7 s): the system's pip installs
# uv into it (`pip --python`), and uv installs pip with the rest. Where the system Python has no
# pip, or one older than `--python` (22.3), the venv gets its own pip the slow way first.
# Compiling the modules up front costs the install a few seconds and saves more: left to the
# first import, the same module was compiled by each test process and kernel that started at
# the same moment. Only what no test or lesson imports is left out (COLD: tests of the
# installed packages, mypy's sources beside its compiled modules, tools of other platforms).
# A file that does not compile (a package may ship one) is named and left to its first import.
COLD := /(tests?|testing|mypyc?|pip|setuptools|pkg_resources|fontTools|wcwidth|prompt_toolkit|jedi|parso)/|/numpy/(f2py|distutils)/|/pydevd_attach_to_process/|/playwright/sync_api/|/sqlalchemy/dialects/(mssql|mysql|oracle|postgresql)/
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(SYSTEM_PYTHON) -m venv --without-pip $(VENV)
	@if $(SYSTEM_PYTHON) -c 'import pip, sys; sys.exit([int(n) for n in pip.__version__.split(".")[:2]] < [22, 3])' 2>/dev/null; then \
		pip="$(SYSTEM_PYTHON) -m pip --python $(BIN)/python"; \
	else \
		$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --default-pip >/dev/null || { \
			echo "$(SYSTEM_PYTHON) has no pip (22.3 or newer) and no ensurepip to make one: install pip" \
				"(Debian, Ubuntu: apt install python3-pip python3-venv), then run make again." >&2; exit 1; }; \
		pip="$(BIN)/python -m pip"; \
	fi; \
	echo "$$pip install --quiet -c $(LOCK) uv"; \
	$$pip install --quiet -c $(LOCK) uv
	$(BIN)/uv pip install --quiet --system-certs --python $(BIN)/python -c $(LOCK) -e ".[course,test,site]" pip
	$(BIN)/python -m compileall -q -j0 -x '$(COLD)' $(VENV)/lib || true
	touch $(STAMP)

## setup: create .venv and install sagakit with the course, test and site dependencies, at the
## exact versions in constraints.txt
setup: $(STAMP)

## lock: re-resolve every dependency afresh and write the exact versions to constraints.txt;
## then re-run the notebooks (`make notebooks`) and the tests with them
lock: setup
	$(BIN)/python tools/lock.py

## lab: set up, start the Temporal dev server, open JupyterLab on the notebooks (loopback, token on)
# Quiet on purpose: one URL to open, no news popup, no language-server chatter. The token is
# made here and handed over in the environment (not on the command line), so JupyterLab has no
# generated token to announce and this file prints the one URL itself.
LAB_TOKEN := $(shell $(PYTHON) -c 'import secrets; print(secrets.token_hex(24))' 2>/dev/null)
LAB_QUIET := --log-level=WARN --LabApp.log_level=WARN --ServerApp.jpserver_extensions=jupyter_lsp=False \
	--LabApp.news_url=None \
	--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate
# Each kernel's messages are encrypted (CurveZMQ keys that JupyterLab makes for every kernel whose
# kernelspec supports them, as ipykernel's does): over plain TCP, ipykernel warns of eavesdropping
# in the terminal every time a notebook starts its kernel.
LAB_KERNELS := --KernelManager.transport_encryption=auto

lab: setup
	@$(BIN)/python -m sagakit server start
	@echo "JupyterLab: open http://127.0.0.1:$(LAB_PORT)/lab?token=$(LAB_TOKEN)"
	@echo "(Ctrl-C stops JupyterLab; the Temporal server keeps running until make server-stop)"
	@JUPYTER_TOKEN=$(LAB_TOKEN) $(BIN)/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser --notebook-dir=notebooks $(LAB_ROOT) $(LAB_QUIET) $(LAB_KERNELS)

## test: lint, then the type check and pytest side by side (sagakit tests and every notebook
## under nbval)
# pytest keeps both cores busy but for a tenth of its run, in short gaps: a type check started
# beside it at a lower priority runs mostly in those gaps, and its 25 s come off the total.
# Its verdict still prints within a minute or so, and either one failing fails `make test`.
test: setup lint
	@$(MAKE) --no-print-directory -j2 NICE="nice -n 10" typecheck pytest

lint: setup
	$(BIN)/ruff check sagakit tests tools benchmarks conftest.py
	$(BIN)/ruff format --check sagakit tests tools benchmarks conftest.py

typecheck: setup
	$(NICE) $(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest

## notebooks: regenerate the learner editions, then re-execute every notebook in place (both
## editions of each lesson), the way nbval runs them
notebooks: setup
	$(BIN)/python tools/editions.py --no-execute
	$(BIN)/python tools/execute_notebooks.py

## editions: write each lesson's learner edition (notebooks/NN-*.ipynb) from its solved edition
## (notebooks/solutions/NN-*.ipynb) and execute both; `tools/editions.py --check` lists drift
editions: setup
	$(BIN)/python tools/editions.py

## navigation: regenerate the course index and previous/next links
navigation: setup
	$(BIN)/python tools/navigation.py

## site: build the course site (Sphinx, MyST-NB, the committed outputs; offline) into site/
site: setup
	$(BIN)/python tools/build_site.py

## chaos: the long chaos profile (300 generated fault schedules over the trip saga)
chaos: setup
	$(BIN)/python tools/chaos.py --schedules 300

## bench: every benchmark, printing ratios (see benchmarks/README.md)
bench: setup
	$(BIN)/python benchmarks/run_all.py

server-start: setup
	$(BIN)/python -m sagakit server start

server-stop: setup
	$(BIN)/python -m sagakit server stop

# The doctor runs even before setup (with the system Python): it says what is missing.
doctor:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m sagakit doctor

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
