"""Gateway servers beyond plain HTTP, through a real Envoy gateway with real connections:

- Istio's "TCP traffic shifting": a TCP server and a VirtualService `tcp` route weighted 80/20
  between two subsets; every connection lands on one of them, in about that proportion.
- Istio's "Ingress gateway without TLS termination": a PASSTHROUGH server and a `tls` route by
  SNI; the client's TLS session ends at the backend (it verifies the backend's certificate),
  and an SNI no route names gets no connection.
- HTTPS SIMPLE termination from files: the client verifies the gateway's certificate, the
  request reaches a plain-text backend through the server's own route. MUTUAL on the same
  port (by SNI) also wants a client certificate from the CA with an allowed name.
"""

from __future__ import annotations

import asyncio
import collections
import http.client
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pilotpy.local.backend import Backend
from pilotpy.local.envoy import free_port
from pilotpy.local.stack import LocalStack, eventually, http_get
from tests.tls_certs import CertPair, TestCA

pytestmark = pytest.mark.e2e

CONFIG = """\
apiVersion: v1
kind: Service
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  ports:
  - {{name: https, port: 443, targetPort: {tls_port}}}
  - {{name: tcp, port: 31400, targetPort: {tcp_port}}}
---
apiVersion: v1
kind: Service
metadata: {{name: tcp-echo, namespace: default}}
spec:
  selector: {{app: tcp-echo}}
  ports: [{{name: tcp, port: 9000, targetPort: {echo_port}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: tcp-echo-v1, namespace: default, labels: {{app: tcp-echo, version: v1}}}}
status: {{podIP: 127.0.0.31}}
---
apiVersion: v1
kind: Pod
metadata: {{name: tcp-echo-v2, namespace: default, labels: {{app: tcp-echo, version: v2}}}}
status: {{podIP: 127.0.0.32}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: tcp-echo-local
  namespace: default
  labels: {{kubernetes.io/service-name: tcp-echo}}
addressType: IPv4
ports: [{{name: tcp, port: {echo_port}}}]
endpoints:
- addresses: [127.0.0.31]
  targetRef: {{kind: Pod, name: tcp-echo-v1, namespace: default}}
- addresses: [127.0.0.32]
  targetRef: {{kind: Pod, name: tcp-echo-v2, namespace: default}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tcp-echo, namespace: default}}
spec:
  host: tcp-echo
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: my-nginx, namespace: default}}
spec:
  selector: {{run: my-nginx}}
  ports: [{{name: https, port: 443, targetPort: {nginx_port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: my-nginx-local
  namespace: default
  labels: {{kubernetes.io/service-name: my-nginx}}
addressType: IPv4
ports: [{{name: https, port: {nginx_port}}}]
endpoints:
- addresses: [127.0.0.33]
---
apiVersion: v1
kind: Service
metadata: {{name: httpbin, namespace: default}}
spec:
  selector: {{app: httpbin}}
  ports: [{{name: http, port: 8000, targetPort: {httpbin_port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: httpbin-local
  namespace: default
  labels: {{kubernetes.io/service-name: httpbin}}
addressType: IPv4
ports: [{{name: http, port: {httpbin_port}}}]
endpoints:
- addresses: [127.0.0.34]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tcp-echo-gateway, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 31400, name: tcp, protocol: TCP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-gateway]
  tcp:
  - match: [{{port: 31400}}]
    route:
    - destination: {{host: tcp-echo, port: {{number: 9000}}, subset: v1}}
      weight: 80
    - destination: {{host: tcp-echo, port: {{number: 9000}}, subset: v2}}
      weight: 20
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: mygateway, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [nginx.example.com]
    tls: {{mode: PASSTHROUGH}}
  - port: {{number: 443, name: https-httpbin, protocol: HTTPS}}
    hosts: [httpbin.example.com]
    tls:
      mode: SIMPLE
      serverCertificate: {gateway_cert}
      privateKey: {gateway_key}
  - port: {{number: 443, name: https-mutual, protocol: HTTPS}}
    hosts: [mtls.example.com]
    tls:
      mode: MUTUAL
      serverCertificate: {gateway_cert}
      privateKey: {gateway_key}
      caCertificates: {ca}
      subjectAltNames: [allowed-client.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: nginx, namespace: default}}
spec:
  hosts: [nginx.example.com]
  gateways: [mygateway]
  tls:
  - match: [{{port: 443, sniHosts: [nginx.example.com]}}]
    route:
    - destination: {{host: my-nginx, port: {{number: 443}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin, namespace: default}}
spec:
  hosts: [httpbin.example.com, mtls.example.com]
  gateways: [mygateway]
  http:
  - route:
    - destination: {{host: httpbin, port: {{number: 8000}}}}
"""


@dataclass
class Env:
    stack: LocalStack
    ca: Path
    tls_port: int
    tcp_port: int
    authority: TestCA
    config: Path  # the watched config directory: a test may add files

    def stat(self, name: str) -> int:
        assert self.stack.envoy is not None
        return int(self.stack.envoy.stats().get(name, 0))


@dataclass
class TLSAnswer:
    status: int
    headers: dict[str, str]
    peer_subject: str
    alpn: str | None


def tls_get(port: int, sni: str, ca: Path, *, path: str = "/headers",
            alpn: tuple[str, ...] = ("http/1.1",),
            client: CertPair | None = None) -> TLSAnswer:
    """GET over TLS to 127.0.0.1:<port> with SNI `sni`, verifying the peer certificate
    against `ca` and `sni` (ssl raises on any mismatch); `client` presents a certificate."""
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    context.set_alpn_protocols(list(alpn))
    with (socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
          context.wrap_socket(raw, server_hostname=sni) as conn):
        cert: dict[str, Any] = dict(conn.getpeercert() or {})
        subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
        selected = conn.selected_alpn_protocol()
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
                     .encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
    return TLSAnswer(int(head[0].split()[1]), headers, str(subject.get("commonName", "")),
                     selected)


def tls_answer_or_none(port: int, sni: str, ca: Path,
                       client: CertPair | None = None) -> TLSAnswer | None:
    try:
        return tls_get(port, sni, ca, client=client)
    except (OSError, ssl.SSLError, IndexError, ValueError):
        return None


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    ca = TestCA(tmp_path / "certs")
    gateway_pair = ca.issue("gateway", ["httpbin.example.com", "mtls.example.com"])
    nginx_pair = ca.issue("nginx", ["nginx.example.com"])
    ports = {k: free_port() for k in ("tls_port", "tcp_port", "echo_port", "nginx_port",
                                       "httpbin_port")}
    backends = [
        Backend("127.0.0.31", ports["echo_port"], "v1", "tcp-echo"),
        Backend("127.0.0.32", ports["echo_port"], "v2", "tcp-echo"),
        Backend("127.0.0.33", ports["nginx_port"], "v1", "nginx",
                tls=(nginx_pair.cert, nginx_pair.key)),
        Backend("127.0.0.34", ports["httpbin_port"], "v1", "httpbin"),
    ]
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.yaml").write_text(CONFIG.format(
        **ports, gateway_cert=gateway_pair.cert, gateway_key=gateway_pair.key, ca=ca.ca),
        encoding="utf-8")
    stack = LocalStack([config], tmp_path, poll_interval=0.05, start_backends=False)
    try:
        for backend in backends:
            backend.start()
        await stack.start()
        await stack.wait_live()
        yield Env(stack, ca.ca, ports["tls_port"], ports["tcp_port"], ca, config)
    finally:
        await stack.stop()
        for backend in backends:
            backend.stop()


async def test_tcp_traffic_shifting_splits_connections_by_weight(env: Env) -> None:
    await eventually(lambda: http_get(env.tcp_port, "tcp-echo", "/headers")[0] == 200,
                     "a first connection through the TCP server")

    def versions(count: int) -> collections.Counter[str]:
        out: collections.Counter[str] = collections.Counter()
        for _ in range(count):  # http_get opens a new connection each time
            status, headers, _ = http_get(env.tcp_port, "tcp-echo", "/headers")
            out[headers.get("x-backend-version", str(status))] += 1
        return out

    seen = await asyncio.to_thread(versions, 200)
    assert set(seen) == {"v1", "v2"}, seen
    # 80/20 over 200 connections: v1's share is 0.8 +- 0.03 (one sigma); a wide band.
    assert 0.6 <= seen["v1"] / 200 <= 0.95, seen
    v1 = "outbound|9000|v1|tcp-echo.default.svc.cluster.local"
    v2 = "outbound|9000|v2|tcp-echo.default.svc.cluster.local"
    assert env.stat(f"cluster.{v1};.upstream_cx_total") >= seen["v1"]
    assert env.stat(f"cluster.{v2};.upstream_cx_total") >= seen["v2"]
    assert env.stat("tcp.tcp-echo.default.downstream_cx_total") >= 200


def tcp_status_or_none(port: int) -> int | None:
    """The status of an HTTP request sent over the gateway's TCP server; None when the
    connection is closed before an answer (network RBAC denies the connection)."""
    try:
        return http_get(port, "tcp-echo", "/headers")[0] or None
    except http.client.HTTPException:
        return None


async def test_a_policy_on_the_tcp_port_closes_the_connections_it_denies(env: Env) -> None:
    """Network RBAC on the gateway's TCP chain: a DENY by source ipBlocks limited to the TCP
    server's port closes those connections before tcp_proxy; the TLS port is untouched."""
    await eventually(lambda: tcp_status_or_none(env.tcp_port) == 200, "a first connection")
    (env.config / "authz.yaml").write_text(f"""\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-loopback-tcp, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: DENY
  rules:
  - from: [{{source: {{ipBlocks: [127.0.0.0/8]}}}}]
    to: [{{operation: {{ports: ["{env.tcp_port}"]}}}}]
""", encoding="utf-8")
    await eventually(lambda: tcp_status_or_none(env.tcp_port) is None,
                     "the TCP server closing denied connections")
    assert env.stat("tcp.rbac.denied") >= 1
    answer = await eventually(lambda: tls_answer_or_none(env.tls_port, "nginx.example.com",
                                                         env.ca), "TLS passthrough still")
    assert answer.status == 200


async def test_tls_passthrough_ends_tls_at_the_backend(env: Env) -> None:
    answer = await eventually(lambda: tls_answer_or_none(env.tls_port, "nginx.example.com",
                                                         env.ca),
                              "a TLS session with the nginx backend through the gateway")
    # The certificate the client verified is the backend's: the gateway did not terminate.
    assert answer.peer_subject == "nginx.example.com"
    assert answer.status == 200
    assert answer.headers["x-backend-name"] == "nginx"
    assert "server" not in answer.headers or answer.headers["server"] != "istio-envoy"
    cluster = "outbound|443||my-nginx.default.svc.cluster.local"
    assert env.stat(f"cluster.{cluster};.upstream_cx_total") >= 1
    # An SNI no route names matches no filter chain: Envoy closes the connection.
    assert tls_answer_or_none(env.tls_port, "other.example.com", env.ca) is None


async def test_https_simple_terminates_at_the_gateway(env: Env) -> None:
    answer = await eventually(lambda: tls_answer_or_none(env.tls_port, "httpbin.example.com",
                                                         env.ca),
                              "an HTTPS answer from the gateway for httpbin.example.com")
    assert answer.peer_subject == "httpbin.example.com"  # the gateway's certificate
    assert answer.status == 200
    assert answer.headers["server"] == "istio-envoy"  # Envoy's HCM answered...
    assert answer.headers["x-backend-name"] == "httpbin"  # ...from the plain backend
    assert answer.alpn == "http/1.1"
    h2 = await eventually(
        lambda: _alpn(env.tls_port, "httpbin.example.com", env.ca, ("h2", "http/1.1")),
        "ALPN negotiation")
    assert h2 == "h2"  # the gateway offers h2 and http/1.1, as istiod's servers do
    route = "https.443.https-httpbin.mygateway.default"
    prefix = f"http.outbound_0.0.0.0_{env.tls_port};"
    assert env.stat(f"{prefix}.rds.{route}.update_success") >= 1
    assert env.stat(f"{prefix}.downstream_rq_2xx") >= 1


def _alpn(port: int, sni: str, ca: Path, offered: tuple[str, ...]) -> str | None:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(list(offered))
    try:
        with (socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
              context.wrap_socket(raw, server_hostname=sni) as conn):
            return conn.selected_alpn_protocol()
    except (OSError, ssl.SSLError):
        return None


async def test_https_mutual_requires_a_client_certificate_with_an_allowed_name(
        env: Env) -> None:
    allowed = env.authority.issue("allowed", ["allowed-client.example.com"], client=True)
    other = env.authority.issue("other", ["other-client.example.com"], client=True)
    answer = await eventually(
        lambda: tls_answer_or_none(env.tls_port, "mtls.example.com", env.ca, allowed),
        "an HTTPS answer for a client with an allowed certificate")
    # The gateway's certificate (it names mtls.example.com too; ssl checked the name).
    assert (answer.status, answer.peer_subject) == (200, "httpbin.example.com")
    assert answer.headers["x-backend-name"] == "httpbin"
    # No certificate, or one whose name the server does not list: no answer.
    assert await asyncio.to_thread(tls_answer_or_none, env.tls_port, "mtls.example.com",
                                   env.ca) is None
    assert await asyncio.to_thread(tls_answer_or_none, env.tls_port, "mtls.example.com",
                                   env.ca, other) is None
