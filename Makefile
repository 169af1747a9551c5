# HearO: `make run` serves the whole system, `make test` runs the whole suite.
# Both create .venv and install what they need first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install run test bench cluster lint clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_demo_counselor
	$(PY) manage.py collectstatic --noinput -v0
	$(VENV)/bin/daphne -b 127.0.0.1 -p $(PORT) hearo.asgi:application

# Tests keep their Redis keys apart from a dev server's.
test: install
	HEARO_CACHE_PREFIX=hearo-test HEARO_CHANNEL_PREFIX=hearo-test $(PY) -m pytest $(PYTEST_ARGS)

# About 25 minutes: starts its own Redis (and Sentinel topology), RabbitMQ, database and servers;
# writes bench/RESULTS.md and bench/results.json.
bench: install
	$(PY) -m bench.run --command "make bench"

# Two socket nodes, a REST node, a worker and one beat against the local PostgreSQL and Redis (Ctrl-C stops).
# HA=1: against a Redis primary, a replica and three sentinels of their own instead (kill the primary to see a failover).
cluster: install
	HEARO_CLUSTER_HA=$(HA) $(PY) scripts/cluster.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) node_modules staticfiles db.sqlite3 test-artifacts
