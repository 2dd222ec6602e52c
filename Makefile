# Scoreboard — everything a developer or CI needs, from a machine with only Python 3.11+.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
# make test uses the local services unless the environment names others.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/scoreboard
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: fraud-sim help venv dev run test chromium node asyncapi-check check-deploy podman image-test test-embedded lint format migrate seed lock worker clean serve serve-stop nginx bench bench-short

help:
	@echo "make run    - set up and serve the board on http://$(HOST):$(PORT)/ (SQLite unless DATABASE_URL is set)"
	@echo "make test   - set up and run the whole suite against PostgreSQL and Redis"
	@echo "make lint   - ruff and mypy"
	@echo "make worker - Celery worker with beat (needs REDIS_URL)"
	@echo "make serve  - production topology on http://$(HOST):$(PORT)/: nginx, gunicorn, 2 ASGI servers, 4 kernel-balanced live-board processes on PORT+10, Celery (needs DATABASE_URL, REDIS_URL)"
	@echo "make bench  - full benchmark beside its baselines, report in bench/results/ (bench-short: a quick look)"
	@echo "make fraud-sim - the adversarial simulation (humans and bots against a real server), full mode (fraud/README.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when the pinned files change.
$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# The Python client kit is installed (editable) the way a game server installs it: with pip.
$(VENV)/.dev: requirements.txt requirements-dev.txt clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet -e clients/python
	touch $(VENV)/.runtime $@

venv: $(VENV)/.runtime
dev: $(VENV)/.dev

migrate: venv
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

run: seed
	@$(BIN)/python manage.py welcome --port $(PORT)
	$(BIN)/python manage.py runserver $(HOST):$(PORT) --noreload

# Without REDIS_URL there is no broker: the embedded default runs every task in-process (eagerly).
worker: venv
	@test -n "$$REDIS_URL" || { echo "make worker needs REDIS_URL (the broker); without it tasks run in-process"; exit 2; }
	$(BIN)/celery -A scoreboard worker --beat --loglevel=info

# nginx is not on a fresh machine: install it once (Debian package); nothing in /etc is changed,
# serve runs it as a child with a config generated under .state/.
nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx)

# Production topology on this machine (see deploy/serve.py for PORT, WEB_CONCURRENCY, ASGI_PROCESSES,
# ASGI_SERVER, CELERY, METRICS_PORT...). Ctrl-C stops every process.
serve: venv nginx
	@test -n "$$DATABASE_URL" -a -n "$$REDIS_URL" || { \
		echo "make serve needs DATABASE_URL and REDIS_URL (PostgreSQL and Redis), e.g."; \
		echo "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/scoreboard REDIS_URL=redis://127.0.0.1:6379/0 make serve"; \
		echo "make run is the single-process demo that needs neither."; exit 2; }
	PORT=$(PORT) HOST=$(HOST) PATH="/usr/sbin:$$PATH" $(BIN)/python deploy/serve.py start

serve-stop:
	PORT=$(PORT) $(BIN)/python deploy/serve.py stop

# The adversarial simulation (tests/fraud/adversarial.py) in its full mode: humans and bots over HTTP against
# a real gunicorn server (production config, PostgreSQL/Redis) on a simulated clock; prints the table.
# FRAUD_SIM_SEED=... to vary; FRAUD_SIM_SERVER=0 plays in-process (FRAUD_SIM_DETAIL=1's verdicts need it).
fraud-sim: dev
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} FRAUD_SIM=full \
		$(BIN)/pytest tests/fraud/test_adversarial.py -p no:cacheprovider -q -p no:logging --timeout 1800 $(PYTEST_ARGS)

# Headless Chromium for the browser test (Debian package; Playwright only drives it).
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# Node 20+ for the JS client kit's tests (Debian package nodejs when missing).
node:
	@command -v node >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs)
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || \
		{ echo "clients/js needs Node 20 or newer; found $$(node --version)"; exit 2; }

# docs/asyncapi.yaml checked by the AsyncAPI parser (npm @asyncapi/parser, pinned in tools/asyncapi).
ASYNCAPI_TOOL := tools/asyncapi/node_modules/.installed
$(ASYNCAPI_TOOL): tools/asyncapi/package-lock.json | node
	npm ci --prefix tools/asyncapi --no-audit --no-fund --silent
	touch $@

asyncapi-check: node $(ASYNCAPI_TOOL)
	node tools/asyncapi/validate.mjs docs/asyncapi.yaml

test: dev chromium node
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-embedded

# The embedded default (SQLite, no Redis) must keep working: the tests marked "embedded" run there too.
test-embedded: dev
	env -u DATABASE_URL -u REDIS_URL DATABASE_URL= REDIS_URL= $(BIN)/pytest -m embedded -p no:cacheprovider $(PYTEST_ARGS)

# Production-like settings (DEBUG off, behind a TLS proxy, throwaway secrets): Django's deploy checks
# must be clean, and no model change may lack its migration.
check-deploy: dev
	DJANGO_DEBUG=0 DJANGO_TLS_PROXY=1 DJANGO_ALLOWED_HOSTS=scoreboard.example.com \
		DJANGO_SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(48))') \
		JWT_SECRET=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(48))') \
		ACTION_TOKEN_SECRET=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(48))') \
		$(BIN)/python manage.py check --deploy --fail-level WARNING
	$(BIN)/python manage.py makemigrations --check --dry-run

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock:
	rm -rf /tmp/scoreboard-lock && $(PYTHON) -m venv /tmp/scoreboard-lock
	/tmp/scoreboard-lock/bin/pip install --quiet -r requirements.in
	{ echo "# Pinned runtime dependencies (resolved from requirements.in; regenerate with 'make lock')."; \
	  /tmp/scoreboard-lock/bin/pip freeze; } > requirements.txt

# Benchmarks (bench/run.py): seed 100k players, start nginx + gunicorn + uvicorn + Celery on ports 8500-8502,
# open-loop score updates, reads, WebSocket delivery, baselines (pgbench, redis-benchmark, bare DRF, bare
# websockets); everything it starts is stopped on exit. DATABASE_URL/REDIS_URL win over these defaults.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/scoreboard_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/14
BENCH_ENV = DATABASE_URL=$${DATABASE_URL:-$(BENCH_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(BENCH_REDIS_URL)} \
	PATH="/usr/sbin:$$PATH"

# On top of the dev set (which installs the Python client kit too: make test after make bench needs it).
$(VENV)/.bench: requirements-bench.txt $(VENV)/.dev
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $@

bench: $(VENV)/.bench nginx
	$(BENCH_ENV) $(BIN)/python -m bench.run --mode full

bench-short: $(VENV)/.bench nginx
	$(BENCH_ENV) $(BIN)/python -m bench.run --mode short

# The container image built for real (deploy/image_test.py): a Debian base from debootstrap, podman
# build with runc, then migrate + serve + a score through the container's port + its health check,
# against the local PostgreSQL (a scratch database) and Redis. Takes minutes; not part of make test.
podman:
	@{ command -v podman && [ -x /usr/sbin/runc ] && command -v debootstrap; } >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends podman runc debootstrap)

image-test: venv podman
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/13} \
		$(BIN)/python deploy/image_test.py

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .mypy_cache .ruff_cache
