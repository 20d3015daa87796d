# Every target installs what it needs: a venv with the package and its
# pinned dependencies, and (for dev/test) the control-plane binaries and the
# S3 server, built once from Go modules and cached outside the work tree.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install control-plane helm s3-server dev test unit lint format crds crds-check clean

help:
	@echo "make dev    run PostgreSQL + a local control plane + the operator, apply an example"
	@echo "make test   lint, check the CRDs, then run every test suite"

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(INSTALLED)

control-plane:
	@bash hack/control-plane.sh build >/dev/null

# Helm for the chart tests (tests/chart), built once from its Go module.
helm:
	@bash hack/helm.sh build >/dev/null

s3-server:
	@bash hack/s3-server.sh build >/dev/null

dev: install control-plane s3-server
	$(BIN)/tenantdb dev up --apply examples/tenant.yaml

test: lint crds-check control-plane helm s3-server
	$(BIN)/pytest $(PYTEST_ARGS)

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check operator tests bench seeders
	$(BIN)/ruff format --check operator tests bench seeders
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix operator tests bench seeders
	$(BIN)/ruff format operator tests bench seeders

# The chart ships its own copies (Helm installs what its crds/ holds): both
# are generated from the models, never edited by hand.
CRD_DIRS := crds charts/tenantdb/crds

crds: install
	$(BIN)/tenantdb crds $(addprefix --out ,$(CRD_DIRS))

crds-check: install
	$(BIN)/tenantdb crds $(addprefix --out ,$(CRD_DIRS)) --check

clean:
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache
