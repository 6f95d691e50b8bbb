"""W4, egress through a real sidecar: outboundTrafficPolicy, ServiceEntry resolutions and a
VirtualService timeout on an external host. `external` (tests/mesh/egress.py) plays
httpbin.org; the client's hosts file maps the external names to it, and the sidecar's
STRICT_DNS clusters resolve them through the same file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.mesh.egress import UNASSIGNED
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
