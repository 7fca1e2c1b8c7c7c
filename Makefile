# pyllmd developer entry points. Every target creates .venv on first use, so
# `make up` and `make test` are all the set-up a fresh machine needs.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# System packages are installed as root; elsewhere through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LINT_PATHS := src tests bench tools

MODEL ?= meta-llama/Llama-3.1-8B-Instruct
PORT ?= 8000

.PHONY: help up test test-e2e-smoke test-e2e-full bench lint fmt conformance clean \
	venv e2e-deps bench-deps

help:
	@echo "make up              run a simulator on port $(PORT) (model $(MODEL))"
	@echo "make test            unit tests"
	@echo "make test-e2e-smoke  end-to-end tests with real processes (installs prometheus)"
	@echo "make test-e2e-full   all end-to-end tests, including the long scenarios"
	@echo "make bench           benchmarks; rewrites docs/developer-guide/benchmarks.md"
	@echo "make lint            ruff, ruff format --check, mypy, import-linter"
	@echo "make fmt             ruff format + ruff check --fix"
	@echo "make conformance     regenerate docs/developer-guide/conformance.md"
	@echo "make clean           remove the venv and caches"

venv: $(STAMP)

# Re-run whenever the dependency list changes.
$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
		$(PY) -m venv $(VENV) || { \
			echo "python venv module missing; installing python3-venv"; \
			rm -rf $(VENV); \
			$(SUDO) apt-get update && \
			$(SUDO) apt-get install -y --no-install-recommends python3-venv && \
			$(PY) -m venv $(VENV); }; \
	fi
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# Debian's prometheus (no service is started by the package).
e2e-deps:
	@{ command -v prometheus && command -v curl; } >/dev/null 2>&1 || { \
		echo "installing prometheus and curl (apt)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			--no-install-recommends prometheus curl >/dev/null; }
	@prometheus --version 2>&1 | head -n 1

up: $(STAMP)
	@echo "Starting the simulator for $(MODEL) on http://127.0.0.1:$(PORT) (Ctrl-C stops it)."
	@echo ""
	@echo "Call it with curl:"
	@echo "  curl -s http://127.0.0.1:$(PORT)/v1/chat/completions -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"model\": \"$(MODEL)\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'"
	@echo ""
	@echo "or with the openai client ($(BIN)/python):"
	@echo "  from openai import OpenAI"
	@echo "  client = OpenAI(base_url=\"http://127.0.0.1:$(PORT)/v1\", api_key=\"unused\")"
	@echo "  r = client.chat.completions.create(model=\"$(MODEL)\","
	@echo "      messages=[{\"role\": \"user\", \"content\": \"Hello\"}])"
	@echo "  print(r.choices[0].message.content)"
	@echo ""
	@exec $(BIN)/pyllmd sim --model $(MODEL) --port $(PORT) \
		--time-to-first-token 100ms --inter-token-latency 20ms

# pytest exits 5 when it collected no test; make treats that as a failure.
test: $(STAMP)
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

test-e2e-smoke: $(STAMP) e2e-deps
	$(BIN)/pytest -q tests/e2e -m "e2e and not full" $(PYTEST_ARGS)

test-e2e-full: $(STAMP) e2e-deps
	$(BIN)/pytest -q tests/e2e -m "e2e" $(PYTEST_ARGS)

# wrk measures requests/s with less client overhead than any Python client.
bench-deps:
	@command -v wrk >/dev/null 2>&1 || { \
		echo "installing wrk (apt)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			--no-install-recommends wrk >/dev/null; }

bench: $(STAMP) bench-deps
	$(BIN)/python -m bench --output docs/developer-guide/benchmarks.md

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/mypy bench tools tests/e2e
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

conformance: $(STAMP)
	$(BIN)/python tools/conformance.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
