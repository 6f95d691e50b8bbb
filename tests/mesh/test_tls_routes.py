"""A sidecar's TLS-family port through both sidecars, the TLS session ending at the
application: with no VirtualService the client sidecar proxies `<vip>_443` to the service's
cluster untouched; a mesh VirtualService `tls` route then selects the subset by the SNI the
client sends (tls_inspector and one filter chain per `sniHosts`). The client verifies the
application's certificate every time: no sidecar terminated the TLS.

This module builds its own small mesh (a client and two TLS servers) so the shared one stays
as it is."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mesh.conftest import require_capabilities
from tests.mesh.mesh import Mesh, ServiceSpec, running
from tests.mesh.netns import wait_until
from tests.mesh.pods import PodSpec
from tests.tls_certs import TestCA

TLS_CLIENT = Path(__file__).with_name("tls_client.py")
SECURE = ServiceSpec("secure", "10.96.0.40", {"app": "secure"}, port=443, target_port=8443,
                     port_name="https")
SNI_NAMES = ["secure.default.svc.cluster.local", "v1.secure.example.com",
             "v2.secure.example.com"]


class TLSMesh:
    def __init__(self, mesh: Mesh, ca: Path) -> None:
        self.mesh = mesh
        self.ca = ca

    def connect(self, sni: str, count: int = 1) -> list[dict[str, Any]]:
        """`count` TLS connections from the client application to secure:443 with `sni`."""
        client = self.mesh.pods["sleep"]
        output = client.netns.run(sys.executable, str(TLS_CLIENT), SECURE.name,
                                  str(SECURE.port), "--sni", sni, "--cafile", str(self.ca),
                                  "--count", str(count), timeout=count * 5 + 20)
        answers: list[dict[str, Any]] = json.loads(output)
        return answers


@pytest.fixture(scope="module")
def tls_mesh() -> Iterator[TLSMesh]:
    require_capabilities()
    certs = Path(tempfile.mkdtemp(prefix="pilotpy-mesh-tls-"))
    ca = TestCA(certs)
    pair = ca.issue("secure", SNI_NAMES)
    tls = (pair.cert, pair.key)
    built = Mesh([
        PodSpec("sleep", {"app": "sleep"}, app_port=None, delta=True),
        PodSpec("secure-v1", {"app": "secure", "version": "v1"}, app_port=8443, tls=tls),
        PodSpec("secure-v2", {"app": "secure", "version": "v2"}, app_port=8443, tls=tls),
    ], [SECURE])
    try:
        for started in running(built):
            yield TLSMesh(started, ca.ca)
            assert not started.rejected(), f"rejected configuration: {started.rejected()}"
    finally:
        shutil.rmtree(certs, ignore_errors=True)


def _listener(mesh: Mesh, name: str) -> dict[str, Any] | None:
    dump = json.loads(mesh.pods["sleep"].admin_get("/config_dump?resource=dynamic_listeners"))
    for entry in dump.get("configs", []):
        listener: dict[str, Any] = entry.get("active_state", {}).get("listener", {})
        if listener.get("name") == name:
            return listener
    return None


def test_tls_port_without_a_route_reaches_the_service_untouched(tls_mesh: TLSMesh) -> None:
    mesh = tls_mesh.mesh
    listener = _listener(mesh, f"{SECURE.vip}_443")
    assert listener is not None
    (chain,) = listener["filter_chains"]
    assert "filter_chain_match" not in chain  # its own VIP: no SNI needed
    cluster = f"outbound|443||{SECURE.hostname}"
    before = mesh.pods["sleep"].stat(f"cluster.{cluster};.upstream_cx_total")

    answers = tls_mesh.connect(SECURE.hostname, count=6)

    assert all(a["status"] == 200 for a in answers), answers
    assert {a["peer"] for a in answers} == {SECURE.hostname}  # the application's certificate
    assert {a["version"] for a in answers} <= {"v1", "v2"}
    assert mesh.pods["sleep"].stat(f"cluster.{cluster};.upstream_cx_total") >= before + 6
    inbound = sum(mesh.pods[p].stat("cluster.inbound|8443||;.upstream_cx_total")
                  for p in ("secure-v1", "secure-v2"))
    assert inbound >= 6  # through the server sidecars too
    assert not mesh.rejected(), mesh.rejected()


def test_tls_route_selects_the_subset_by_sni(tls_mesh: TLSMesh) -> None:
    mesh = tls_mesh.mesh
    mesh.write("tls-route.yaml", [
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "secure", "namespace": "default"},
         "spec": {"host": "secure", "subsets": [
             {"name": "v1", "labels": {"version": "v1"}},
             {"name": "v2", "labels": {"version": "v2"}}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "secure", "namespace": "default"},
         "spec": {"hosts": ["secure", "*.secure.example.com"], "tls": [
             {"match": [{"sniHosts": ["v1.secure.example.com"]}],
              "route": [{"destination": {"host": "secure", "subset": "v1"}}]},
             {"match": [{"port": 443, "sniHosts": ["v2.secure.example.com"]}],
              "route": [{"destination": {"host": "secure", "subset": "v2"}}]}]}},
    ])
    client = mesh.pods["sleep"]
    subsets = [f"outbound|443|{v}|{SECURE.hostname}" for v in ("v1", "v2")]

    def routed() -> bool:
        listener = _listener(mesh, f"{SECURE.vip}_443")
        names = [c.get("filter_chain_match", {}).get("server_names", [])
                 for c in (listener or {}).get("filter_chains", [])]
        return (names == [["v1.secure.example.com"], ["v2.secure.example.com"]]
                and all(client.healthy_hosts(s) == 1 for s in subsets))

    wait_until(routed, "SNI filter chains for both subsets on the client sidecar", timeout=30)
    listener = _listener(mesh, f"{SECURE.vip}_443")
    assert listener is not None
    assert [f["name"] for f in listener["listener_filters"]] == [
        "envoy.filters.listener.tls_inspector"]

    for version in ("v1", "v2"):
        answers = tls_mesh.connect(f"{version}.secure.example.com", count=5)
        assert [a["status"] for a in answers] == [200] * 5, answers
        assert {a["version"] for a in answers} == {version}, answers
        assert {a["peer"] for a in answers} == {SECURE.hostname}  # still the app's cert
        assert client.stat(
            f"cluster.outbound|443|{version}|{SECURE.hostname};.upstream_cx_total") >= 5
    assert not mesh.rejected(), mesh.rejected()
