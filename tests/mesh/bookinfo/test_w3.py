"""W3, Istio's Bookinfo traffic-management walkthrough, one test per step, through the real
istio-ingressgateway Envoy and real sidecars: the client is the test process, sending to the
gateway pod over the bridge; productpage calls details and reviews, reviews v2/v3 call
ratings, each call crossing the caller's sidecar (outbound) and the callee's (inbound).

Each test applies the step's objects over the baseline (steps.use) and waits until the
proxy that acts on them holds them, so the tests do not depend on their order."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from tests.mesh.bookinfo.apps import RATINGS_UNAVAILABLE
from tests.mesh.bookinfo.steps import (
    gateway_address,
    gateway_get,
    page,
    routed_to,
    sample,
    subset_cluster,
    use,
    wait_for_gateway,
    wait_for_vhost,
)
from tests.mesh.client import fetch_concurrently
from tests.mesh.mesh import Mesh
from tests.mesh.netns import wait_until

EXPOSED = ("/productpage", "/static/css/style.css", "/login", "/logout", "/api/v1/products",
           "/api/v1/products/0/reviews")
NOT_EXPOSED = ("/", "/details/0", "/reviews/0", "/ratings/0", "/productpage/extra", "/loginx",
               "/api/v1/users", "/health")


def _all_v1(mesh: Mesh) -> None:
    use(mesh)
    wait_for_gateway(mesh, lambda c: "/api/v1/products" in str(c), "the bookinfo routes")
    wait_for_vhost(mesh, "productpage-v1", "reviews", lambda v: routed_to(v, "v1"),
                   "reviews on subset v1")


def test_w3_gateway_exposes_only_the_bookinfo_paths(bookinfo: Mesh) -> None:
    _all_v1(bookinfo)
    for path in EXPOSED:
        (answer,) = gateway_get(bookinfo, path)
        assert answer["status"] == 200, (path, answer)
        assert answer["headers"]["x-backend-name"] == "productpage", (path, answer)
        # The gateway Envoy forwarded it (Istio's gateways rewrite `server` to istio-envoy).
        assert "x-envoy-upstream-service-time" in answer["headers"], (path, answer)
    for path in NOT_EXPOSED:
        (answer,) = gateway_get(bookinfo, path)
        # The gateway's own 404 (no route matched): productpage never saw the request.
        assert answer["status"] == 404, (path, answer)
        assert "x-backend-name" not in answer["headers"], (path, answer)


def test_w3_route_all_traffic_to_v1(bookinfo: Mesh) -> None:
    _all_v1(bookinfo)
    pages = [page(bookinfo) for _ in range(10)] + [page(bookinfo, user="jason")]
    assert {p["reviews"]["version"] for p in pages} == {"v1"}, pages
    assert all(p["reviews"]["status"] == 200 and p["reviews"]["rating"] is None for p in pages)
    assert {p["details"]["status"] for p in pages} == {200}
    assert {p["details"]["body"]["version"] for p in pages} == {"v1"}
    # productpage forwarded the request id the gateway Envoy generated, and jason's name.
    assert all("x-request-id" in p["forwarded"] for p in pages), pages
    assert "end-user" in pages[-1]["forwarded"], pages[-1]


def _reviews_versions(answers: list[dict[str, Any]]) -> Counter[str]:
    assert all(a["status"] == 200 for a in answers), Counter(a["status"] for a in answers)
    return Counter(a["page"]["reviews"]["version"] for a in answers)


def test_w3_shift_half_of_reviews_to_v3(bookinfo: Mesh) -> None:
    use(bookinfo, *sample("virtual-service-reviews-50-v3.yaml"))
    wait_for_vhost(bookinfo, "productpage-v1", "reviews",
                   lambda v: routed_to(v, "v1", "v3") and "weighted_clusters" in str(v),
                   "reviews split 50/50 between v1 and v3")
    versions = _reviews_versions(gateway_get(bookinfo, "/productpage", count=100,
                                             concurrency=4))
    # Each request picks v3 with probability 1/2, independently: v3's count is
    # Binomial(100, 0.5), standard deviation 5. 30..70 is four standard deviations either
    # side; a correct split falls outside it with probability 3.2e-5 (about once in 31,000
    # runs), while a split that ignores the weights (0 or 100) always fails.
    assert set(versions) == {"v1", "v3"}, versions
    assert 30 <= versions["v3"] <= 70, versions


def test_w3_shift_all_of_reviews_to_v3(bookinfo: Mesh) -> None:
    use(bookinfo, *sample("virtual-service-reviews-v3.yaml"))
    wait_for_vhost(bookinfo, "productpage-v1", "reviews",
                   lambda v: routed_to(v, "v3") and "weighted_clusters" not in str(v),
                   "reviews on subset v3 only")
    answers = gateway_get(bookinfo, "/productpage", count=20, concurrency=2)
    assert _reviews_versions(answers) == {"v3": 20}
    # v3 called ratings through its sidecar: red stars on every page.
    assert all(a["page"]["reviews"]["rating"] == {"Reviewer1": 5, "Reviewer2": 4}
               for a in answers), answers


def test_w3_end_user_jason_goes_to_reviews_v2_others_to_v1(bookinfo: Mesh) -> None:
    use(bookinfo, *sample("virtual-service-reviews-test-v2.yaml"))
    wait_for_vhost(bookinfo, "productpage-v1", "reviews",
                   lambda v: routed_to(v, "v1", "v2") and "end-user" in str(v),
                   "reviews: jason on v2, the rest on v1")
    jason = gateway_get(bookinfo, "/productpage", headers={"end-user": "jason"}, count=10)
    # productpage takes the user from the cookie /login sets, as Bookinfo's session does.
    logged_in = gateway_get(bookinfo, "/productpage", headers={"cookie": "user=jason"},
                            count=5)
    others = (gateway_get(bookinfo, "/productpage", count=10)
              + gateway_get(bookinfo, "/productpage", headers={"end-user": "json"}, count=5))
    assert _reviews_versions(jason + logged_in) == {"v2": 15}
    assert all(a["page"]["reviews"]["rating"] == {"Reviewer1": 5, "Reviewer2": 4}
               for a in jason + logged_in)
    assert _reviews_versions(others) == {"v1": 15}


def test_w3_gateway_rewrites_products_and_bookinfoproductpage_to_productpage(
        bookinfo: Mesh) -> None:
    (gateway_doc, service) = sample("bookinfo-gateway.yaml")
    rewrite = {"match": [{"uri": {"exact": "/products"}},
                         {"uri": {"exact": "/bookinfoproductpage"}}],
               "rewrite": {"uri": "/productpage"},
               "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}
    service["spec"]["http"].insert(0, rewrite)
    use(bookinfo, gateway_doc, service)
    wait_for_gateway(bookinfo, lambda c: "/bookinfoproductpage" in str(c),
                     "the rewrite routes on the gateway")
    productpage = bookinfo.pods["productpage-v1"]
    seen_before = len(productpage.app_log().splitlines())
    for path in ("/products", "/bookinfoproductpage"):
        (answer,) = gateway_get(bookinfo, path)
        assert answer["status"] == 200, (path, answer)
        assert answer["page"]["reviews"]["version"] == "v1", (path, answer)
    for path in ("/products/0", "/bookinfoproductpagex"):  # exact matches only
        (answer,) = gateway_get(bookinfo, path)
        assert answer["status"] == 404, (path, answer)
    received = [json.loads(line.removeprefix("request "))["path"]
                for line in productpage.app_log().splitlines()[seen_before:]
                if line.startswith("request ")]
    assert received == ["/productpage", "/productpage"], received


def _fault(config: Mapping[str, Any]) -> str:
    """The fault filter's per-route configs of a route configuration, as text."""
    return str([route.get("typed_per_filter_config", {})
                for vhost in config.get("virtual_hosts", []) for route in vhost["routes"]])


def _ratings(fault: Mapping[str, Any] | None = None, *, user: str = "") -> dict[str, Any]:
    """ratings on v1, with `fault` on every request, or only on `user`'s."""
    destination = [{"destination": {"host": "ratings", "subset": "v1"}}]
    routes: list[dict[str, Any]] = []
    if fault is not None:
        match = [{"headers": {"end-user": {"exact": user}}}] if user else []
        routes.append({"match": match, "fault": fault, "route": destination}
                      if match else {"fault": fault, "route": destination})
    routes.append({"route": destination})
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "ratings", "namespace": "default"},
            "spec": {"hosts": ["ratings"], "http": routes}}


def test_w3_reviews_timeout_cuts_a_delayed_ratings_call_short(bookinfo: Mesh) -> None:
    reviews = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "reviews", "namespace": "default"},
               "spec": {"hosts": ["reviews"], "http": [{
                   "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                   "timeout": "0.5s"}]}}
    delay = {"delay": {"fixedDelay": "2s", "percentage": {"value": 100}}}
    use(bookinfo, reviews, _ratings(delay))
    wait_for_vhost(bookinfo, "reviews-v2", "ratings", lambda v: "fixed_delay" in str(v),
                   "the 2 s delay on ratings")
    wait_for_vhost(bookinfo, "productpage-v1", "reviews",
                   lambda v: routed_to(v, "v2") and "0.500s" in str(v),
                   "reviews on v2 with a 0.5 s timeout")
    started = time.monotonic()
    found = page(bookinfo)
    elapsed = time.monotonic() - started
    # productpage's sidecar gave up on reviews after 0.5 s and answered 504 itself;
    # without the timeout the page would take the 2 s delay (generous margin for 2 CPUs).
    assert found["reviews"]["status"] == 504, found
    assert 0.4 <= found["reviews"]["elapsed"] < 1.5, found
    assert elapsed < 1.5, (elapsed, found)


def test_w3_ratings_abort_for_jason_only(bookinfo: Mesh) -> None:
    use(bookinfo, *sample("virtual-service-reviews-jason-v2-v3.yaml"),
        *sample("virtual-service-ratings-test-abort.yaml"))
    for caller in ("reviews-v2", "reviews-v3"):
        wait_for_vhost(bookinfo, caller, "ratings", lambda v: "abort" in str(v),
                       f"{caller}: ratings aborted for jason")
    wait_for_vhost(bookinfo, "productpage-v1", "reviews",
                   lambda v: routed_to(v, "v2", "v3"), "reviews: jason on v2, the rest on v3")
    jason = page(bookinfo, user="jason")
    assert jason["reviews"]["version"] == "v2", jason
    assert jason["reviews"]["rating"] == {"error": RATINGS_UNAVAILABLE, "status": 500}, jason
    for user in ("", "alice"):
        other = page(bookinfo, user=user)
        assert other["reviews"]["version"] == "v3", other
        assert other["reviews"]["rating"] == {"Reviewer1": 5, "Reviewer2": 4}, other


def _delays_injected(bookinfo: Mesh, pod: str) -> int:
    return sum(bookinfo.pods[pod].stats("fault.delays_injected").values())


def test_w3_ratings_delay_for_a_percentage_of_jasons_requests(bookinfo: Mesh) -> None:
    delay = {"delay": {"fixedDelay": "0.3s", "percentage": {"value": 50}}}
    use(bookinfo, *sample("virtual-service-reviews-jason-v2-v3.yaml"),
        _ratings(delay, user="jason"))
    wait_for_vhost(bookinfo, "reviews-v2", "ratings", lambda v: "fixed_delay" in str(v),
                   "ratings delayed for half of jason's requests")
    wait_for_vhost(bookinfo, "productpage-v1", "reviews",
                   lambda v: routed_to(v, "v2", "v3"), "reviews: jason on v2, the rest on v3")
    injected_before = _delays_injected(bookinfo, "reviews-v2")
    jason = gateway_get(bookinfo, "/productpage", headers={"end-user": "jason"}, count=30,
                        concurrency=3)
    others = gateway_get(bookinfo, "/productpage", count=10, concurrency=2)
    assert _reviews_versions(jason) == {"v2": 30}
    assert _reviews_versions(others) == {"v3": 10}
    waits = [a["page"]["reviews"]["ratings_elapsed"] for a in jason]
    # Delayed calls take 0.3 s (Envoy's timer may fire a hair early), the others a few ms.
    delayed = sum(1 for w in waits if w >= 0.2)
    # Binomial(30, 0.5): 5..25 holds a correct 50% with probability 1 - 5.9e-5; none or all
    # delayed (a percentage ignored) always fails.
    assert 5 <= delayed <= 25, waits
    # The delays were the fault filter's, in reviews v2's sidecar, one per slow answer.
    assert _delays_injected(bookinfo, "reviews-v2") - injected_before == delayed, waits
    assert all(a["page"]["reviews"]["ratings_elapsed"] < 0.2 for a in others), others


CIRCUIT_BREAKER = {
    "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
    "metadata": {"name": "httpbin", "namespace": "default"},
    "spec": {"host": "httpbin", "trafficPolicy": {
        "connectionPool": {"tcp": {"maxConnections": 1},
                           "http": {"http1MaxPendingRequests": 1,
                                    "maxRequestsPerConnection": 1}},
        "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s",
                             "baseEjectionTime": "3m", "maxEjectionPercent": 100}}}}
HTTPBIN_CLUSTER = "outbound|8000||httpbin.default.svc.cluster.local"


def test_w3_circuit_breaker_sheds_concurrent_requests_to_httpbin(bookinfo: Mesh) -> None:
    use(bookinfo, CIRCUIT_BREAKER)
    fortio = bookinfo.pods["fortio"]
    wait_until(lambda: "outlier_detection" in str(fortio.cluster_config(HTTPBIN_CLUSTER))
               and fortio.healthy_hosts(HTTPBIN_CLUSTER) == 1,
               "fortio's httpbin cluster with the circuit breaker")
    cluster = fortio.cluster_config(HTTPBIN_CLUSTER)
    assert cluster is not None
    thresholds = cluster["circuit_breakers"]["thresholds"][0]
    assert (thresholds["max_connections"], thresholds["max_pending_requests"]) == (1, 1)
    # Istio's clusters carry `alt_stat_name` "<name>;": the stats' prefix.
    overflow = f"cluster.{HTTPBIN_CLUSTER};.upstream_rq_pending_overflow"
    before = fortio.stat(overflow)
    # Like the task's `fortio load -c 3 -n 30`: 3 connections at once to a slow-ish
    # endpoint; one request goes upstream, one waits, the third overflows.
    answers = fortio.get("http://httpbin:8000/delay/0.1", count=30, concurrency=3)
    statuses = Counter(a["status"] for a in answers)
    shed = [a for a in answers if a["status"] == 503]
    assert set(statuses) == {200, 503}, statuses
    # Envoy sheds them itself (x-envoy-overloaded), it does not pass on upstream errors.
    assert all(a["headers"].get("x-envoy-overloaded") == "true" for a in shed), shed
    assert fortio.stat(overflow) - before == len(shed), statuses


def test_w3_reviews_mirrored_to_v2_with_a_shadow_host(bookinfo: Mesh) -> None:
    mirror = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
              "metadata": {"name": "reviews", "namespace": "default"},
              "spec": {"hosts": ["reviews"], "http": [{
                  "route": [{"destination": {"host": "reviews", "subset": "v1"},
                             "weight": 100}],
                  "mirror": {"host": "reviews", "subset": "v2"},
                  "mirrorPercentage": {"value": 50.0}}]}}
    use(bookinfo, mirror)
    wait_for_vhost(bookinfo, "productpage-v1", "reviews",
                   lambda v: "request_mirror_policies" in str(v), "reviews mirrored to v2")
    productpage, v2 = bookinfo.pods["productpage-v1"], bookinfo.pods["reviews-v2"]
    mirrored = f"cluster.{subset_cluster('reviews', 'v2')};.upstream_rq_total"
    sent_before, seen_before = productpage.stat(mirrored), len(v2.app_log().splitlines())
    answers = gateway_get(bookinfo, "/productpage", count=40, concurrency=4)
    # The caller only ever sees v1: the mirrored answers are dropped by the sidecar.
    assert _reviews_versions(answers) == {"v1": 40}

    def received() -> list[str]:
        return [json.loads(line.removeprefix("request "))["host"]
                for line in v2.app_log().splitlines()[seen_before:]
                if line.startswith("request ") and "/reviews/" in line]

    # Mirrored requests are sent without waiting for them: let them all arrive.
    wait_until(lambda: len(received()) == productpage.stat(mirrored) - sent_before,
               "every mirrored request to reach reviews v2")
    hosts = received()
    # Binomial(40, 0.5): 8..32 holds a correct 50% with probability 1 - 4.2e-5.
    assert 8 <= len(hosts) <= 32, hosts
    assert set(hosts) == {"reviews-shadow:9080"}, hosts


def _ingress(name: str, host: str, paths: list[tuple[str, str, str]], *,
             annotation: str = "", class_name: str = "") -> dict[str, Any]:
    """An Ingress routing `host`'s (path, pathType, service) to port 9080."""
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if annotation:
        meta["annotations"] = {"kubernetes.io/ingress.class": annotation}
    spec: dict[str, Any] = {"rules": [{"host": host, "http": {"paths": [
        {"path": path, "pathType": path_type,
         "backend": {"service": {"name": service, "port": {"number": 9080}}}}
        for path, path_type, service in paths]}}]}
    if class_name:
        spec["ingressClassName"] = class_name
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": spec}


def _ingress_class(name: str, controller: str) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": name}, "spec": {"controller": controller}}


def _get_host(mesh: Mesh, host: str, path: str) -> dict[str, Any]:
    (answer,) = fetch_concurrently(gateway_address(mesh) + path, host, 1, 10.0,
                                   headers={}, concurrency=1)
    return answer


def test_w3_kubernetes_ingress_is_served_by_the_same_gateway(bookinfo: Mesh) -> None:
    use(bookinfo,
        # Istio's ingress task: the annotation ...
        _ingress("bookinfo-annotated", "bookinfo.example.com",
                 [("/productpage", "Exact", "productpage"), ("/static", "Prefix",
                                                            "productpage")],
                 annotation="istio"),
        # ... or ingressClassName naming an IngressClass of Istio's controller ...
        _ingress_class("istio", "istio.io/ingress-controller"),
        _ingress("details-by-class", "details.example.com",
                 [("/details", "Prefix", "details")], class_name="istio"),
        # ... while another controller's Ingress is left alone.
        _ingress_class("nginx", "k8s.io/ingress-nginx"),
        _ingress("not-ours", "nginx.example.com", [("/details", "Prefix", "details")],
                 class_name="nginx"))
    wait_for_gateway(bookinfo, lambda c: "details.example.com" in str(c),
                     "the Ingress hosts on the gateway's route")
    wait_for_vhost(bookinfo, "productpage-v1", "reviews", lambda v: routed_to(v, "v1"),
                   "reviews on subset v1")

    served = _get_host(bookinfo, "bookinfo.example.com", "/productpage")
    assert served["status"] == 200, served
    assert served["headers"]["x-backend-name"] == "productpage", served
    assert json.loads(served["body"])["reviews"]["version"] == "v1", served
    assert _get_host(bookinfo, "bookinfo.example.com", "/static/css/style.css")["status"] == 200
    details = _get_host(bookinfo, "details.example.com", "/details/0")
    assert details["status"] == 200 and details["headers"]["x-backend-name"] == "details"
    # Exact means exact; other paths of an Ingress host, and paths only another controller's
    # Ingress names, are the gateway's 404, not an application's (the walkthrough's
    # VirtualService answers every host, but on its own paths only).
    for host, path in (("bookinfo.example.com", "/productpage/extra"),
                       ("bookinfo.example.com", "/details/0"),
                       ("nginx.example.com", "/details/0")):
        missed = _get_host(bookinfo, host, path)
        assert missed["status"] == 404 and "x-backend-name" not in missed["headers"], (
            host, path, missed)
    # The Gateway + VirtualService of the walkthrough still serve next to the Ingress.
    assert page(bookinfo)["reviews"]["status"] == 200
