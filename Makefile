# geoetl — `make run` serves the app locally, `make test` runs every test.
# Both install what is missing first (venv, pip packages, PostgreSQL/PostGIS via apt, Azurite via npm).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
URL ?= http://127.0.0.1:7071/api

.PHONY: run test up down clean-stack venv lint format typecheck check settings-example bench clean smoke

run: venv
	$(PY) -m devstack run

test: venv check
	$(PY) -m devstack.azurite install
	$(PY) -m pytest $(PYTEST_ARGS)

up: venv
	$(PY) -m devstack up

down: venv
	$(PY) -m devstack down

clean-stack: venv
	$(PY) -m devstack destroy

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); \
	  else echo "error: '$(PYTHON) -m venv' failed; install the venv module (Debian/Ubuntu: apt-get install python3-venv)"; exit 1; fi; }
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: venv
	$(VENV)/bin/mypy

check: lint typecheck

settings-example: venv
	$(PY) -m devstack settings-example

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

bench: venv
	$(PY) -m bench.http_overhead
	$(PY) -m bench.orchestration
	$(PY) -m bench.raster
	$(PY) -m bench.stac
	$(PY) -m bench.vector
	$(PY) -m bench.h3
	$(PY) -m bench.inventory
	$(PY) -m bench.duckdb

smoke: venv
	@$(PY) -m devstack.smoke --url "$(URL)" $(if $(KEY),--key "$(KEY)")
