"""DestinationRule TLS origination on a gateway Envoy: a VirtualService sends the gateway's
plain HTTP to an external host whose DestinationRule originates MUTUAL TLS to an HTTPS server
on 127.0.0.1 (the mesh tier's tls_server.py), with certificate files generated for the test."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pilotpy.local.envoy import free_port
from pilotpy.local.stack import eventually
from tests.e2e.support import W1Factory
from tests.tls_certs import TestCA

pytestmark = pytest.mark.e2e
TLS_SERVER = Path(__file__).parents[1] / "mesh" / "tls_server.py"
HOST = "secure.example.org"


@dataclass(frozen=True)
class Files:
    ca: Path
    client_cert: Path
    client_key: Path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Files]]:
    ca = TestCA(tmp_path / "certs")
    pair = ca.issue("server", [HOST])
    client = ca.issue("client", ["sleep.default"], client=True)
    port = free_port()
    log = tmp_path / "tls-server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, str(TLS_SERVER), "--listen", f"127.0.0.1:{port}",
             "--cert", str(pair.cert), "--key", str(pair.key), "--sni", HOST,
             "--client-ca", str(ca.ca), "--exit-after", "120"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        yield port, Files(ca.ca, client.cert, client.key)
    finally:
        server.kill()
        server.wait(10)


def _config(port: int, files: Files) -> list[dict[str, object]]:
    return [
        {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
         "metadata": {"name": "secure", "namespace": "default"},
         "spec": {"hosts": [HOST], "location": "MESH_EXTERNAL", "resolution": "STATIC",
                  "ports": [{"number": 80, "name": "http", "protocol": "HTTP",
                             "targetPort": port}],
                  "endpoints": [{"address": "127.0.0.1"}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "secure", "namespace": "default"},
         "spec": {"host": HOST, "trafficPolicy": {"tls": {
             "mode": "MUTUAL", "clientCertificate": str(files.client_cert),
             "privateKey": str(files.client_key), "caCertificates": str(files.ca),
             "sni": HOST, "subjectAltNames": [HOST]}}}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "to-secure", "namespace": "default"},
         "spec": {"hosts": ["httpbin.local"], "gateways": ["httpbin-gateway"],
                  "http": [{"route": [{"destination": {"host": HOST,
                                                       "port": {"number": 80}}}]}]}},
    ]


async def test_gateway_originates_mutual_tls(w1: W1Factory,
                                             tls_server: tuple[int, Files]) -> None:
    port, files = tls_server
    env = await w1(routed=False)
    env.write("secure.yaml", yaml.safe_dump_all(_config(port, files)))

    def answered() -> tuple[int, dict[str, str], bytes] | None:
        answer = env.get(path="/get")
        return answer if answer[0] == 200 else None

    _, _, body = await eventually(answered, "a 200 through the originated TLS")
    seen = json.loads(body)
    assert (seen["tls"], seen["sni"], seen["client_subject"]) == (True, HOST, "sleep.default")
    assert env.stat(f"cluster.outbound|80||{HOST};.ssl.handshake") >= 1
    assert not env.stack.plane.xds.stats.rejects
