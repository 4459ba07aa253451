# hopgraph: `make dev` runs the local stack, `make check` is the inner loop (lint, types, the
# unit and contract tiers: about a minute), `make test` runs every check (the gate CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
WS_PORT ?= 8001
LAYER_LOCK := layers/deps/requirements.txt

.PHONY: dev check test lint typecheck unit fast-tests bench clean dashboard chromium
.PHONY: tools template-checks sam-validate cfn-lint sam-build lock
.PHONY: build-DepsLayer build-EngineLayer build-ApiFunction build-WorkerFunction
.PHONY: build-StarterFunction build-WebSocketFunction build-DeadLetterFunction build-SweeperFunction
.PHONY: build-WebSocketAuthorizerFunction

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The Lambda layer's lock goes in first, hash-checked, so the tests import the exact versions
# that `sam build` ships; the project's install then keeps them (pip upgrades only what it must,
# and tests/unit/test_layer_lock.py fails if it had to). Two steps: pip cannot hash-check an
# editable install, and hashes in a constraints file would require them for it.
# `make dev` installs what the stack needs (the `local` extra: moto, waitress); the checks
# install the `test` extra on top (pytest, mypy, langgraph, schemathesis...).
$(VENV)/.installed-local: pyproject.toml $(LAYER_LOCK) | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --require-hashes --only-binary=:all: -r $(LAYER_LOCK)
	$(BIN)/python -m pip install --quiet -e '.[local]'
	touch $@

$(VENV)/.installed: $(VENV)/.installed-local
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# ---------------------------------------------------------------- dashboard (/ui)
# Mermaid, pinned in package-lock.json, installed by `npm ci` and copied beside the page's own
# files (functions/dashboard/static/vendor/, gitignored) with a gzipped copy the API serves to
# browsers; the Lambda package ships that folder with functions/.
DASHBOARD_VENDOR := functions/dashboard/static/vendor
DASHBOARD_FILES := $(DASHBOARD_VENDOR)/mermaid.min.js $(DASHBOARD_VENDOR)/mermaid.min.js.gz

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

$(DASHBOARD_VENDOR)/mermaid.min.js: node_modules/.package-lock.json
	mkdir -p $(DASHBOARD_VENDOR)
	cp node_modules/mermaid/dist/mermaid.min.js $@

$(DASHBOARD_VENDOR)/mermaid.min.js.gz: $(DASHBOARD_VENDOR)/mermaid.min.js
	gzip -9 -n -c $< > $@

dashboard: $(DASHBOARD_FILES)

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used):
# installed when missing (CI runs as root), left alone when present.
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
chromium:
	@if [ -z "$(CHROMIUM)" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

dev: $(VENV)/.installed-local dashboard
	$(BIN)/hopgraph dev --port $(PORT) --ws-port $(WS_PORT)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

# Every tier, on two workers (pytest-xdist): a test process keeps one core busy, a second one
# halves the CPU-bound tiers (moto in-process, the fault plan) on CI's two cores. tests/conftest.py
# keeps each e2e module on one worker (its stacks start once) and the browser tier last on its
# worker. TEST_WORKERS=0 runs them all in this process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup)
unit: $(VENV)/.installed dashboard chromium
	$(BIN)/pytest $(XDIST)

# The tiers that answer in seconds, not the ones that start stacks or run the fault plan.
fast-tests: $(VENV)/.installed
	$(BIN)/pytest $(XDIST) -m "(unit or contract) and not slow" tests/unit tests/contract

check: lint typecheck fast-tests

test: lint typecheck template-checks unit

bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/engine_vs_langgraph.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .aws-sam node_modules \
		$(DASHBOARD_VENDOR) test-artifacts

# ---------------------------------------------------------------- template checks
# SAM CLI pins old boto3 and pydantic, so it lives in its own tool venv, never in $(VENV).
# The versions are pinned so a new linter rule cannot break `make test` on its own; bump both
# (the stamp file name changes with them, so the next run reinstalls).
SAM_CLI_VERSION := 1.170.0
CFN_LINT_VERSION := 1.58.0
TOOLS := .tools/sam
TOOLS_STAMP := $(TOOLS)/.installed-$(SAM_CLI_VERSION)-$(CFN_LINT_VERSION)
# Everything here runs offline and needs no credentials (checked with an empty environment):
# only a region, and no telemetry. Only `sam build` reaches out, to PyPI, for the layer.
SAM_ENV := AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0

$(TOOLS_STAMP):
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet 'aws-sam-cli==$(SAM_CLI_VERSION)' 'cfn-lint==$(CFN_LINT_VERSION)'
	touch $@

tools: $(TOOLS_STAMP)

sam-validate: $(TOOLS_STAMP)
	$(SAM_ENV) $(TOOLS)/bin/sam validate --lint --template template.yaml

cfn-lint: $(TOOLS_STAMP)
	$(SAM_ENV) $(TOOLS)/bin/cfn-lint --include-checks I -- template.yaml

# Leaves .aws-sam/ (gitignored) for `sam deploy`; build options come from samconfig.toml.
sam-build: $(TOOLS_STAMP)
	$(SAM_ENV) $(TOOLS)/bin/sam build --template template.yaml

template-checks: sam-validate cfn-lint sam-build

# ---------------------------------------------------------------- Lambda layer lock
# `make lock` resolves layers/deps/requirements.in into $(LAYER_LOCK): every package pinned,
# with hashes, for the Lambda platform (not this machine's), wheels only, as build-DepsLayer
# installs it. Existing pins are kept unless a bound in requirements.in excludes them;
# `make lock UPGRADE=1` moves every package to its newest allowed version. uv is pinned and lives
# in its own tool venv, like the SAM CLI.
UV_VERSION := 0.13.9
UV_TOOLS := .tools/uv
UV_STAMP := $(UV_TOOLS)/.installed-$(UV_VERSION)

$(UV_STAMP):
	rm -rf $(UV_TOOLS)
	$(PYTHON) -m venv $(UV_TOOLS)
	$(UV_TOOLS)/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'
	touch $@

lock: $(UV_STAMP)
	$(UV_TOOLS)/bin/uv pip compile --quiet layers/deps/requirements.in --output-file $(LAYER_LOCK) \
		--generate-hashes --python-version 3.13 --python-platform aarch64-manylinux2014 \
		--only-binary :all: --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

# ---------------------------------------------------------------- sam build targets
# Called by `sam build` (BuildMethod: makefile in template.yaml) with ARTIFACTS_DIR set and the
# repo root as working directory; each copies only what its artifact needs.
LAMBDA_PYTHON ?= python3.13
LAMBDA_PIP_TARGET := --platform manylinux2014_aarch64 --implementation cp --python-version 3.13 \
	--only-binary=:all:
# Installed as dependencies of aws-xray-sdk, but the runtime provides them: a second, different
# botocore in /opt/python would shadow the runtime's and mismatch its boto3.
RUNTIME_PROVIDED := boto3 botocore s3transfer

# Guard: run by hand without ARTIFACTS_DIR, these would write to /python or clean the repo.
require-artifacts-dir = $(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is unset: `sam build` runs $@))

define copy-package
	$(require-artifacts-dir)
	mkdir -p $(2)
	cp -R $(1) $(2)/
	find $(2) -name __pycache__ -type d -prune -exec rm -rf {} +
	# ship bytecode so a cold start does not compile every module (unchecked: zip mtimes vary),
	# compiled by the runtime's own minor version: a .pyc of another version is never read
	if $(LAMBDA_PYTHON) -c "" >/dev/null 2>&1; then \
		$(LAMBDA_PYTHON) -m compileall -q --invalidation-mode unchecked-hash $(2)/$(notdir $(1)); \
	else echo "$(LAMBDA_PYTHON) not found: $(1) ships without bytecode"; fi
endef

build-DepsLayer:
	$(require-artifacts-dir)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check $(LAMBDA_PIP_TARGET) \
		--require-hashes --target $(ARTIFACTS_DIR)/python -r $(LAYER_LOCK)
	cd $(ARTIFACTS_DIR)/python && rm -rf $(foreach p,$(RUNTIME_PROVIDED),$(p) $(p)-*.dist-info)

build-EngineLayer:
	$(call copy-package,engine,$(ARTIFACTS_DIR)/python)

build-ApiFunction: $(DASHBOARD_FILES)
	$(call copy-package,functions,$(ARTIFACTS_DIR))

# The other functions never serve the dashboard: its files stay out of their packages.
build-WorkerFunction build-StarterFunction build-WebSocketFunction build-DeadLetterFunction build-SweeperFunction:
	$(call copy-package,functions,$(ARTIFACTS_DIR))
	rm -rf $(ARTIFACTS_DIR)/functions/dashboard

# The WebSocket authorizer ships the same package; it imports only functions/auth/.
build-WebSocketAuthorizerFunction:
	$(call copy-package,functions,$(ARTIFACTS_DIR))
	rm -rf $(ARTIFACTS_DIR)/functions/dashboard
