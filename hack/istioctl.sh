#!/usr/bin/env bash
# Build the real istioctl from a pinned istio.io/istio commit, once, into the user's cache
# (outside the clone). Idempotent: a binary already built for the pinned version is reused.
#
# istio tags are not semver-prefixed, so Go addresses the release commit by its pseudo-version.
# A throwaway wrapper module calls istioctl's root command exactly like istioctl/cmd/istioctl
# does, and copies any `replace` directives from istio's own go.mod (Go ignores replaces of
# dependencies, so without them the wrapper could resolve different modules than istio builds).
set -euo pipefail

ISTIO_RELEASE="${ISTIO_RELEASE:-1.31-dev}"
ISTIO_VERSION="${ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}"  # master, 2026-08-27 (commit eed52ebb66ad)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/pilotpy"
OUT="$CACHE/istioctl"
STAMP="$CACHE/istioctl.version"
ISTIO_EXTRA_REQUIRES="${ISTIO_EXTRA_REQUIRES-istio.io/api@v1.31.1 istio.io/client-go@v1.31.1 github.com/envoyproxy/go-control-plane/envoy@v1.40.0 github.com/envoyproxy/go-control-plane/contrib@v1.36.1-0.20260729145720-a2d8c7492908}"

if [[ -x "$OUT" && -f "$STAMP" && "$(cat "$STAMP")" == "$ISTIO_VERSION $ISTIO_EXTRA_REQUIRES" ]]; then
  echo "$OUT"
  exit 0
fi

command -v go >/dev/null || { echo "istioctl.sh: needs Go on PATH" >&2; exit 1; }
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
go mod init pilotpy.local/istioctl >/dev/null 2>&1
go mod edit -require="istio.io/istio@$ISTIO_VERSION"
# The module proxy this project builds against does not serve every pre-release pseudo-version
# that istio's master go.mod pins; these released versions replace them (MVS picks the newer).
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
go build -trimpath -o "$WORK/istioctl" \
  -ldflags "-s -w -X $version_pkg.buildVersion=$ISTIO_RELEASE -X $version_pkg.buildStatus=Clean" .
mv "$WORK/istioctl" "$OUT"
echo "$ISTIO_VERSION $ISTIO_EXTRA_REQUIRES" > "$STAMP"
echo "$OUT"
