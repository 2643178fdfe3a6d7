# ivr: the two commands a new user runs on a fresh Debian machine, as root:
#   make demo    install and build what is needed, start everything, place calls, stop
#   make test    install what is needed and run the whole suite (real Asterisk included)
SHELL := /bin/bash
# The interpreter the virtual environment is built from (scripts/pick-python.sh).
PYTHON ?= $(shell bash scripts/pick-python.sh)
VENV := .venv
PY := $(VENV)/bin/python
export IVR_STATE_DIR ?= $(CURDIR)/var/testpbx

.PHONY: help deps venv prepare lint test unit reliability bench up down demo status clean

help:
	@echo "make demo | test | up | down | lint | unit | reliability | bench | clean"

deps:
	@bash scripts/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	@bash scripts/check-python.sh $(PYTHON)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@mkdir -p var
	@echo "setup: installing the Python packages into $(VENV) (log var/pip.log)"
	@($(PY) -m pip install --disable-pip-version-check --upgrade pip \
	  && $(PY) -m pip install --disable-pip-version-check -e '.[test,bench]') > var/pip.log 2>&1 \
	  || { tail -n 20 var/pip.log; printf '\nsetup: pip could not install the packages (log var/pip.log)\n  fix: check the network to the package index, then make again\n\n'; exit 1; }
	@touch $@

venv: deps $(VENV)/.installed

prepare: venv
	@$(PY) -m testpbx prepare

lint: venv
	$(VENV)/bin/ruff check ivr testpbx tests migrations bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --explicit-package-bases tests

unit: venv
	$(VENV)/bin/pytest tests/unit

test: prepare lint
	$(VENV)/bin/pytest

# The fault tests alone (about 4 minutes), then their table in docs/reliability.md.
reliability: prepare
	rm -rf var/reliability
	$(VENV)/bin/pytest -q tests/e2e/test_service_restart.py tests/e2e/test_database_outage.py \
	  tests/e2e/test_asterisk_restart.py tests/e2e/test_hostile_sip.py
	$(PY) -m testpbx.reliability

# The capacity benchmark: service against the dialplan-only baseline (bench/results.*).
# Its own state directory, so it never meets a `make up` stack's files. BENCH_ARGS, e.g.
#   make bench BENCH_ARGS="--prompts short --short-rates 10,20,40"
bench: venv
	IVR_STATE_DIR=$(CURDIR)/var/bench $(PY) -m bench $(BENCH_ARGS)

up: venv
	@$(PY) -m testpbx up

down:
	@if [ -x $(PY) ]; then $(PY) -m testpbx down; else echo "nothing to stop (no .venv)"; fi

status: venv
	@$(PY) -m testpbx status

demo: venv
	@$(PY) -m testpbx demo

clean: down
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
