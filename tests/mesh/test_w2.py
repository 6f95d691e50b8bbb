"""W2 through real sidecars: client app -> client sidecar (outbound) -> server sidecar
(inbound) -> httpbin, then a VirtualService weight split between DestinationRule subsets."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.mesh.conftest import HTTPBIN
from tests.mesh.mesh import Mesh
from tests.mesh.netns import wait_until

OUTBOUND = f"cluster.outbound|80||{HTTPBIN.hostname};.upstream_rq_total"
INBOUND = "cluster.inbound|8000||;.upstream_rq_total"


def _inbound_total(mesh: Mesh) -> int:
    return sum(mesh.pods[p].stat(INBOUND) for p in ("httpbin-v1", "httpbin-v2"))


def _no_split(mesh: Mesh) -> None:
    mesh.remove("split.yaml")
    mesh.wait_for_route("sleep", "80", lambda c: "weighted_clusters" not in str(c),
                        "route 80 without a weight split")


def test_w2_service_to_service_through_both_sidecars(mesh: Mesh) -> None:
    _no_split(mesh)
    client = mesh.pods["sleep"]
    before_out, before_in = client.stat(OUTBOUND), _inbound_total(mesh)

    (answer,) = client.get("http://httpbin-service/headers")

    assert answer["status"] == 200, answer
    headers = answer["headers"]
    assert headers["server"] == "envoy"  # the client sidecar answered the application
    assert "x-envoy-upstream-service-time" in headers
    assert answer["version"] in ("v1", "v2")
    # The request crossed the client sidecar's outbound cluster...
    assert client.stat(OUTBOUND) > before_out
    # ...and a server sidecar's inbound cluster on the way in.
    assert _inbound_total(mesh) > before_in
    echoed = answer["body"]
    assert "x-request-id" in echoed  # added by Envoy, echoed by httpbin


def test_w2_every_name_of_the_service_reaches_it(mesh: Mesh) -> None:
    client = mesh.pods["sleep"]
    for url, host in (("http://httpbin-service/get", ""),
                      ("http://10.96.0.20/get", "httpbin-service.default"),
                      ("http://10.96.0.20/get", f"{HTTPBIN.hostname}:80"),
                      ("http://10.96.0.20/get", "10.96.0.20")):
        (answer,) = client.get(url, host=host)
        assert answer["status"] == 200, (url, host, answer)


def _split(v1: int, v2: int) -> list[dict[str, Any]]:
    rule = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "httpbin", "namespace": "default"},
            "spec": {"host": "httpbin-service",
                     "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                 {"name": "v2", "labels": {"version": "v2"}}]}}
    service = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "httpbin", "namespace": "default"},
               "spec": {"hosts": ["httpbin-service"], "http": [{"route": [
                   {"destination": {"host": "httpbin-service", "subset": "v1"}, "weight": v1},
                   {"destination": {"host": "httpbin-service", "subset": "v2"}, "weight": v2},
               ]}]}}
    return [rule, service]


def test_virtual_service_weights_split_traffic_between_subsets(mesh: Mesh) -> None:
    client = mesh.pods["sleep"]
    mesh.write("split.yaml", _split(20, 80))
    mesh.wait_for_route("sleep", "80", lambda c: "weighted_clusters" in str(c),
                        "the 20/80 split on route 80")
    # The route may arrive before its new subset clusters are warm; do not count that.
    subsets = [f"outbound|80|{subset}|{HTTPBIN.hostname}" for subset in ("v1", "v2")]
    wait_until(lambda: all(client.healthy_hosts(c) == 1 for c in subsets),
               "both subset clusters warmed")
    try:
        answers = client.get("http://httpbin-service/get", count=100)
        assert all(a["status"] == 200 for a in answers), Counter(a["status"] for a in answers)
        versions = Counter(a["version"] for a in answers)
        # 80 expected on v2; the bounds are ~6 standard deviations wide: never flaky.
        assert set(versions) == {"v1", "v2"}, versions
        assert 55 <= versions["v2"] <= 97, versions
        subset_stat = f"cluster.outbound|80|v2|{HTTPBIN.hostname};.upstream_rq_total"
        assert client.stat(subset_stat) >= versions["v2"]

        mesh.write("split.yaml", _split(100, 0))
        mesh.wait_for_route("sleep", "80", lambda c: "weighted_clusters" not in str(c)
                            and "|v1|" in str(c), "everything on subset v1")
        answers = client.get("http://httpbin-service/get", count=20)
        assert {a["version"] for a in answers} == {"v1"}
    finally:
        _no_split(mesh)
