#!/usr/bin/env bash
# Build kube-apiserver and etcd from the Go module proxy into $OUT (default
# ${XDG_CACHE_HOME:-~/.cache}/pilotpy/kube-bins), envtest layout: $OUT/kube-apiserver, $OUT/etcd.
# Idempotent: a binary already built for the pinned version is kept. Go's module and build
# caches make a rebuild after `go clean` cheap too.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.35.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
OUT=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/pilotpy/kube-bins}
STAGING_VERSION=v0.${K8S_VERSION#v1.}

mkdir -p "$OUT"
stamp="$OUT/.versions"
want="kube-apiserver $K8S_VERSION etcd $ETCD_VERSION"
if [[ -x $OUT/kube-apiserver && -x $OUT/etcd && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
  echo "kube-bins: $want already in $OUT"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

# kube-apiserver: k8s.io/kubernetes replaces every staging module with a local path; a wrapper
# module points each one at the published module of the same release instead. The list comes
# from that release's own go.mod, because it changes between releases.
mkdir -p "$work/apiserver"
curl -fsSL "https://proxy.golang.org/k8s.io/kubernetes/@v/$K8S_VERSION.mod" -o "$work/kubernetes.mod"
{
  echo "module pilotpy.local/kube-apiserver"
  echo
  echo "go $(awk '/^go /{print $2; exit}' "$work/kubernetes.mod")"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$work/kubernetes.mod" \
    | awk -v v="$STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
} > "$work/apiserver/go.mod"
cat > "$work/apiserver/main.go" <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
GO
(cd "$work/apiserver" && go mod tidy >/dev/null && go build -trimpath -ldflags='-s -w' -o "$OUT/kube-apiserver.new" .)
mv "$OUT/kube-apiserver.new" "$OUT/kube-apiserver"

# etcd: server/v3 replaces its sibling modules with local paths; pin them to the same release.
mkdir -p "$work/etcd"
cat > "$work/etcd/go.mod" <<MOD
module pilotpy.local/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
MOD
cat > "$work/etcd/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
(cd "$work/etcd" && go mod tidy >/dev/null && go build -trimpath -ldflags='-s -w' -o "$OUT/etcd.new" .)
mv "$OUT/etcd.new" "$OUT/etcd"

echo "$want" > "$stamp"
echo "kube-bins: built $want into $OUT"
