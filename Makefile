# Every target installs what it needs: a venv with the package and its
# pinned dependencies, and (for dev/test) the control-plane binaries and the
# S3 server, built once from Go modules and cached outside the work tree.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=
# The image's base: empty for the Dockerfile's public one, `local` for one
# built from Debian's packages (hack/base-image.sh), or any image name.
BASE_IMAGE ?=
# What the node tests build the image on: this machine reaches no registry.
TEST_BASE_IMAGE ?= local

.PHONY: help install control-plane helm s3-server node image node-image dev test unit lint format crds crds-check clean

help:
	@echo "make dev    run PostgreSQL + a local control plane + the operator, apply an example"
	@echo "make test   lint, check the CRDs, then run every test suite"
	@echo "make image  build the operator's image (BASE_IMAGE=...) and its OCI archive"

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

# kubelet, kube-scheduler, crictl and pause for tests/node (and containerd, runc).
node: control-plane
	@bash hack/node.sh build >/dev/null

image: install
	BASE_IMAGE=$(BASE_IMAGE) bash hack/image.sh build

# What tests/node runs: the image on the test base (cached by the tree's hash).
node-image: install node
	@BASE_IMAGE=$(TEST_BASE_IMAGE) bash hack/image.sh build >/dev/null

dev: install control-plane s3-server
	$(BIN)/tenantdb dev up --apply examples/tenant.yaml

test: lint crds-check control-plane helm s3-server node-image
	TENANTDB_TEST_BASE_IMAGE=$(TEST_BASE_IMAGE) $(BIN)/pytest $(PYTEST_ARGS)

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
	rm -rf $(VENV) .dev .image .pytest_cache .mypy_cache .ruff_cache
