#!/usr/bin/env bash
# W1 on a kind cluster made by `make kind-up kind-load kind-deploy`: the Gateway alone gives
# 404 (blackhole:80), the VirtualService and DestinationRule give 200 from httpbin v2.
set -euo pipefail
context=${1:-kind-pilotpy}
url=http://127.0.0.1:8080/headers
k() { kubectl --context "$context" "$@"; }

status() { curl -s -o /dev/null -w '%{http_code}' -H 'Host: httpbin.local' "$url" || true; }
wait_for() {
  local want=$1
  for _ in $(seq 1 60); do
    [[ "$(status)" == "$want" ]] && { echo "curl -H 'Host: httpbin.local' $url -> $want"; return 0; }
    sleep 1
  done
  echo "expected $want from $url, got $(status)" >&2
  return 1
}

k delete -f manifests/samples/w1-routes.yaml --ignore-not-found >/dev/null
k apply -f manifests/samples/w1-gateway.yaml
wait_for 404
k apply -f manifests/samples/w1-routes.yaml
wait_for 200
curl -s -H 'Host: httpbin.local' "$url"
