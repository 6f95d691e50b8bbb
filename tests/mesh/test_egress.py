"""W4, egress through a real sidecar: outboundTrafficPolicy, ServiceEntry resolutions and a
VirtualService timeout on an external host. `external` (tests/mesh/egress.py) plays
httpbin.org; the client's hosts file maps the external names to it, and the sidecar's
STRICT_DNS clusters resolve them through the same file."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.mesh.egress import TCP_PORT, UNASSIGNED
from tests.mesh.mesh import Mesh
from tests.mesh.netns import wait_until

SIDECAR_FILE = "egress-sidecar.yaml"
CONFIG_FILE = "egress.yaml"
REGISTRY_ONLY = {
    "apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
    "metadata": {"name": "sleep", "namespace": "default"},
    "spec": {"workloadSelector": {"labels": {"app": "sleep"}},
             "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
}
HTTPBIN_CLUSTER = "outbound|80||httpbin.org"


def service_entry(name: str, host: str, resolution: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": resolution,
                     "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}], **spec}}


HTTPBIN_ORG = service_entry("httpbin-ext", "httpbin.org", "DNS")
HTTPBIN_TIMEOUT = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "httpbin-ext", "namespace": "default"},
    "spec": {"hosts": ["httpbin.org"],
             "http": [{"timeout": "3s", "route": [{"destination": {"host": "httpbin.org"}}]}]},
}


def requests(cluster: str) -> str:
    return f"cluster.{cluster};.upstream_rq_total"


def vhosts(config: dict[str, Any]) -> set[str]:
    return {str(v.get("name")) for v in config.get("virtual_hosts", [])}


def host_addresses(mesh: Mesh, cluster: str) -> set[str]:
    """The addresses the client's sidecar holds for `cluster` (resolved ones for DNS)."""
    lines = mesh.pods["sleep"].admin_get("/clusters").splitlines()
    return {line.split("::")[1] for line in lines
            if line.startswith(f"{cluster}::") and line.endswith("::health_flags::healthy")}


@pytest.fixture
def clean(egress_mesh: Mesh) -> Iterator[Mesh]:
    """Each test starts and ends with ALLOW_ANY and no egress configuration."""
    yield egress_mesh
    egress_mesh.remove(SIDECAR_FILE)
    egress_mesh.remove(CONFIG_FILE)
    egress_mesh.wait_for_route("sleep", "80", lambda c: "allow_any" in vhosts(c)
                               and not any(h.startswith(("httpbin.org", "static.", "legacy."))
                                           for h in vhosts(c)), "egress config gone")


def registry_only(mesh: Mesh) -> None:
    mesh.write(SIDECAR_FILE, [REGISTRY_ONLY])
    mesh.wait_for_route("sleep", "80", lambda c: "block_all" in vhosts(c), "REGISTRY_ONLY")


def apply(mesh: Mesh, docs: list[dict[str, Any]], vhost: str, cluster: str) -> None:
    """Write `docs` and wait until the sidecar routes `vhost` and holds a host of `cluster`."""
    mesh.write(CONFIG_FILE, docs)
    mesh.wait_for_route("sleep", "80", lambda c: vhost in vhosts(c), f"virtual host {vhost}")
    wait_until(lambda: host_addresses(mesh, cluster), f"a healthy host in {cluster}")


def test_registry_only_blocks_httpbin_until_a_dns_service_entry_admits_it(clean: Mesh) -> None:
    client, external = clean.pods["sleep"], clean.pods["external"]
    registry_only(clean)
    (blocked,) = client.get("http://httpbin.org/get")
    assert blocked["status"] == 502, blocked

    apply(clean, [HTTPBIN_ORG], "httpbin.org:80", HTTPBIN_CLUSTER)
    # Envoy's c-ares resolver read the pod's hosts file (`ip netns exec` mounts it over
    # /etc/hosts): the STRICT_DNS cluster holds the external pod's address.
    assert host_addresses(clean, HTTPBIN_CLUSTER) == {f"{external.ip}:80"}
    before = client.stat(requests(HTTPBIN_CLUSTER))
    (admitted,) = client.get("http://httpbin.org/get")
    assert admitted["status"] == 200, admitted
    assert admitted["headers"].get("x-backend-name") == "external"
    assert client.stat(requests(HTTPBIN_CLUSTER)) == before + 1


def test_virtual_service_timeout_cuts_a_slow_external_upstream(clean: Mesh) -> None:
    client = clean.pods["sleep"]
    registry_only(clean)
    apply(clean, [HTTPBIN_ORG, HTTPBIN_TIMEOUT], "httpbin.org:80", HTTPBIN_CLUSTER)
    clean.wait_for_route("sleep", "80", lambda c: any(
        r.get("route", {}).get("timeout") == "3s"
        for v in c.get("virtual_hosts", []) if v.get("name") == "httpbin.org:80"
        for r in v.get("routes", [])), "the 3s route timeout")
    (fast,) = client.get("http://httpbin.org/delay/1", timeout=10)
    assert fast["status"] == 200, fast
    (slow,) = client.get("http://httpbin.org/delay/5", timeout=10)
    assert slow["status"] == 504, slow
    assert slow["body"] == "upstream request timeout"
    assert 2.5 <= slow["elapsed"] <= 4.5, slow["elapsed"]


def test_static_service_entry_reaches_its_endpoints_by_eds(clean: Mesh) -> None:
    client, external = clean.pods["sleep"], clean.pods["external"]
    registry_only(clean)
    cluster = "outbound|80||static.example.net"
    entry = service_entry("static-ext", "static.example.net", "STATIC",
                          endpoints=[{"address": external.ip}])
    apply(clean, [entry], "static.example.net:80", cluster)
    assert host_addresses(clean, cluster) == {f"{external.ip}:80"}
    # The name resolves to an address nobody holds: only the EDS endpoint answers.
    (answer,) = client.get("http://static.example.net/get")
    assert answer["status"] == 200, answer
    assert answer["headers"].get("x-backend-name") == "external"
    assert client.stat(requests(cluster)) >= 1
    assert UNASSIGNED not in host_addresses(clean, cluster)


def test_none_service_entry_passes_through_to_the_original_destination(clean: Mesh) -> None:
    client, external = clean.pods["sleep"], clean.pods["external"]
    registry_only(clean)
    cluster = "outbound|80||legacy.example.net"
    entry = service_entry("legacy-ext", "legacy.example.net", "NONE",
                          addresses=[f"{external.ip}/32"])
    clean.write(CONFIG_FILE, [entry])
    clean.wait_for_route("sleep", "80", lambda c: "legacy.example.net:80" in vhosts(c),
                         "virtual host legacy.example.net:80")
    before = client.stat(requests(cluster))
    for url in ("http://legacy.example.net/get", f"http://{external.ip}/get"):
        (answer,) = client.get(url)
        assert answer["status"] == 200, (url, answer)
        assert answer["headers"].get("x-backend-name") == "external"
    # ORIGINAL_DST: the sidecar connected where the application did, through the entry's
    # cluster (not PassthroughCluster, which REGISTRY_ONLY does not route to).
    assert client.stat(requests(cluster)) == before + 2


def test_allow_any_reaches_unknown_hosts_through_passthrough(clean: Mesh) -> None:
    client = clean.pods["sleep"]
    clean.wait_for_route("sleep", "80", lambda c: "allow_any" in vhosts(c), "ALLOW_ANY")
    before = client.stat(requests("PassthroughCluster"))
    (answer,) = client.get("http://unknown.example.net/get")
    assert answer["status"] == 200, answer
    assert answer["headers"].get("x-backend-name") == "external"
    assert client.stat(requests("PassthroughCluster")) == before + 1


def chain_ranges(mesh: Mesh, pod: str, listener: str) -> list[list[str]]:
    """The prefix ranges of each filter chain of `listener` in the pod's sidecar."""
    dump = json.loads(mesh.pods[pod].admin_get("/config_dump?resource=dynamic_listeners"))
    for entry in dump.get("configs", []):
        active = entry.get("active_state", {}).get("listener", {})
        if active.get("name") == listener:
            return [[f"{r['address_prefix']}/{r['prefix_len']}"
                     for r in c.get("filter_chain_match", {}).get("prefix_ranges", [])]
                    for c in active.get("filter_chains", [])]
    return []


def test_registry_only_reaches_every_cidr_of_a_multi_cidr_service_entry(clean: Mesh) -> None:
    """Like Istio's samples/external/github.yaml (several CIDRs, a TCP port): each range
    gets its own chain; none falls to the catch-all's blackhole."""
    client = clean.pods["sleep"]
    targets = [clean.pods["external"], clean.pods["external2"]]
    ranges = [str(ipaddress.ip_network(f"{p.ip}/30", strict=False)) for p in targets]
    assert len(set(ranges)) == 2, ranges
    registry_only(clean)
    for pod in targets:
        (blocked,) = client.get(f"http://{pod.ip}:{TCP_PORT}/get", timeout=3)
        assert blocked["status"] == 0, blocked
    entry = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
             "metadata": {"name": "ranges", "namespace": "default"},
             "spec": {"hosts": ["ranges.example.net"], "location": "MESH_EXTERNAL",
                      "resolution": "NONE", "addresses": ["192.0.2.0/28", *ranges],
                      "ports": [{"number": TCP_PORT, "name": "tcp", "protocol": "TCP"}]}}
    clean.write(CONFIG_FILE, [entry])
    listener = f"0.0.0.0_{TCP_PORT}"
    wait_until(lambda: len(chain_ranges(clean, "sleep", listener)) == 3,
               f"three CIDR chains on {listener}")
    assert chain_ranges(clean, "sleep", listener) == [["192.0.2.0/28"], *([r] for r in ranges)]
    cluster = f"outbound|{TCP_PORT}||ranges.example.net"
    before = client.stat(f"cluster.{cluster};.upstream_cx_total")
    for pod in targets:
        (answer,) = client.get(f"http://{pod.ip}:{TCP_PORT}/get")
        assert answer["status"] == 200, (pod.spec.name, answer)
        assert answer["headers"].get("x-backend-name") == pod.spec.name
    assert client.stat(f"cluster.{cluster};.upstream_cx_total") == before + 2


MY_HTTPBIN = {"apiVersion": "v1", "kind": "Service",
              "metadata": {"name": "my-httpbin", "namespace": "default"},
              "spec": {"type": "ExternalName", "externalName": "httpbin.org",
                       "ports": [{"name": "http", "port": 80}]}}


def test_external_name_service_is_an_alias_of_its_target(clean: Mesh) -> None:
    """istio.io's "egress to Kubernetes services" task: my-httpbin -> httpbin.org. With a
    ServiceEntry for httpbin.org the alias routes to its cluster; without one it is an
    unknown host, passed through (istiod makes nothing of its own for an ExternalName)."""
    client = clean.pods["sleep"]
    url = "http://my-httpbin.default.svc.cluster.local/get"
    apply(clean, [MY_HTTPBIN, HTTPBIN_ORG], "httpbin.org:80", HTTPBIN_CLUSTER)
    clean.wait_for_route("sleep", "80", lambda c: any(
        "my-httpbin.default.svc.cluster.local" in v.get("domains", [])
        for v in c.get("virtual_hosts", []) if v.get("name") == "httpbin.org:80"),
        "my-httpbin as a domain of httpbin.org:80")
    before = client.stat(requests(HTTPBIN_CLUSTER))
    for target in (url, "http://my-httpbin/get"):
        (answer,) = client.get(target)
        assert answer["status"] == 200, (target, answer)
        assert answer["headers"].get("x-backend-name") == "external"
    assert client.stat(requests(HTTPBIN_CLUSTER)) == before + 2

    clean.write(CONFIG_FILE, [MY_HTTPBIN])
    clean.wait_for_route("sleep", "80", lambda c: "httpbin.org:80" not in vhosts(c),
                         "httpbin.org's virtual host gone")
    route = clean.pods["sleep"].route_config("80") or {}
    assert not any("my-httpbin" in v for v in vhosts(route))
    before = client.stat(requests("PassthroughCluster"))
    (answer,) = client.get(url)
    assert answer["status"] == 200, answer
    assert answer["headers"].get("x-backend-name") == "external"
    assert client.stat(requests("PassthroughCluster")) == before + 1
