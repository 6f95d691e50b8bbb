#!/usr/bin/env bash
# W3's Bookinfo on a kind cluster made by `make kind-up kind-load kind-deploy`: the namespace
# `bookinfo` is labelled for injection, so every Bookinfo pod comes up with istio/proxyv2 from
# pilotpy's webhook; the ingress gateway serves /productpage, which calls details and reviews
# (and reviews v2/v3 call ratings) through the sidecars.
set -euo pipefail
context=${1:-kind-pilotpy}
url=http://127.0.0.1:8080/productpage
k() { kubectl --context "$context" "$@"; }

k apply --server-side -f manifests/samples/bookinfo.yaml
k apply --server-side -f manifests/samples/bookinfo-gateway.yaml
k -n bookinfo rollout status deploy/details-v1 deploy/ratings-v1 deploy/reviews-v1 \
  deploy/reviews-v2 deploy/reviews-v3 deploy/productpage-v1 --timeout=600s
k -n bookinfo get pods \
  -o custom-columns='POD:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name'
for _ in $(seq 1 60); do
  page=$(curl -s "$url" || true)
  if [[ "$page" == *"<title>Simple Bookstore App</title>"* && "$page" == *"Book Details"* &&
        "$page" == *"Book Reviews"* && "$page" != *"Error fetching"* ]]; then
    echo "curl $url -> the Bookinfo product page (details and reviews answered)"
    exit 0
  fi
  sleep 2
done
echo "no product page from $url:" >&2
curl -s -o /dev/null -w '%{http_code}\n' "$url" >&2 || true
exit 1
