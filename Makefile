# Hotline: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := debootstrap sip-tester espeak-ng sox libsox-fmt-all chromium
STAMP := $(VENV)/.installed

.PHONY: install system-packages mosquitto postgres asterisk-up asterisk-down asterisk-cli \
        broker-up broker-down prompts demo demo-stop test lint typecheck unit integration live \
        bench clean

install: system-packages mosquitto $(STAMP)

# The PostgreSQL the tests use (HOTLINE_TEST_PG): $$HOTLINE_TEST_PG or 127.0.0.1:5432 when
# something answers there, else a throwaway cluster in .run/pg (Debian's postgresql
# installed if missing).  Recipes that run database tests export it with $(WITH_PG).
WITH_PG = HOTLINE_TEST_PG="$$(scripts/postgres.sh url)" && export HOTLINE_TEST_PG &&

postgres:
	scripts/postgres.sh url

# apt only when something is missing, so a second `make install` takes a second.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# Mosquitto on 127.0.0.1:1883: use the one running, else install and start one.
mosquitto:
	@if ! timeout 1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/1883' 2>/dev/null; then \
	  command -v mosquitto >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto; }; \
	  mosquitto -d -c /etc/mosquitto/mosquitto.conf; sleep 0.5; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,ko]'
	touch $@

asterisk-up: system-packages
	scripts/sandbox.sh up

asterisk-down:
	scripts/sandbox.sh down

asterisk-cli:
	scripts/sandbox.sh cli

# The project's own Mosquitto 2.1 (docs/mqtt.md): 127.0.0.1:1884 (TCP) and 127.0.0.1:9001
# (WebSockets), logins and ACLs, in the sandbox root (installed there the first time).
broker-up: install
	scripts/broker.sh up

broker-down:
	scripts/broker.sh down

prompts: install
	$(BIN)/hotline prompts build

# The demo starts the project broker itself (scripts/broker.sh up) and, if it cannot,
# says why and goes on with [mqtt] (the machine's broker on 1883, no logins).
demo: install asterisk-up
	$(BIN)/python -m harness.demo

# Stop what `make demo` left running: hotline serve, then Asterisk and the broker.
demo-stop:
	-@test -f .run/hotline.pid && kill $$(cat .run/hotline.pid) 2>/dev/null; rm -f .run/hotline.pid
	scripts/sandbox.sh down
	scripts/broker.sh down

lint: $(STAMP)
	$(BIN)/ruff check hotline ivr cti tests bench harness
	$(BIN)/ruff format --check hotline ivr cti tests bench harness
	@if [ -f .importlinter ]; then $(BIN)/lint-imports; \
	else echo "lint-imports: skipped (no .importlinter)"; fi

typecheck: $(STAMP)
	$(BIN)/mypy hotline ivr cti harness tests

# The whole suite, every tier (tests/README.md).  The live tests start (and stop)
# the Asterisk sandbox themselves.
test: install lint typecheck
	$(WITH_PG) $(BIN)/pytest -q -ra

# No database server, broker, Asterisk, espeak-ng or sox: only the virtualenv.
unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# SQLite and PostgreSQL, Mosquitto, an SMTP server, espeak-ng and sox, the Korean model.
integration: install
	$(WITH_PG) $(BIN)/pytest -q -ra tests/integration

# Real calls: the Asterisk sandbox, sipp, the project's Mosquitto (the fixtures start both).
live: install
	$(BIN)/pytest -q -ra tests/live

bench: install
	$(BIN)/python bench/fastagi_load.py

clean: broker-down asterisk-down
	scripts/postgres.sh purge
	rm -rf $(VENV) .run
