# pyllmd developer entry points. Every target creates .venv on first use, so
# `make up` and `make test` are all the set-up a fresh machine needs.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` and `make test-e2e-smoke`: `auto` is one per CPU;
# `WORKERS=0` runs everything in the one pytest process (for debugging).
WORKERS ?= auto
# the smoke tests run in one process: they wait on real processes' start-ups, and under
# two workers an Envoy once missed its readiness deadline (`E2E_WORKERS=auto` to try)
E2E_WORKERS ?= 0
# System packages are installed as root; elsewhere through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LINT_PATHS := src tests bench tools

MODEL ?= meta-llama/Llama-3.1-8B-Instruct
PORT ?= 8000
# Empty: the stack shipped inside the package (src/pyllmd/stack/stack.yaml).
STACK ?=
# The container image built from the Containerfile; every manifest under config/ runs it.
# config/components/image/kustomization.yaml names the same image (tests/unit/deploy checks).
IMAGE ?= ghcr.io/pyllmd/pyllmd:0.1.0
# The kustomize overlay `make manifests` renders (config/overlays/{llm-d,pd,scale-to-zero}).
OVERLAY ?= config/overlays/llm-d

.PHONY: help up test test-e2e-smoke test-e2e-full bench lint fmt conformance clean \
	venv e2e-deps bench-deps protos deploy-deps manifests inference-perf-venv test-inference-perf \
	fidelity experiments test-ray

help:
	@echo "make up              run the local stack (simulators, gateway on port $(PORT), Prometheus, autoscaler)"
	@echo "make test            unit tests"
	@echo "make test-e2e-smoke  end-to-end tests with real processes (installs prometheus)"
	@echo "make test-e2e-full   all end-to-end tests, including the long scenarios"
	@echo "make test-inference-perf  check pyllmd simulate's workloads and reports with inference-perf itself"
	@echo "make test-ray        install the pyllmd[ray] extra; a sweep on a local Ray instance (tests/e2e/test_simulate_ray.py)"
	@echo "make bench           benchmarks; rewrites docs/developer-guide/benchmarks.md"
	@echo "make experiments     the virtual-time experiments; rewrites docs/developer-guide/experiments.md"
	@echo "make lint            ruff, ruff format --check, mypy, import-linter"
	@echo "make fmt             ruff format + ruff check --fix"
	@echo "make conformance     regenerate docs/developer-guide/conformance*.md"
	@echo "make fidelity        replay the calibration runs; regenerate docs/developer-guide/fidelity.md"
	@echo "make protos          regenerate the simulator's gRPC code from its .proto"
	@echo "make manifests       render the Kubernetes manifests of OVERLAY=$(OVERLAY)"
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

# The generated code is committed; run this after editing the .proto.
protos: $(STAMP)
	cd src && ../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \
		--grpc_python_out=. pyllmd/sim/grpcgen/vllm_engine.proto

# Debian's prometheus (no service is started by the package), and tmux for the dashboard's e2e test.
e2e-deps:
	@{ command -v prometheus && command -v curl; } >/dev/null 2>&1 || { \
		echo "installing prometheus and curl (apt)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			--no-install-recommends prometheus curl >/dev/null; }
	@prometheus --version 2>&1 | head -n 1
	@command -v tmux >/dev/null 2>&1 || { \
		echo "installing tmux (apt; tests/e2e/test_stack_ui.py reads pyllmd up's dashboard in it)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			--no-install-recommends tmux >/dev/null; }

# kubectl (its built-in kustomize renders config/; the unit tests of tests/unit/deploy run it).
deploy-deps:
	@command -v kubectl >/dev/null 2>&1 || { \
		echo "installing kubectl (apt)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			--no-install-recommends kubectl >/dev/null; }
	@kubectl version --client 2>/dev/null | head -n 1 >&2

# Render an overlay, e.g. `make manifests OVERLAY=config/overlays/pd | kubectl apply -f -`.
manifests: deploy-deps
	@kubectl kustomize $(OVERLAY)

# The local stack needs Debian's prometheus, hence e2e-deps.
up: $(STAMP) e2e-deps
	@echo "Starting the local stack from $(or $(STACK),the default stack file): two simulator"
	@echo "variants of $(MODEL), a gateway on http://127.0.0.1:$(PORT), Prometheus on"
	@echo "https://127.0.0.1:8002 and the autoscaler, admin on http://127.0.0.1:8001 (Ctrl-C stops it)."
	@echo ""
	@echo "Send load through the gateway, e.g. 40 concurrent requests in a loop:"
	@echo "  while :; do for i in \$$(seq 40); do curl -s -o /dev/null http://127.0.0.1:$(PORT)/v1/chat/completions \\"
	@echo "    -H 'Content-Type: application/json' -d '{\"model\": \"$(MODEL)\", \"max_tokens\": 200,"
	@echo "    \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}' & done; wait; done"
	@echo ""
	@echo "Watch it scale:"
	@echo "  curl -s http://127.0.0.1:8001/metrics | grep '^wva_'"
	@echo "  curl -s http://127.0.0.1:8001/apis/llmd.ai/v1alpha1/variantautoscalings"
	@echo "See docs/user-guide/admin/autoscaler-local.md."
	@echo ""
	@exec $(BIN)/pyllmd up $(if $(STACK),--stack $(STACK)) --port $(PORT)

# inference-perf 0.7.0 needs Python >= 3.12 (pyllmd stays on 3.11): its own venv, from pyenv.
IP_VENV ?= .venv-inference-perf
PY312 ?= $(lastword $(sort $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python)))
IP_OUT := $(IP_VENV)/simulated

inference-perf-venv: $(IP_VENV)/.installed

$(IP_VENV)/.installed:
	@test -n "$(PY312)" || { echo "no Python 3.12 under pyenv: pyenv install 3.12, or PY312=/path/to/python3.12"; exit 1; }
	$(PY312) -m venv $(IP_VENV)
	$(IP_VENV)/bin/pip install -q inference-perf==0.7.0
	touch $@

# inference-perf reads the test workloads; a simulated report agrees with its summarize().
test-inference-perf: $(STAMP) inference-perf-venv
	rm -rf $(IP_OUT) $(IP_OUT)-azure_trace.json
	$(BIN)/pyllmd simulate --stack tests/unit/simulate/workloads/stack.yaml \
		--workload tests/unit/simulate/workloads/shared_prefix_multi_turn.yaml --output $(IP_OUT)
	$(BIN)/python -c 'import json, sys; from pyllmd.simulate.traces import read_trace; \
		t = read_trace(sys.argv[1], "AzurePublicDataset", "trace"); \
		print(json.dumps([[e.t, e.input_tokens, e.output_tokens] for e in t.entries]))' \
		tests/unit/simulate/workloads/azure_trace.csv > $(IP_OUT)-azure_trace.json
	$(IP_VENV)/bin/python tools/inference_perf_check.py --report $(IP_OUT) \
		--trace tests/unit/simulate/workloads/azure_trace.csv $(IP_OUT)-azure_trace.json \
		$(filter-out %/stack.yaml,$(wildcard tests/unit/simulate/workloads/*.yaml))

# pytest exits 5 when it collected no test; make treats that as a failure.
test: $(STAMP) deploy-deps
	$(BIN)/pytest -q -n $(WORKERS) --dist loadfile tests/unit $(PYTEST_ARGS)

test-e2e-smoke: $(STAMP) e2e-deps
	$(BIN)/pytest -q -n $(E2E_WORKERS) --dist loadfile tests/e2e -m "e2e and not full and not ray" $(PYTEST_ARGS)

test-e2e-full: $(STAMP) e2e-deps
	$(BIN)/pytest -q tests/e2e -m "e2e and not ray" $(PYTEST_ARGS)

# Ray (~80 MB) is an optional extra: installed into the venv here, not by `make venv`.
test-ray: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	$(BIN)/pytest -q tests/e2e/test_simulate_ray.py -m ray $(PYTEST_ARGS)

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

# The shared calibration set (outside the repository). FIDELITY_ITERATIONS=0 scores the shipped
# profile (src/pyllmd/sim/batch/default_profile.json); more refits it first (the profile is
# written to FIDELITY_PROFILE, not shipped). The hold-out refits always run.
FIDELITY_DATA ?= ../shared/fidelity
FIDELITY_ITERATIONS ?= 0
FIDELITY_PROFILE ?= $(VENV)/fidelity-profile.yaml

fidelity: $(STAMP)
	$(BIN)/pyllmd calibrate --runs $(FIDELITY_DATA)/calibration_runs.csv \
		--iterations $(FIDELITY_ITERATIONS) --holdout both \
		--output $(FIDELITY_PROFILE) --results tools/fidelity_results.json
	$(BIN)/python tools/fidelity.py

# The experiments of docs/developer-guide/experiments.md (virtual time; about 25 minutes):
# rewrites their generated sections and plots.
experiments: $(STAMP)
	$(BIN)/python tools/experiments.py autoscaling --write-docs --output $(VENV)/experiments
	$(BIN)/python tools/experiments.py routing --write-docs --output $(VENV)/experiments

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
