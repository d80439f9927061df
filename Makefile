# Hotline: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := debootstrap sip-tester espeak-ng sox libsox-fmt-all
STAMP := $(VENV)/.installed

.PHONY: install system-packages mosquitto asterisk-up asterisk-down asterisk-cli \
        prompts demo demo-stop test lint typecheck unit bench clean

install: system-packages mosquitto $(STAMP)

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

prompts: install
	$(BIN)/hotline prompts build

demo: install asterisk-up
	$(BIN)/python -m harness.demo

# Stop what `make demo` left running: hotline serve, then Asterisk.
demo-stop:
	-@test -f .run/hotline.pid && kill $$(cat .run/hotline.pid) 2>/dev/null; rm -f .run/hotline.pid
	scripts/sandbox.sh down

lint: $(STAMP)
	$(BIN)/ruff check hotline ivr cti tests bench
	$(BIN)/ruff format --check hotline ivr cti tests bench

typecheck: $(STAMP)
	$(BIN)/mypy hotline ivr cti

# The test suite starts (and stops) the Asterisk sandbox itself.
test: install lint typecheck
	$(BIN)/pytest -q -ra

unit: $(STAMP)
	$(BIN)/pytest -q -m "not asterisk"

bench: install
	$(BIN)/python bench/fastagi_load.py

clean: asterisk-down
	rm -rf $(VENV) .run
