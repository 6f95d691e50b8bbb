#!/usr/bin/env bash
# W1 and W2 on a kind cluster made by `make kind-up kind-load kind-deploy`:
#   W1: the Gateway alone gives 404 (blackhole:80), the VirtualService and DestinationRule give
#       200 from httpbin v2, through the ingress gateway (injected istio/proxyv2 by default).
#   W2: sleep calls httpbin-service from inside the mesh: its sidecar, then httpbin's (both
#       istio/proxyv2, injected by pilotpy) carry the request.
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

echo "W2: the pods' containers (istio-proxy injected by pilotpy):"
k get pods -l 'app in (sleep,httpbin)' \
  -o custom-columns='POD:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name,PROXY:.metadata.annotations.sidecar\.istio\.io/status'
for pod in $(k get pods -l 'app in (sleep,httpbin)' -o name); do
  names=$(k get "$pod" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}')
  [[ " $names " == *" istio-proxy "* ]] || { echo "$pod has no istio-proxy: $names" >&2; exit 1; }
done
sleep_pod=$(k get pod -l app=sleep -o jsonpath='{.items[0].metadata.name}')
for _ in $(seq 1 30); do
  answer=$(k exec "$sleep_pod" -c sleep -- curl -s -o /dev/null -D - http://httpbin-service/headers \
           2>/dev/null || true)
  if [[ "$answer" == *" 200"* && "$answer" == *"x-envoy-upstream-service-time"* ]]; then
    echo "sleep -> httpbin-service: 200 through both sidecars"
    echo "$answer" | grep -i -E '^(HTTP|server|x-envoy-upstream-service-time)'
    exit 0
  fi
  sleep 2
done
echo "sleep could not reach httpbin-service through its sidecar:" >&2
echo "$answer" >&2
exit 1
