"""W5's gateway HTTPS from Kubernetes Secrets created through a real kube-apiserver: a real
Envoy gateway on a verified stream (pilotpy's TLS port, a mesh certificate of the gateway's
service account, as pilot-agent's stream is) gets `kubernetes://<name>` over its ADS stream.
`curl --cacert` with the right SNI gets 200; a server whose Secret is missing is left out and
reported while the others serve, and comes when the Secret does; MUTUAL with a `-cacert`
Secret refuses a client without a certificate; rotating the Secret changes the served
certificate with no listener update or drain. Streams without a verified identity, or of
another namespace, get no secret."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from pilotpy.local.certs import CERT_CHAIN, KEY, ROOT_CERT, write_mesh_certificate
from pilotpy.local.envoy import free_port
from pilotpy.local.stack import eventually
from tests.kube.support import GATEWAY_NODE, KubeMesh
from tests.tls_certs import CertPair, TestCA
from tests.xds_client import SotwClient

pytestmark = pytest.mark.e2e

GATEWAY_IDENTITY = ("spiffe://cluster.local/ns/istio-system/sa/"
                    "istio-ingressgateway-service-account")
ISTIOD = "istiod.istio-system.svc"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
SDS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
HOST, MUTUAL_HOST, LATE_HOST = "httpbin.example.com", "mutual.example.com", "late.example.com"


def tls_service(port: int) -> dict[str, Any]:
    """The gateway's HTTPS Service: 443 -> `port`, where its Envoy listens."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "istio-ingressgateway-tls", "namespace": "istio-system"},
            "spec": {"selector": {"istio": "ingressgateway"},
                     "ports": [{"name": "https", "port": 443, "targetPort": port}]}}


def tls_secret(name: str, pair: CertPair) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": "istio-system"},
            "data": {"tls.crt": base64.b64encode(pair.cert.read_bytes()).decode(),
                     "tls.key": base64.b64encode(pair.key.read_bytes()).decode()}}


def ca_secret(name: str, ca: Path) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "istio-system"},
            "data": {"ca.crt": base64.b64encode(ca.read_bytes()).decode()}}


def _server(name: str, host: str, mode: str, credential: str) -> dict[str, Any]:
    return {"port": {"number": 443, "name": name, "protocol": "HTTPS"}, "hosts": [host],
            "tls": {"mode": mode, "credentialName": credential}}


GATEWAY: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
    "metadata": {"name": "secure-gateway", "namespace": "default"},
    "spec": {"selector": {"istio": "ingressgateway"},
             "servers": [_server("https-httpbin", HOST, "SIMPLE", "httpbin-credential"),
                         _server("https-mutual", MUTUAL_HOST, "MUTUAL", "mutual-credential"),
                         _server("https-late", LATE_HOST, "SIMPLE", "late-credential")]}}
VIRTUAL_SERVICE: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "secure-httpbin", "namespace": "default"},
    "spec": {"hosts": [HOST, MUTUAL_HOST, LATE_HOST], "gateways": ["secure-gateway"],
             "http": [{"route": [{"destination": {"host": "httpbin-service"}}]}]}}


def curl(port: int, host: str, ca: Path, client: CertPair | None = None) -> str:
    """`curl --cacert` to https://<host>:<port>/headers at 127.0.0.1 (SNI `host`): the HTTP
    status, or `error <curl exit code>` when no HTTP answer came."""
    command = ["curl", "-sS", "--noproxy", "*", "--max-time", "5", "--cacert", str(ca),
               "--resolve", f"{host}:{port}:127.0.0.1", "-o", "/dev/null",
               "-w", "%{http_code}", f"https://{host}:{port}/headers"]
    if client is not None:
        command += ["--cert", str(client.cert), "--key", str(client.key)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=15, check=False)
    return done.stdout if done.returncode == 0 else f"error {done.returncode}"


def served_certificate(port: int, host: str, ca: Path) -> bytes:
    """The DER certificate the gateway presents for SNI `host` (b"" without a handshake)."""
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True) or b""
    except OSError:
        return b""


def der(pair: CertPair) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pair.cert.read_text())


def listener_counters(mesh: KubeMesh) -> dict[str, int]:
    envoy = mesh.stack.envoy if mesh.stack is not None else None
    assert envoy is not None
    names = ("listener_manager.lds.update_attempt", "listener_manager.listener_modified",
             "listener_manager.listener_in_place_updated",
             "listener_manager.total_filter_chains_draining")
    stats = envoy.stats("^listener_manager\\.")
    return {name: stats.get(name, 0) for name in names}


async def test_gateway_https_from_a_secret_created_through_the_api(mesh: KubeMesh,
                                                                   tmp_path: Path) -> None:
    ca, clients = TestCA(tmp_path / "ca"), TestCA(tmp_path / "clients", "client-ca")
    port = free_port()
    mesh.write_registry()
    mesh.apply_doc(tls_service(port))
    mesh.apply_doc(tls_secret("httpbin-credential", ca.issue("httpbin", [HOST])))
    mesh.apply_doc(tls_secret("mutual-credential", ca.issue("mutual", [MUTUAL_HOST])))
    mesh.apply_doc(ca_secret("mutual-credential-cacert", clients.ca))
    mesh.apply_doc(VIRTUAL_SERVICE)
    mesh.apply_doc(GATEWAY)
    await mesh.start(xds_identity=GATEWAY_IDENTITY)

    # The right SNI and the CA that signed the Secret's certificate: 200.
    await eventually(lambda: curl(port, HOST, ca.ca) == "200", f"https://{HOST} 200",
                     timeout=20)
    # A server whose Secret does not exist is not served, and reported; the others are.
    assert curl(port, LATE_HOST, ca.ca).startswith("error")
    missing = [p for p in mesh.plane.problems.problems()
               if p.reason == "NotFound" and "late-credential" in p.message]
    assert [(p.ref.kind, p.ref.name, p.field) for p in missing] == [
        ("Gateway", "secure-gateway", "spec.servers[2]")], missing
    # MUTUAL: a client without a certificate is refused, one of the -cacert CA gets through.
    assert curl(port, MUTUAL_HOST, ca.ca).startswith("error")
    client = clients.issue("client", ["client.example.com"], client=True)
    assert curl(port, MUTUAL_HOST, ca.ca, client) == "200"
    # The Secret created later brings its server.
    mesh.apply_doc(tls_secret("late-credential", ca.issue("late", [LATE_HOST])))
    await eventually(lambda: curl(port, LATE_HOST, ca.ca) == "200", f"https://{LATE_HOST} 200",
                     timeout=20)
    assert curl(port, HOST, ca.ca) == "200"

    # Rotation: a new certificate in the Secret is served, through SDS alone.
    await asyncio.sleep(1)  # let the late server's listener update settle
    before = listener_counters(mesh)
    assert before["listener_manager.total_filter_chains_draining"] == 0, before
    rotated = ca.issue("httpbin-rotated", [HOST])
    mesh.apply_doc(tls_secret("httpbin-credential", rotated))
    await eventually(lambda: served_certificate(port, HOST, ca.ca) == der(rotated),
                     "the rotated certificate served", timeout=20)
    await asyncio.sleep(1)
    assert listener_counters(mesh) == before
    assert curl(port, HOST, ca.ca) == "200"


def _credentials(mesh: KubeMesh, directory: Path, identity: str) -> grpc.ChannelCredentials:
    secure = mesh.plane.secure
    assert secure is not None and secure.authority is not None
    write_mesh_certificate(secure.authority, directory, identity)
    return grpc.ssl_channel_credentials((directory / ROOT_CERT).read_bytes(),
                                        (directory / KEY).read_bytes(),
                                        (directory / CERT_CHAIN).read_bytes())


async def _secrets_for(mesh: KubeMesh, node: str, namespace: str,
                       credentials: grpc.ChannelCredentials | None, resource: str
                       ) -> tuple[bool, list[str]]:
    """What a gateway stream for `node` gets: whether its listeners name the Secret, and the
    names of the Secrets it receives when it asks for `resource` (after its listeners, as
    Envoy does)."""
    target = (f"127.0.0.1:{mesh.plane.grpc_tls_port}" if credentials is not None
              else f"127.0.0.1:{mesh.plane.grpc_port}")
    metadata = {"NAMESPACE": namespace, "LABELS": {"istio": "ingressgateway"}}
    options = [("grpc.ssl_target_name_override", ISTIOD)] if credentials is not None else []
    async with SotwClient(target, node, metadata=metadata, credentials=credentials,
                          options=options) as client:
        await client.request(LDS)
        listeners = await client.recv(10)
        named = "httpbin-credential" in str(client.resources(listeners))
        await client.ack(listeners)
        await client.request(SDS, [resource])
        names: list[str] = []
        with contextlib.suppress(TimeoutError):
            while True:
                response = await client.recv(2)
                if response.type_url == SDS:
                    names += [r.name for r in client.resources(response)
                              if isinstance(r, secret_pb2.Secret)]
        return named, names


async def test_secrets_reach_only_a_verified_stream_of_their_namespace(
        mesh: KubeMesh, tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    mesh.write_registry()
    mesh.apply_doc(tls_service(free_port()))
    mesh.apply_doc(tls_secret("httpbin-credential", ca.issue("httpbin", [HOST])))
    mesh.apply_doc(VIRTUAL_SERVICE)
    mesh.apply_doc(GATEWAY)
    await mesh.start(xds_identity=GATEWAY_IDENTITY)
    resource = "kubernetes://httpbin-credential"
    # The gateway's own service account, verified by the TLS port: the Secret arrives.
    verified = _credentials(mesh, tmp_path / "gateway", GATEWAY_IDENTITY)
    assert await _secrets_for(mesh, GATEWAY_NODE, "istio-system", verified, resource) == (
        True, [resource])
    # The same node on the plaintext port (no verified identity): the listeners, no secret.
    assert await _secrets_for(mesh, GATEWAY_NODE, "istio-system", None, resource) == (
        True, [])
    # A gateway of another namespace, verified as such: its own namespace has no such Secret
    # (the server is not served), and istio-system's is not given even when asked by name.
    other = _credentials(mesh, tmp_path / "other", "spiffe://cluster.local/ns/default/sa/edge")
    node = "router~10.244.0.20~edge-0.default~default.svc.cluster.local"
    for asked in (resource, "kubernetes://istio-system/httpbin-credential"):
        assert await _secrets_for(mesh, node, "default", other, asked) == (False, []), asked
