"""Ports by protocol through both sidecars: a TCP port (`tcp-web`) is proxied byte for byte
by `<vip>_9000` and the inbound TCP chain; an unnamed port is sniffed: the client sidecar
detects HTTP on `<vip>_7000` and routes it through route `<fqdn>:7000`, the server sidecar
detects it again on its inbound chains, and opaque bytes take the TCP chains on both sides;
a headless service's TCP port is served by one listener per pod address; a `tcp` route of a
VirtualService chooses the destination subset."""

from __future__ import annotations

import sys
from typing import Any

from tests.mesh.conftest import HTTPBIN_HEADLESS, HTTPBIN_SNIFFED, HTTPBIN_TCP
from tests.mesh.mesh import Mesh, ServiceSpec
from tests.mesh.netns import wait_until


def _inbound(mesh: Mesh, port: int, stat: str) -> int:
    return sum(mesh.pods[p].stat(f"cluster.inbound|{port}||;.{stat}")
               for p in ("httpbin-v1", "httpbin-v2"))


def _get_counting(mesh: Mesh, service: ServiceSpec, stat: str) -> tuple[dict[str, Any], bool]:
    """One GET from the client to `service`, and whether `stat` grew on the client's outbound
    cluster and on a server's inbound cluster."""
    client = mesh.pods["sleep"]
    outbound = f"cluster.outbound|{service.port}||{service.hostname};.{stat}"
    before_out, before_in = client.stat(outbound), _inbound(mesh, service.target_port, stat)
    (answer,) = client.get(f"http://{service.name}:{service.port}/headers")
    grew = (client.stat(outbound) > before_out
            and _inbound(mesh, service.target_port, stat) > before_in)
    return answer, grew


def test_tcp_port_goes_through_tcp_proxy_on_both_sides(mesh: Mesh) -> None:
    answer, both_sides = _get_counting(mesh, HTTPBIN_TCP, "upstream_cx_total")
    assert answer["status"] == 200, answer
    # No HTTP processing on the way: the application's own Server header, no Envoy headers.
    assert answer["headers"]["server"].startswith("BaseHTTP")
    assert "x-envoy-upstream-service-time" not in answer["headers"]
    assert both_sides


def test_unnamed_port_is_sniffed_as_http(mesh: Mesh) -> None:
    # Requests, not just connections, on both clusters: sniffed on the way out and in.
    answer, both_sides = _get_counting(mesh, HTTPBIN_SNIFFED, "upstream_rq_total")
    assert answer["status"] == 200, answer
    assert answer["headers"]["server"] == "envoy"  # the outbound HTTP chain answered
    assert both_sides
    assert mesh.pods["sleep"].route_config(f"{HTTPBIN_SNIFFED.hostname}:7000") is not None


# Opens one connection, sends bytes no HTTP parser accepts, prints what comes back.
_OPAQUE_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as conn:
    conn.sendall(b"\\x16\\x03opaque bytes, not HTTP\\r\\n\\r\\n")
    data = b""
    try:
        while chunk := conn.recv(4096):
            data += chunk
    except OSError as error:
        print("error", repr(error))
    print(data[:1000])
"""


def test_unnamed_port_carries_opaque_tcp_through_both_sidecars(mesh: Mesh) -> None:
    # Not HTTP: the client sidecar's default chain proxies it; the server sidecar's TCP chain
    # for the sniffed port must take it (it names raw_buffer, like the HTTP chain beside it).
    client = mesh.pods["sleep"]
    before = _inbound(mesh, HTTPBIN_SNIFFED.target_port, "upstream_cx_total")
    output = client.netns.run(sys.executable, "-c", _OPAQUE_CLIENT, HTTPBIN_SNIFFED.name,
                              str(HTTPBIN_SNIFFED.port), timeout=30)
    # The application answers its own error page (400) to the bytes: they reached it.
    assert "400" in output, output
    assert _inbound(mesh, HTTPBIN_SNIFFED.target_port, "upstream_cx_total") > before


def test_headless_tcp_port_listens_on_each_pod_address(mesh: Mesh) -> None:
    client, server = mesh.pods["sleep"], mesh.pods["httpbin-v2"]
    outbound = f"cluster.outbound|9000||{HTTPBIN_HEADLESS.hostname};.upstream_cx_total"
    before = client.stat(outbound)

    (answer,) = client.get(f"http://{server.ip}:9000/get")

    assert (answer["status"], answer["version"]) == (200, "v2"), answer
    assert client.stat(outbound) > before  # listener <pod ip>_9000, not the VIP's
    listeners = client.admin_get("/listeners")
    assert f"{server.ip}_9000" in listeners and f"{mesh.pods['httpbin-v1'].ip}_9000" in listeners


def test_virtual_service_tcp_route_picks_the_subset(mesh: Mesh) -> None:
    client = mesh.pods["sleep"]
    subset = f"outbound|9000|v1|{HTTPBIN_TCP.hostname}"
    mesh.write("tcp-route.yaml", [
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "httpbin-tcp", "namespace": "default"},
         "spec": {"host": "httpbin-tcp", "subsets": [
             {"name": "v1", "labels": {"version": "v1"}}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "httpbin-tcp", "namespace": "default"},
         "spec": {"hosts": ["httpbin-tcp"], "tcp": [{"route": [
             {"destination": {"host": "httpbin-tcp", "subset": "v1"}}]}]}},
    ])
    try:
        wait_until(lambda: subset in client.admin_get("/config_dump?resource=dynamic_listeners")
                   and client.healthy_hosts(subset) == 1, "the tcp route to subset v1")
        answers = client.get("http://httpbin-tcp:9000/get", count=10)
        assert {(a["status"], a["version"]) for a in answers} == {(200, "v1")}, answers
    finally:
        mesh.remove("tcp-route.yaml")
    wait_until(lambda: subset not in client.admin_get("/config_dump?resource=dynamic_listeners"),
               "the tcp route removed")
