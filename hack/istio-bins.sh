#!/usr/bin/env bash
# Build Istio's own binaries from one pinned istio.io/istio commit, once, into the user's cache
# (outside the clone): istioctl, pilot-agent (the proxy agent of istio/proxyv2) and
# pilot-discovery (the real istiod). Tests use them as the real peers and clients.
#
#   hack/istio-bins.sh [istioctl] [pilot-agent] [pilot-discovery]   (default: all three)
#
# pilot-agent comes with the Envoy bootstrap template of the same commit
# (tools/packaging/common/envoy_bootstrap.json, which istio/proxyv2 ships as
# /var/lib/istio/envoy/envoy_bootstrap_tmpl.json), copied to pilot-agent-bootstrap.json.
#
# Prints the path of each binary asked for, one per line. Idempotent: a binary already built
# for the pinned version is reused, so only the first run pays for Go (about 11 minutes on 2
# CPUs for istioctl with a cold Go cache; the other two then take a minute or two).
#
# istio tags are not semver-prefixed, so Go addresses the release commit by its pseudo-version.
# A throwaway wrapper module requires istio.io/istio, calls istioctl's root command exactly like
# istioctl/cmd/istioctl does, builds the two pilot commands by package path, and copies any
# `replace` directives from istio's own go.mod (Go ignores replaces of dependencies, so without
# them the wrapper could resolve different modules than istio builds).
set -euo pipefail

ISTIO_RELEASE="${ISTIO_RELEASE:-1.31-dev}"
ISTIO_VERSION="${ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}"  # master, 2026-08-27 (commit eed52ebb66ad)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/pilotpy"
ISTIO_EXTRA_REQUIRES="${ISTIO_EXTRA_REQUIRES-istio.io/api@v1.31.1 istio.io/client-go@v1.31.1 github.com/envoyproxy/go-control-plane/envoy@v1.40.0 github.com/envoyproxy/go-control-plane/contrib@v1.36.1-0.20260729145720-a2d8c7492908}"
PIN="$ISTIO_VERSION $ISTIO_EXTRA_REQUIRES"

declare -A PACKAGE=(
  [istioctl]="."
  [pilot-agent]="istio.io/istio/pilot/cmd/pilot-agent"
  [pilot-discovery]="istio.io/istio/pilot/cmd/pilot-discovery"
)
wanted=("$@")
[[ ${#wanted[@]} -gt 0 ]] || wanted=(istioctl pilot-agent pilot-discovery)

missing=()
for name in "${wanted[@]}"; do
  [[ -n "${PACKAGE[$name]:-}" ]] || { echo "istio-bins.sh: unknown binary $name" >&2; exit 2; }
  if [[ -x "$CACHE/$name" && -f "$CACHE/$name.version" && "$(cat "$CACHE/$name.version")" == "$PIN" ]]; then
    [[ "$name" != pilot-agent || -f "$CACHE/pilot-agent-bootstrap.json" ]] && continue
  fi
  missing+=("$name")
done

if [[ ${#missing[@]} -gt 0 ]]; then
  command -v go >/dev/null || { echo "istio-bins.sh: needs Go on PATH" >&2; exit 1; }
  mkdir -p "$CACHE"
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  export GOFLAGS="${GOFLAGS:--mod=mod}"
  export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
  cd "$WORK"
  cat > main.go <<'GO'
package main

import (
	"fmt"
	"os"

	"istio.io/istio/istioctl/cmd"
	"istio.io/istio/pkg/log"
)

func main() {
	if err := cmd.ConfigAndEnvProcessing(); err != nil {
		fmt.Fprintf(os.Stderr, "Could not initialize: %v\n", err)
		os.Exit(cmd.GetExitCode(err))
	}
	root := cmd.GetRootCmd(os.Args[1:])
	log.EnableKlogWithCobra()
	if err := root.Execute(); err != nil {
		os.Exit(cmd.GetExitCode(err))
	}
}
GO
  go mod init pilotpy.local/istio >/dev/null 2>&1
  go mod edit -require="istio.io/istio@$ISTIO_VERSION"
  # The module proxy this project builds against does not serve every pre-release
  # pseudo-version that istio's master go.mod pins; these released versions replace them (MVS
  # picks the newer).
  for req in $ISTIO_EXTRA_REQUIRES; do
    go mod edit -require="$req"
  done
  go mod download istio.io/istio
  ISTIO_DIR="$(go list -m -f '{{.Dir}}' istio.io/istio)"
  # Copy istio's replace directives (both the one-line and the block form).
  awk '
    /^replace[ \t]*\(/ {block=1; next}
    block && /^\)/ {block=0; next}
    block && NF {print; next}
    /^replace[ \t]/ {sub(/^replace[ \t]+/, ""); print}
  ' "$ISTIO_DIR/go.mod" | while read -r line; do
    old="$(echo "$line" | awk -F'=>' '{print $1}' | xargs | tr ' ' '@')"
    new="$(echo "$line" | awk -F'=>' '{print $2}' | xargs | tr ' ' '@')"
    go mod edit -replace="$old=$new"
  done
  version_pkg="istio.io/istio/pkg/version"
  for name in "${missing[@]}"; do
    go build -trimpath -o "$WORK/$name" \
      -ldflags "-s -w -X $version_pkg.buildVersion=$ISTIO_RELEASE -X $version_pkg.buildStatus=Clean" \
      "${PACKAGE[$name]}"
    mv "$WORK/$name" "$CACHE/$name"
    if [[ "$name" == pilot-agent ]]; then
      cp "$ISTIO_DIR/tools/packaging/common/envoy_bootstrap.json" "$CACHE/pilot-agent-bootstrap.json"
    fi
    echo "$PIN" > "$CACHE/$name.version"
  done
fi

# istioctl comes with what `istioctl kube-inject` needs to inject as istiod's chart does (the
# tests compare pilotpy's injector with it): the sidecar and gateway injection templates and
# the istio-discovery chart's values, from the same commit, into $CACHE/istio-injection.
INJECTION="$CACHE/istio-injection"
if [[ " ${wanted[*]} " == *" istioctl "* ]] && \
   [[ ! -f "$INJECTION/version" || "$(cat "$INJECTION/version")" != "$ISTIO_VERSION" ]]; then
  command -v go >/dev/null || { echo "istio-bins.sh: needs Go on PATH" >&2; exit 1; }
  dir="$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-local}" \
    go mod download -json "istio.io/istio@$ISTIO_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  chart="$dir/manifests/charts/istio-control/istio-discovery"
  mkdir -p "$INJECTION"
  cp "$chart/files/injection-template.yaml" "$chart/files/gateway-injection-template.yaml" \
    "$INJECTION/"
  cp "$chart/values.yaml" "$INJECTION/istio-discovery-values.yaml"
  chmod 644 "$INJECTION"/*.yaml
  echo "$ISTIO_VERSION" > "$INJECTION/version"
fi

for name in "${wanted[@]}"; do
  echo "$CACHE/$name"
done
